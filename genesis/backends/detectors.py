"""Person detectors: ``onnx`` (plain onnxruntime) and ``ultralytics`` (YOLO on torch).

Both take a BGR image and return person detections in image pixels, sorted by score.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from genesis.backends.onnx import create_session
from genesis.backends.weights import WeightsError, resolve
from genesis.config import DetectorConfig
from genesis.domain import Detection

logger = logging.getLogger(__name__)


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
        self.config = config
        self.name = f"onnx:{weights.name}"
        self.session = create_session(weights, config.threads, config.device)
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


# Read once, when ultralytics is first imported: DNS look-ups for its online check, pip installs of missing
# requirements. Values already in the environment win (an operator may opt in to the network with YOLO_OFFLINE=0).
ULTRALYTICS_OFFLINE_ENV: dict[str, str] = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on", "y", "t"}


def _writable_dir(path: Path) -> Path:
    """``path``, created; a new private temporary folder where it cannot be written (a read-only models volume)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    alt = Path(tempfile.mkdtemp(prefix="genesis-ultralytics-"))
    logger.warning("ultralytics settings folder %s is not writable, using %s", path, alt)
    return alt


def prepare_ultralytics_env(config_dir: Path) -> Path:
    """Keep ultralytics off the network and out of ~/.config; return the folder YOLO_CONFIG_DIR names.

    Must run before ``ultralytics`` is first imported in the process (UltralyticsDetector calls it right before its
    import): ultralytics reads YOLO_OFFLINE, YOLO_AUTOINSTALL and YOLO_CONFIG_DIR at import time only. Its settings
    file is then ``<YOLO_CONFIG_DIR>/Ultralytics/settings.json``. A YOLO_CONFIG_DIR already set is kept.
    """
    for key, value in ULTRALYTICS_OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if os.environ.get("YOLO_CONFIG_DIR"):
        settings_root = _writable_dir(Path(os.environ["YOLO_CONFIG_DIR"]).expanduser())
    else:
        settings_root = _writable_dir(config_dir)
    os.environ["YOLO_CONFIG_DIR"] = str(settings_root)
    _check_ultralytics_not_imported_early(settings_root)
    return settings_root


def _check_ultralytics_not_imported_early(settings_root: Path) -> None:
    """Warn when ultralytics was imported before the environment above was set (then it did not apply)."""
    utils = sys.modules.get("ultralytics.utils")
    if utils is None:
        return
    problems: list[str] = []
    if _env_true("YOLO_OFFLINE") and getattr(utils, "ONLINE", False):
        problems.append("it is in online mode (it may try downloads)")
    if not _env_true("YOLO_AUTOINSTALL") and getattr(utils, "AUTOINSTALL", False):
        problems.append("it may pip-install missing requirements")
    user_dir = getattr(utils, "USER_CONFIG_DIR", None)
    if user_dir is not None and Path(user_dir).resolve().parent != settings_root.resolve():
        problems.append(f"its settings are in {user_dir}, not under {settings_root}")
    if problems:
        logger.warning(
            "ultralytics was imported before Genesis set YOLO_OFFLINE/YOLO_AUTOINSTALL/YOLO_CONFIG_DIR: %s. "
            "Set them in the environment, or build the detector before importing ultralytics.",
            "; ".join(problems),
        )


class UltralyticsDetector:
    """``ultralytics.YOLO(path)``: a .pt or .onnx file; torch, and CUDA where ``device`` says so.

    Same result as the onnx backend: boxes of ``config.classes`` in original image pixels, sorted by score. Only local
    files are accepted: ultralytics downloads a missing ``*.pt`` name from GitHub even when offline.
    """

    def __init__(self, weights: Path, config: DetectorConfig, config_dir: Path) -> None:
        if not weights.is_file():
            raise WeightsError(
                f"weight file {weights.name} not found at {weights}: the ultralytics backend takes only local files "
                "(copy it into the models folder or run `genesis models pull`)"
            )
        self.settings_dir = prepare_ultralytics_env(config_dir)
        omp_threads = os.environ.get("OMP_NUM_THREADS")
        try:
            from ultralytics.models import YOLO
            from ultralytics.utils import torch_utils
        except ImportError as exc:
            raise WeightsError(
                "the ultralytics backend needs the optional extra: pip install 'genesis[ultralytics]' "
                f"(or scripts/setup.sh --dev): {exc}"
            ) from exc
        finally:
            # Its import sets OMP_NUM_THREADS=1 for the whole process (and child processes) when unset.
            if omp_threads is None:
                os.environ.pop("OMP_NUM_THREADS", None)
        select_device: Any = torch_utils.select_device
        self.config = config
        self.name = f"ultralytics:{weights.name}"
        try:
            select_device(config.device, verbose=False)
        except ValueError as exc:
            raise ValueError(f"detector device {config.device!r} is not available: {exc}") from exc
        self.device = config.device
        self._lock = threading.Lock()  # a YOLO model and its predictor are not safe to share between threads
        try:
            self.model: Any = YOLO(str(weights), task="detect")
            # The predictor (and an .onnx session) is built on the first call: do it now, so that a bad file fails
            # here and the first frame is not slow.
            self.detect(np.zeros((self.config.input_size, self.config.input_size, 3), dtype=np.uint8))
        except Exception as exc:
            raise WeightsError(f"cannot load {weights} with ultralytics: {exc}") from exc
        n_classes = len(self.model.names)
        for cls in config.classes:
            if not 0 <= cls < n_classes:  # ultralytics would silently return nothing
                raise ValueError(f"class {cls} is not in the model's {n_classes} classes")

    def detect(self, image: np.ndarray) -> list[Detection]:
        with self._lock:
            results = self.model.predict(
                image,  # a numpy array is taken as BGR
                imgsz=self.config.input_size,  # a fixed-size export uses its own size
                conf=self.config.confidence,
                iou=self.config.iou,
                classes=self.config.classes,
                device=self.device,
                save=False,
                verbose=False,
            )
            data = results[0].boxes.data.cpu().numpy()  # N x 6: x1, y1, x2, y2 (original pixels), score, class
        return _detections_from_xyxy(np.asarray(data, dtype=np.float64), (image.shape[0], image.shape[1]))


def _detections_from_xyxy(data: np.ndarray, image_shape: tuple[int, int]) -> list[Detection]:
    """Rows of x1, y1, x2, y2, score, class to Detections (clipped, rounded and sorted like ``decode_yolo``)."""
    h, w = image_shape
    dets: list[Detection] = []
    for x1, y1, x2, y2, score, cls in data.reshape(-1, 6):
        box = (
            round(min(max(float(x1), 0.0), w), 2),
            round(min(max(float(y1), 0.0), h), 2),
            round(min(max(float(x2), 0.0), w), 2),
            round(min(max(float(y2), 0.0), h), 2),
        )
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        dets.append(Detection(box=box, score=round(float(score), 4), class_id=int(cls)))
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
