"""Detect: a frame in, person detections out (stateless, so it can run on any worker)."""

from __future__ import annotations

import time

import numpy as np

from genesis.backends.detectors import PersonDetector
from genesis.domain import FrameDetections, FrameRef


def detect_frame(detector: PersonDetector, frame: FrameRef, image: np.ndarray) -> FrameDetections:
    t0 = time.perf_counter()
    detections = detector.detect(image)
    return FrameDetections(
        frame=frame, detections=tuple(detections), inference_ms=(time.perf_counter() - t0) * 1000.0
    )
