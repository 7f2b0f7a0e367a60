"""Face detection (YuNet) and face embedding (deepface models: SFace, Dlib, ArcFace, Facenet512).

Faces are aligned with a similarity transform on the five YuNet landmarks to the
ArcFace/SFace template, so every embedder sees the same canonical crop whatever the
face's pose in the frame. Embeddings are L2-normalised: cosine distance is ``1 - a @ b``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from genesis.backends.onnx import create_session
from genesis.backends.weights import WeightsError, deepface_home, resolve
from genesis.config import EmbedderConfig, FaceDetectorConfig
from genesis.domain import Face

# The five-point template (112 x 112) SFace and ArcFace were trained on: eyes, nose, mouth corners.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
# Dlib's ResNet was trained on dlib's own face chips (tighter, eyes higher): the same five
# points as YuNet finds them on dlib's 150 x 150 chips (median over 57 faces).
DLIB_TEMPLATE_150 = np.array(
    [[44.2, 47.5], [100.7, 45.1], [72.5, 76.4], [49.9, 102.1], [97.9, 100.9]], dtype=np.float32
)


def template_for(model: str, size: tuple[int, int]) -> np.ndarray:
    """The five-point template of a model, scaled to its input size (w, h)."""
    w, h = size
    if model == "Dlib":
        return DLIB_TEMPLATE_150 * np.array([w / 150.0, h / 150.0], dtype=np.float32)
    return ARCFACE_TEMPLATE * np.array([w / 112.0, h / 112.0], dtype=np.float32)


# YuNet misses faces on large inputs and finds few on tiny ones: work between these sizes.
_MAX_SIDE = 640
_MIN_SIDE = 160


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Face]: ...


class Embedder(Protocol):
    model_name: str
    dim: int

    def embed(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(len(faces), dim) float32, L2-normalised."""
        ...


class YuNetDetector:
    """OpenCV's FaceDetectorYN (YuNet): boxes plus five landmarks."""

    def __init__(self, weights: Path, config: FaceDetectorConfig) -> None:
        self.config = config
        self.name = f"yunet:{weights.name}"
        if not hasattr(cv2, "FaceDetectorYN"):
            raise WeightsError("cv2.FaceDetectorYN is missing: install opencv-contrib-python-headless<5")
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(weights), "", (320, 320), config.score_threshold, config.nms_threshold, 5000
            )
        except cv2.error as exc:
            raise WeightsError(f"cannot load {weights} as a YuNet face detector: {exc}") from exc

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        if h < 8 or w < 8:
            return []
        side = max(h, w)
        scale = 1.0
        if side > _MAX_SIDE:
            scale = _MAX_SIDE / side
        elif side < _MIN_SIDE:
            scale = _MIN_SIDE / side
        work = image
        if scale != 1.0:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            work = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        self._net.setInputSize((work.shape[1], work.shape[0]))
        _, rows = self._net.detect(work)
        faces: list[Face] = []
        if rows is None:
            return faces
        for row in rows:
            x, y, bw, bh = (float(v) / scale for v in row[:4])
            pts = tuple((float(row[4 + 2 * i]) / scale, float(row[5 + 2 * i]) / scale) for i in range(5))
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(w), x + bw), min(float(h), y + bh)
            if min(x2 - x1, y2 - y1) < self.config.min_face_px:
                continue
            faces.append(Face(box=(x1, y1, x2, y2), landmarks=pts, score=float(row[14])))
        faces.sort(key=lambda f: (-f.area, f.box))
        return faces


def align_face(image: np.ndarray, face: Face, size: tuple[int, int], template: np.ndarray | None = None) -> np.ndarray:
    """The face warped onto a five-point template (default: ArcFace's) of the model's input size (w, h)."""
    w, h = size
    dst = template if template is not None else template_for("SFace", size)
    src = np.array(face.landmarks, dtype=np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks: fall back to the box
        x1, y1, x2, y2 = (round(v) for v in face.box)
        crop = image[max(0, y1) : max(y1 + 1, y2), max(0, x1) : max(x1 + 1, x2)]
        resized: np.ndarray = cv2.resize(crop, (w, h))
        return resized
    aligned: np.ndarray = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return aligned


def _normalise(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    out: np.ndarray = (v / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


class DeepFaceEmbedder:
    """A deepface recognition model, loaded offline from the models folder (onnx engine, no TensorFlow)."""

    def __init__(self, config: EmbedderConfig, models_dir: Path) -> None:
        weights = resolve(config.weights_name, models_dir)  # a clear error before deepface tries a download
        os.environ["DEEPFACE_HOME"] = str(deepface_home(models_dir, [str(weights)]))
        os.environ.setdefault("DEEPFACE_BACKEND_ENGINE", "onnx")
        try:
            from deepface.modules.modeling import get_model_class
        except ImportError as exc:  # pragma: no cover - deepface is a hard dependency
            raise WeightsError(f"deepface is not importable: {exc}") from exc
        try:
            # Our own instance, not deepface's process-wide cache: two embedders of one model
            # with different weight files must not share a session.
            self._model: Any = get_model_class("facial_recognition", config.model)()
        except ImportError as exc:
            raise WeightsError(f"the {config.model} model needs an optional package: {exc}") from exc
        except Exception as exc:
            raise WeightsError(f"cannot load {config.model} from {weights}: {exc}") from exc
        # deepface builds its ONNX sessions with default options; rebuild them with ours (no
        # thread spinning between the models that take turns on the same cores).
        if weights.suffix == ".onnx" and hasattr(self._model, "model"):
            self._model.model = create_session(weights)
        self.model_name: str = config.model
        self.weights = weights
        self.input_size: tuple[int, int] = (int(self._model.input_shape[0]), int(self._model.input_shape[1]))
        self.dim = int(self._model.output_shape)
        self._template = template_for(config.model, self.input_size)

    def embed(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.dim), dtype=np.float32)
        crops = np.stack([align_face(image, f, self.input_size, self._template) for f in faces]).astype(
            np.float32
        ) / 255.0
        out = self._model.forward(crops)
        arr = np.asarray(out, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        return _normalise(arr)


def build_face_detector(config: FaceDetectorConfig, models_dir: Path) -> FaceDetector:
    return YuNetDetector(resolve(config.weights, models_dir), config)


def build_embedder(config: EmbedderConfig, models_dir: Path) -> Embedder:
    return DeepFaceEmbedder(config, models_dir)
