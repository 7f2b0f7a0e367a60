"""Person detectors: one module per family behind ``PersonDetector``, chosen by ``detector.type``.

- ``yolo`` (``yolo.py``, ``ultralytics_yolo.py``): YOLOv8/YOLO11 exports, ``backend: onnx`` (plain onnxruntime)
  or ``backend: ultralytics`` (torch).
- ``yolox`` (``yolox.py``): the YOLOX layout, e.g. ByteTrack's pedestrian model ``bytetrack_nano.onnx``.

A new family is a config class in ``genesis/config/inference.py`` (a ``type`` literal and its own fields), a
module here with a class that has ``name`` and ``detect(bgr) -> list[Detection]``, and one line in
``build_detector``. ``tiling.py`` wraps any of them for sliced inference on large frames.
"""

from __future__ import annotations

from pathlib import Path

from genesis.backends.detectors.common import PersonDetector, PriorDetector, nms, timed_detect
from genesis.backends.detectors.tiling import TiledDetector, tiled
from genesis.backends.detectors.ultralytics_yolo import (
    ULTRALYTICS_OFFLINE_ENV,
    UltralyticsDetector,
    prepare_ultralytics_env,
)
from genesis.backends.detectors.yolo import OnnxYoloDetector, decode_yolo, letterbox
from genesis.backends.detectors.yolox import YoloxDetector, decode_yolox
from genesis.backends.weights import WeightsError, resolve
from genesis.config import AnyDetectorConfig, YoloDetectorConfig

__all__ = [
    "ULTRALYTICS_OFFLINE_ENV",
    "OnnxYoloDetector",
    "PersonDetector",
    "PriorDetector",
    "TiledDetector",
    "UltralyticsDetector",
    "YoloxDetector",
    "build_detector",
    "decode_yolo",
    "decode_yolox",
    "letterbox",
    "nms",
    "prepare_ultralytics_env",
    "tiled",
    "timed_detect",
]


def build_detector(config: AnyDetectorConfig | YoloDetectorConfig, models_dir: Path) -> PersonDetector:
    """The detector of ``config``'s family, its weights resolved in ``models_dir`` (never downloaded); wrapped in
    ``PriorDetector`` when a person prior (``min_height_px``, ``max_aspect``) is on."""
    detector = _family_detector(config, models_dir)
    if config.min_height_px > 0.0 or config.max_aspect > 0.0:
        return PriorDetector(detector, config.min_height_px, config.max_aspect)
    return detector


def _family_detector(config: AnyDetectorConfig | YoloDetectorConfig, models_dir: Path) -> PersonDetector:
    weights = resolve(config.weights, models_dir)
    if config.type == "yolox":
        if weights.suffix != ".onnx":
            raise WeightsError(f"the yolox detector needs an .onnx file, got {weights.name}")
        return YoloxDetector(weights, config)
    if config.backend == "onnx":
        if weights.suffix != ".onnx":
            raise WeightsError(f"the onnx backend needs an .onnx file, got {weights.name}; use backend: ultralytics")
        return OnnxYoloDetector(weights, config)
    return UltralyticsDetector(weights, config, models_dir / ".ultralytics")
