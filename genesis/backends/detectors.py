"""Person detectors: ``onnx`` (plain onnxruntime) and ``ultralytics`` (YOLO on torch).

Both take a BGR image and return person detections in image pixels, sorted by score.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from genesis.config import DetectorConfig
from genesis.domain import Detection
from genesis.weights import WeightsError, resolve


class PersonDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detections of the configured classes in a BGR image."""
        ...


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping the aspect ratio and pad to size x size (grey 114, as YOLO was trained)."""
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = round(h * scale), round(w * scale)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else image
    top = (size - nh) // 2
    left = (size - nw) // 2
    out = np.full((size, size, 3), 114, dtype=np.uint8)
    out[top : top + nh, left : left + nw] = resized
    return out, scale, (float(left), float(top))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression; boxes are x1, y1, x2, y2. Deterministic (stable sort)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (xx2 - xx1).clip(0) * (yy2 - yy1).clip(0)
        union = areas[i] + areas[rest] - inter
        ious = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
        order = rest[ious <= iou]
    return keep


def decode_yolo(
    output: np.ndarray,
    scale: float,
    pad: tuple[float, float],
    image_shape: tuple[int, int],
    classes: list[int],
    conf: float,
    iou: float,
) -> list[Detection]:
    """Decode a YOLOv8/YOLO11 head (1 x (4 + C) x N: cx, cy, w, h, class scores; no NMS)."""
    pred = output[0]
    if pred.shape[0] > pred.shape[1]:  # some exports are N x (4 + C)
        pred = pred.T
    boxes_cxcywh = pred[:4].T
    cls_scores = pred[4:]
    h, w = image_shape
    dets: list[Detection] = []
    for cls in classes:
        if cls >= cls_scores.shape[0]:
            raise ValueError(f"class {cls} is not in the model's {cls_scores.shape[0]} classes")
        scores = cls_scores[cls]
        mask = scores >= conf
        if not np.any(mask):
            continue
        b = boxes_cxcywh[mask]
        s = scores[mask].astype(np.float64)
        xyxy = np.empty((b.shape[0], 4), dtype=np.float64)
        xyxy[:, 0] = (b[:, 0] - b[:, 2] / 2 - pad[0]) / scale
        xyxy[:, 1] = (b[:, 1] - b[:, 3] / 2 - pad[1]) / scale
        xyxy[:, 2] = (b[:, 0] + b[:, 2] / 2 - pad[0]) / scale
        xyxy[:, 3] = (b[:, 1] + b[:, 3] / 2 - pad[1]) / scale
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        for i in nms(xyxy, s, iou):
            x1, y1, x2, y2 = (round(float(v), 2) for v in xyxy[i])
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            dets.append(Detection(box=(x1, y1, x2, y2), score=round(float(s[i]), 4), class_id=cls))
    dets.sort(key=lambda d: (-d.score, d.box))
    return dets


class OnnxYoloDetector:
    """Any YOLOv8/YOLO11 detection export, run with onnxruntime (letterbox + NMS here)."""

    def __init__(self, weights: Path, config: DetectorConfig) -> None:
        import onnxruntime as ort

        self.config = config
        self.name = f"onnx:{weights.name}"
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if config.threads:
            opts.intra_op_num_threads = config.threads
        providers = ["CPUExecutionProvider"]
        if config.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(weights), sess_options=opts, providers=providers)
        except Exception as exc:
            raise WeightsError(f"cannot load {weights} with onnxruntime: {exc}") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        fixed = [d for d in shape[2:] if isinstance(d, int)]
        self.size = int(fixed[0]) if fixed else config.input_size
        self.input_dtype = np.float16 if "float16" in inp.type else np.float32

    def detect(self, image: np.ndarray) -> list[Detection]:
        boxed, scale, pad = letterbox(image, self.size)
        blob = cv2.dnn.blobFromImage(boxed, 1 / 255.0, swapRB=True).astype(self.input_dtype)
        out = self.session.run(None, {self.input_name: blob})[0]
        return decode_yolo(
            np.asarray(out, dtype=np.float32),
            scale,
            pad,
            (image.shape[0], image.shape[1]),
            self.config.classes,
            self.config.confidence,
            self.config.iou,
        )


def prepare_ultralytics_env(config_dir: Path) -> None:
    """Keep ultralytics from reaching the network: no DNS at import, no pip installs, local settings."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    config_dir.mkdir(parents=True, exist_ok=True)


class UltralyticsDetector:
    """``ultralytics.YOLO(path)``: a .pt or .onnx file; torch, and CUDA where ``device`` says so."""

    def __init__(self, weights: Path, config: DetectorConfig, config_dir: Path) -> None:
        prepare_ultralytics_env(config_dir)
        try:
            from ultralytics import YOLO
        except ImportError as exc:
            raise WeightsError(
                "the ultralytics backend needs the optional extra: pip install 'genesis[ultralytics]'"
            ) from exc
        self.config = config
        self.name = f"ultralytics:{weights.name}"
        try:
            self.model: Any = YOLO(str(weights), task="detect")
        except Exception as exc:
            raise WeightsError(f"cannot load {weights} with ultralytics: {exc}") from exc
        self.device = config.device

    def detect(self, image: np.ndarray) -> list[Detection]:
        results = self.model.predict(
            image,
            imgsz=self.config.input_size,
            conf=self.config.confidence,
            iou=self.config.iou,
            classes=self.config.classes,
            device=self.device,
            verbose=False,
        )
        dets: list[Detection] = []
        boxes = results[0].boxes
        xyxy = boxes.xyxy.cpu().numpy()
        conf = boxes.conf.cpu().numpy()
        cls = boxes.cls.cpu().numpy().astype(int)
        for (x1, y1, x2, y2), s, c in zip(xyxy, conf, cls, strict=True):
            dets.append(
                Detection(
                    box=(round(float(x1), 2), round(float(y1), 2), round(float(x2), 2), round(float(y2), 2)),
                    score=round(float(s), 4),
                    class_id=int(c),
                )
            )
        dets.sort(key=lambda d: (-d.score, d.box))
        return dets


def build_detector(config: DetectorConfig, models_dir: Path) -> PersonDetector:
    weights = resolve(config.weights, models_dir)
    if config.backend == "onnx":
        if weights.suffix != ".onnx":
            raise WeightsError(f"the onnx backend needs an .onnx file, got {weights.name}; use backend: ultralytics")
        return OnnxYoloDetector(weights, config)
    return UltralyticsDetector(weights, config, models_dir / ".ultralytics")


def timed_detect(detector: PersonDetector, image: np.ndarray) -> tuple[list[Detection], float]:
    t0 = time.perf_counter()
    dets = detector.detect(image)
    return dets, (time.perf_counter() - t0) * 1000.0
