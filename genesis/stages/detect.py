"""Detect: a frame in, person detections out (stateless, so it can run on any worker)."""

from __future__ import annotations

import time

import numpy as np

from genesis.backends.detectors import PersonDetector, tiled
from genesis.config import CameraConfig, Settings, TilingConfig
from genesis.domain import FrameDetections, FrameRef
from genesis.stages.regions import detect_window


def camera_tiling(settings: Settings, camera: CameraConfig) -> TilingConfig:
    """The camera's own tiling settings, else the detector's default."""
    return camera.tiling if camera.tiling is not None else settings.detector.tiling


def detect_frame(
    detector: PersonDetector,
    frame: FrameRef,
    image: np.ndarray | None,
    tiling: TilingConfig | None = None,
    iou: float = 0.45,
) -> FrameDetections:
    """Detections of one frame; none for a static frame (motion gating: the ordered stage reuses the last
    ones), sliced into tiles when ``tiling`` is on (``iou``: the NMS threshold across tiles)."""
    if frame.static:
        return FrameDetections(frame=frame, detections=())
    if image is None:
        raise ValueError(f"frame {frame.key} is not static and has no image")
    t0 = time.perf_counter()
    if frame.window is not None:  # region detection (genesis.stages.regions)
        detections = detect_window(detector, image, frame.window)
    else:
        detections = tiled(detector, tiling, iou).detect(image)
    return FrameDetections(
        frame=frame, detections=tuple(detections), inference_ms=(time.perf_counter() - t0) * 1000.0
    )
