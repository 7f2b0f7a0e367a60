"""Loading the configured models once, with errors that say which file is missing and how to get it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from genesis.backends.detectors import PersonDetector, build_detector
from genesis.backends.faces import Embedder, FaceDetector, build_embedder, build_face_detector
from genesis.config import Settings
from genesis.stages.recognize import Gallery


@dataclass(frozen=True, slots=True)
class LoadedModels:
    detector: PersonDetector
    face_detector: FaceDetector | None
    embedder: Embedder | None


def load_face_models(settings: Settings) -> tuple[FaceDetector, Embedder]:
    models_dir = settings.models.path
    return (
        build_face_detector(settings.recognition.face_detector, models_dir),
        build_embedder(settings.recognition.embedder, models_dir),
    )


def load_models(settings: Settings, with_faces: bool | None = None) -> LoadedModels:
    faces = settings.recognition.enabled if with_faces is None else with_faces
    detector = build_detector(settings.detector, settings.models.path)
    if not faces:
        return LoadedModels(detector, None, None)
    face_detector, embedder = load_face_models(settings)
    return LoadedModels(detector, face_detector, embedder)


def detector_label(settings: Settings) -> str:
    """How an embedding's face was found: stored with every embedding."""
    fd = settings.recognition.face_detector
    return f"{fd.backend}:{fd.weights}"


def load_gallery(repo: object, settings: Settings) -> Gallery:
    """The configured model's enrolled embeddings (decrypted) and "not this person" negatives."""
    from genesis.identities.cache import load_gallery as load

    return load(repo, settings)


@dataclass(frozen=True, slots=True)
class ModelCheck:
    role: str
    name: str
    status: str  # ok | missing | error
    sha256_status: str
    detail: str


def check_models(settings: Settings) -> list[ModelCheck]:
    """Each configured weight file: present, sha256 against the catalogue, and a real load."""
    import numpy as np

    from genesis.backends.weights import WeightsError, required_weights, resolve, sha256_of

    models_dir = settings.models.path
    loaders: dict[str, Callable[[], object]] = {
        "person detector": lambda: build_detector(settings.detector, models_dir).detect(
            np.zeros((64, 64, 3), dtype=np.uint8)),
        "face detector": lambda: build_face_detector(settings.recognition.face_detector, models_dir).detect(
            np.zeros((64, 64, 3), dtype=np.uint8)),
        "face embedding": lambda: build_embedder(settings.recognition.embedder, models_dir),
    }
    out: list[ModelCheck] = []
    for (spec, configured), loader in zip(required_weights(settings), loaders.values(), strict=False):
        try:
            path = resolve(configured, models_dir)
        except WeightsError as exc:
            out.append(ModelCheck(spec.role, spec.name, "missing", "-", str(exc)))
            continue
        digest = sha256_of(path)
        if spec.sha256 is None:
            sha = "no reference"
        elif digest == spec.sha256:
            sha = "matches"
        else:
            sha = "DIFFERS"
        try:
            loader()
            status, detail = "ok", str(path)
        except Exception as exc:
            status, detail = "error", f"{path}: {exc}"
        if sha == "DIFFERS" and status == "ok":
            detail += " (loads, but is not the reference build)"
        out.append(ModelCheck(spec.role, spec.name, status, sha, detail))
    return out
