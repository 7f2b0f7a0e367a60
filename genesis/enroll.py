"""Enrollment: an identity from photos (the largest face of each), all or nothing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from genesis.adapters.db import EmbeddingRecord, Repository
from genesis.backends.faces import Embedder, FaceDetector

MAX_PIXELS = 40_000_000
MAX_SIDE = 2048


class EnrollError(Exception):
    """A photo that cannot be enrolled; nothing was stored."""


@dataclass(frozen=True, slots=True)
class EnrollResult:
    name: str
    photos: int
    added: int
    faces_found: dict[str, int]


def read_image(path: Path) -> np.ndarray:
    """Decode an image file, refusing what is not an image or is absurdly large."""
    if not path.is_file():
        raise EnrollError(f"{path}: file not found")
    data = path.read_bytes()
    arr = np.frombuffer(data, dtype=np.uint8)
    header = cv2.imdecode(arr, cv2.IMREAD_REDUCED_GRAYSCALE_8) if arr.size else None
    if header is None:
        raise EnrollError(f"{path}: not an image (cannot decode it)")
    if header.shape[0] * header.shape[1] * 64 > MAX_PIXELS:
        raise EnrollError(f"{path}: image too large (more than {MAX_PIXELS // 1_000_000} megapixels)")
    image = cv2.imdecode(arr, cv2.IMREAD_COLOR)
    if image is None:
        raise EnrollError(f"{path}: not an image (cannot decode it)")
    side = max(image.shape[:2])
    if side > MAX_SIDE:
        scale = MAX_SIDE / side
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    return image


def embed_photo(path: Path, face_detector: FaceDetector, embedder: Embedder) -> tuple[np.ndarray, int, str]:
    """(embedding of the largest face, number of faces, sha256 of the file)."""
    image = read_image(path)
    faces = face_detector.detect(image)
    if not faces:
        raise EnrollError(f"{path}: no face found")
    vector = embedder.embed(image, [faces[0]])[0]
    return vector, len(faces), hashlib.sha256(path.read_bytes()).hexdigest()


def enroll(
    repo: Repository,
    name: str,
    photos: list[Path],
    face_detector: FaceDetector,
    embedder: Embedder,
    detector_label: str,
) -> EnrollResult:
    name = name.strip()
    if not name:
        raise EnrollError("the identity name is empty")
    if name.lower() == "unknown" or name.lower().startswith("unknown-"):
        raise EnrollError(f"{name!r} is reserved for people who are not enrolled")
    if not photos:
        raise EnrollError("give at least one photo")
    records: list[EmbeddingRecord] = []
    found: dict[str, int] = {}
    for path in photos:
        vector, nfaces, digest = embed_photo(path, face_detector, embedder)
        found[str(path)] = nfaces
        records.append(
            EmbeddingRecord(
                identity=name,
                model=embedder.model_name,
                detector=detector_label,
                vector=vector.astype(np.float32),
                photo_sha256=digest,
                photo_name=path.name,
            )
        )
    added = repo.add_embeddings(records)
    return EnrollResult(name=name, photos=len(photos), added=added, faces_found=found)
