"""Enrollment: an identity from one or several photos, all or nothing.

Each photo must show one clear face: a photo without a face, or with several faces of similar
size (who is being enrolled?), is rejected with the reason; a quality gate rejects faces that
are too small or blurred and warns about borderline ones (thresholds: ``identities.quality``).
The embedding is stored with its model, detector and dimension, and the face itself (a loose
crop with its landmarks, encrypted) is kept so that `genesis identities re-embed` can recompute
the embeddings with another model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from genesis.adapters.db import Repository
from genesis.backends.faces import Embedder, FaceDetector
from genesis.config.identities import EnrollQualityConfig
from genesis.domain import Face
from genesis.services.image_limits import DECODE_SLOTS, MAX_PIXELS, ImageRefusedError, check_image

__all__ = ["MAX_PIXELS", "EnrollError", "decode_image", "enroll", "prepare_photo", "read_image"]

MAX_SIDE = 2048
CROP_MAX_SIDE = 320
"""A kept face crop is at most this many pixels on its longest side (JPEG)."""


class EnrollError(Exception):
    """A photo that cannot be enrolled; nothing was stored."""


@dataclass(frozen=True, slots=True)
class EnrollResult:
    name: str
    photos: int
    added: int
    faces_found: dict[str, int]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FaceQuality:
    face_px: int
    sharpness: float

    def to_json(self) -> dict[str, Any]:
        return {"face_px": self.face_px, "sharpness": round(self.sharpness, 1)}


def read_image(path: Path) -> np.ndarray:
    """Decode an image file, refusing what is not an image or is absurdly large."""
    if not path.is_file():
        raise EnrollError(f"{path}: file not found")
    return decode_image(path.read_bytes(), str(path))


def decode_image(data: bytes, what: str = "image") -> np.ndarray:
    """Decode a photo whose header says it is a supported format within ``MAX_PIXELS`` (checked
    before decoding: see :mod:`genesis.services.image_limits`), at most ``DECODE_SLOTS`` at once."""
    try:
        check_image(data, what)
    except ImageRefusedError as exc:
        raise EnrollError(str(exc)) from None
    arr = np.frombuffer(data, dtype=np.uint8)
    with DECODE_SLOTS:
        image = cv2.imdecode(arr, cv2.IMREAD_COLOR)
        if image is None:
            raise EnrollError(f"{what}: not an image (cannot decode it)")
        side = max(image.shape[:2])
        if side > MAX_SIDE:
            scale = MAX_SIDE / side
            image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA)
    return image


def face_quality(image: np.ndarray, face: Face) -> FaceQuality:
    """Box side (px) and sharpness: variance of the Laplacian of the face, grey, resized to 112 x 112
    (so that it does not depend on the face's size in the photo)."""
    x1, y1, x2, y2 = (round(v) for v in face.box)
    crop = image[max(0, y1): max(y1 + 1, y2), max(0, x1): max(x1 + 1, x2)]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    grey = cv2.resize(grey, (112, 112), interpolation=cv2.INTER_AREA)
    return FaceQuality(int(min(x2 - x1, y2 - y1)), float(cv2.Laplacian(grey, cv2.CV_64F).var()))


def pick_face(faces: list[Face], what: str, ambiguous_ratio: float) -> Face:
    """The one face of an enrollment photo: the largest, unless another is nearly as large."""
    if not faces:
        raise EnrollError(f"{what}: no face found")
    if len(faces) > 1 and faces[1].area >= ambiguous_ratio * faces[0].area:
        raise EnrollError(
            f"{what}: {len(faces)} faces of similar size (the second is {faces[1].area / faces[0].area:.0%} of the "
            "largest): use a photo of this person alone"
        )
    return faces[0]


def check_quality(q: FaceQuality, cfg: EnrollQualityConfig, what: str) -> list[str]:
    """Warnings for a borderline face; EnrollError for one below the minimums."""
    if q.face_px < cfg.min_face_px:
        raise EnrollError(f"{what}: face too small ({q.face_px} px, at least {cfg.min_face_px} px needed)")
    if q.sharpness < cfg.min_sharpness:
        raise EnrollError(f"{what}: face too blurred (sharpness {q.sharpness:.0f}, at least {cfg.min_sharpness:g})")
    warnings = []
    if q.face_px < cfg.warn_face_px:
        warnings.append(f"{what}: small face ({q.face_px} px; {cfg.warn_face_px} px or more is better)")
    if q.sharpness < cfg.warn_sharpness:
        warnings.append(f"{what}: somewhat blurred face (sharpness {q.sharpness:.0f}; "
                        f"{cfg.warn_sharpness:g} or more is better)")
    return warnings


def face_crop(image: np.ndarray, face: Face) -> tuple[bytes, dict[str, Any]]:
    """A loose crop around the face (the box grown by half its size each way, at most
    ``CROP_MAX_SIDE`` px) as JPEG, and the face's box and landmarks in crop pixels."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = face.box
    bw, bh = x2 - x1, y2 - y1
    cx1, cy1 = int(max(0, np.floor(x1 - 0.5 * bw))), int(max(0, np.floor(y1 - 0.5 * bh)))
    cx2, cy2 = int(min(w, np.ceil(x2 + 0.5 * bw))), int(min(h, np.ceil(y2 + 0.5 * bh)))
    crop = image[cy1:cy2, cx1:cx2]
    scale = min(1.0, CROP_MAX_SIDE / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:  # pragma: no cover - OpenCV encodes any non-empty BGR image
        raise EnrollError("cannot encode the face crop")
    box = [round((x1 - cx1) * scale, 2), round((y1 - cy1) * scale, 2), round((x2 - cx1) * scale, 2),
           round((y2 - cy1) * scale, 2)]
    landmarks = [[round((x - cx1) * scale, 2), round((y - cy1) * scale, 2)] for x, y in face.landmarks]
    return buf.tobytes(), {"box": box, "landmarks": landmarks, "score": round(face.score, 4)}


def face_from_json(data: dict[str, Any]) -> Face:
    return Face(box=tuple(data["box"]), landmarks=tuple(tuple(p) for p in data["landmarks"]),  # type: ignore[arg-type]
                score=float(data.get("score", 1.0)))


def embed_photo(path: Path, face_detector: FaceDetector, embedder: Embedder) -> tuple[np.ndarray, int, str]:
    """(embedding of the largest face, number of faces, sha256 of the file) — no quality gate
    (the evaluation's enrollment)."""
    image = read_image(path)
    faces = face_detector.detect(image)
    if not faces:
        raise EnrollError(f"{path}: no face found")
    vector = embedder.embed(image, [faces[0]])[0]
    return vector, len(faces), hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_photo(
    data: bytes,
    photo_name: str,
    face_detector: FaceDetector,
    embedder: Embedder,
    detector_label: str,
    quality: EnrollQualityConfig,
    keep_crop: bool = True,
    what: str | None = None,
) -> tuple[Any, int, list[str]]:
    """One enrollment photo (bytes) checked and embedded: (EnrolledFace, faces found, warnings);
    ``what`` names the photo in messages (default: ``photo_name``)."""
    from genesis.identities.store import EnrolledFace

    what = what or photo_name
    image = decode_image(data, what)
    faces = face_detector.detect(image)
    face = pick_face(faces, what, quality.ambiguous_face_ratio)
    q = face_quality(image, face)
    warnings = check_quality(q, quality, what)
    vector = embedder.embed(image, [face])[0].astype(np.float32)
    crop, face_json = face_crop(image, face) if keep_crop else (None, {})
    enrolled = EnrolledFace(
        photo_sha256=hashlib.sha256(data).hexdigest(), photo_name=photo_name, detector=detector_label,
        model=embedder.model_name, vector=vector, crop_jpeg=crop, face=face_json, quality=q.to_json(),
    )
    return enrolled, len(faces), warnings


def enroll(
    repo: Repository,
    name: str,
    photos: list[Path],
    face_detector: FaceDetector,
    embedder: Embedder,
    detector_label: str,
    quality: EnrollQualityConfig | None = None,
    *,
    keep_crops: bool = True,
    actor: str | None = None,
    redis: Any = None,
    threshold: float | None = None,
    force: bool = False,
) -> EnrollResult:
    """Enroll ``name`` from ``photos`` (library API; `genesis enroll` calls it).

    Every photo is checked first; if any is rejected nothing is stored (EnrollError says which
    and why). Embeddings are encrypted when ``GENESIS_EMBEDDING_KEY`` is set; the enrollment is
    written to the audit log and bumps the gallery version (``redis``: also its Redis copy).
    A face within ``threshold`` (default the model's) of another identity is refused unless ``force``
    (NearIdentityError, see `IdentityStore.enroll`).
    """
    from genesis.identities.store import IdentityError, IdentityStore, check_name, default_actor

    name = name.strip()
    try:
        check_name(name)
    except IdentityError as exc:
        raise EnrollError(str(exc)) from None
    if not photos:
        raise EnrollError("give at least one photo")
    quality = quality or EnrollQualityConfig()
    faces = []
    found: dict[str, int] = {}
    warnings: list[str] = []
    for path in photos:
        if not path.is_file():
            raise EnrollError(f"{path}: file not found")
        enrolled, nfaces, warn = prepare_photo(
            path.read_bytes(), path.name, face_detector, embedder, detector_label, quality, keep_crops, str(path))
        found[str(path)] = nfaces
        warnings += warn
        faces.append(enrolled)
    store = IdentityStore(repo, redis=redis)
    thresholds = {embedder.model_name: threshold} if threshold is not None else None
    added = store.enroll(name, faces, actor or default_actor(), thresholds=thresholds, force=force)
    return EnrollResult(name=name, photos=len(photos), added=added, faces_found=found, warnings=warnings)
