"""The YOLOv8/YOLO11 family on plain onnxruntime (``type: yolo``, ``backend: onnx``).

Head layout 1 x (4 + C) x N: cx, cy, w, h and one score per class, no objectness, no NMS in the
graph. Input: letterboxed (centred, grey 114) square, RGB / 255.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from genesis.backends.detectors.common import clip_boxes, nms, nms_detections, sort_detections
from genesis.backends.detectors.dequantize import dequantized_bytes
from genesis.backends.onnx import create_session
from genesis.config import YoloDetectorConfig
from genesis.domain import Detection

log = logging.getLogger(__name__)

__all__ = ["OnnxYoloDetector", "decode_yolo", "letterbox", "nms"]


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
        dets.extend(nms_detections(clip_boxes(xyxy, (h, w)), s, cls, iou))
    return sort_detections(dets)


class OnnxYoloDetector:
    """Any YOLOv8/YOLO11 detection export, run with onnxruntime (letterbox + NMS here)."""

    def __init__(self, weights: Path, config: YoloDetectorConfig) -> None:
        self.config = config
        self.name = f"onnx:{weights.name}"
        model = None
        if config.dequantize:
            try:
                model = dequantized_bytes(weights)
            except ValueError as exc:
                log.warning("detector.dequantize: %s is run as it is: %s", weights.name, exc)
            except Exception:  # an unreadable file: the session's load below says what is wrong
                pass
        self.session = create_session(weights, config.threads, config.device, model)
        self.dequantized = model is not None
        """The export's int8 convolutions run in float32 (``detector.dequantize``)."""
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        fixed = [d for d in shape[2:] if isinstance(d, int)]
        self.size = int(fixed[0]) if fixed else config.input_size
        self.input_dtype = np.float16 if "float16" in inp.type else np.float32
        # A fixed batch dimension of 1 (most exports, the shipped int8 one too) takes one image per call. On the CPU
        # a batch is slower than its frames one by one (onnxruntime already spreads one image over its threads;
        # docs/benchmarks.md): batches go to the session only on a GPU.
        self.batchable = bool(shape) and not isinstance(shape[0], int)
        self.batch_calls = self.batchable and config.device.startswith("cuda")

    def _blob(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        boxed, scale, pad = letterbox(image, self.size)
        return cv2.dnn.blobFromImage(boxed, 1 / 255.0, swapRB=True).astype(self.input_dtype), scale, pad

    def _decode(self, out: np.ndarray, scale: float, pad: tuple[float, float], image: np.ndarray) -> list[Detection]:
        return decode_yolo(
            np.asarray(out, dtype=np.float32),
            scale,
            pad,
            (image.shape[0], image.shape[1]),
            self.config.classes,
            self.config.confidence,
            self.config.iou,
        )

    def detect(self, image: np.ndarray) -> list[Detection]:
        blob, scale, pad = self._blob(image)
        out = self.session.run(None, {self.input_name: blob})[0]
        return self._decode(out, scale, pad, image)

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """The detections of each image: one session call on a GPU when the export has a dynamic batch dimension
        (:meth:`detect_batched`), else one call per image."""
        if not self.batch_calls or len(images) < 2:
            return [self.detect(image) for image in images]
        return self.detect_batched(images)

    def detect_batched(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """One session call for all ``images`` (each letterboxed on its own): an export with a dynamic batch only."""
        if not self.batchable:
            raise ValueError(f"{self.name} has a fixed batch dimension: one image per call")
        prepared = [self._blob(image) for image in images]
        out = self.session.run(None, {self.input_name: np.concatenate([p[0] for p in prepared])})[0]
        return [self._decode(out[i : i + 1], scale, pad, image)
                for i, ((_, scale, pad), image) in enumerate(zip(prepared, images, strict=True))]


