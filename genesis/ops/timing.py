"""Model wrappers that time each call into ``genesis_inference_duration_seconds{stage}``.

They pass every call through unchanged (same arguments, same result), so the stages that use
them behave exactly as with the bare models.
"""

from __future__ import annotations

import numpy as np

from genesis.backends.faces import Embedder, FaceDetector
from genesis.domain import Face
from genesis.ops.metrics import time_inference


class TimedFaceDetector:
    """A :class:`FaceDetector` whose ``detect`` calls are timed as stage ``face_detect``."""

    def __init__(self, inner: FaceDetector, stage: str = "face_detect") -> None:
        self.inner = inner
        self.stage = stage
        self.name = inner.name

    def detect(self, image: np.ndarray) -> list[Face]:
        with time_inference(self.stage):
            return self.inner.detect(image)


class TimedEmbedder:
    """An :class:`Embedder` whose ``embed`` calls are timed as stage ``face_embed``."""

    def __init__(self, inner: Embedder, stage: str = "face_embed") -> None:
        self.inner = inner
        self.stage = stage
        self.model_name = inner.model_name
        self.dim = inner.dim

    def embed(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        with time_inference(self.stage):
            return self.inner.embed(image, faces)
