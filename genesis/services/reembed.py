"""`genesis identities re-embed`: recompute every enrolled embedding with a (new) model from the
kept face crops, so a model change does not need the original photos again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genesis.backends.faces import Embedder
from genesis.identities.store import EnrolledFace, IdentityStore
from genesis.services.enroll import decode_image, face_from_json


@dataclass(frozen=True, slots=True)
class ReembedResult:
    model: str
    embeddings: int
    identities: int
    without_crop: list[tuple[str, str]]
    """(identity, photo) enrolled without a kept crop: not re-embedded (enroll them again)."""


def re_embed(
    store: IdentityStore, embedder: Embedder, actor: str, progress: Callable[[int, int], None] | None = None
) -> ReembedResult:
    photos = store.photos()
    out: list[tuple[str, EnrolledFace]] = []
    for i, p in enumerate(photos):
        image = decode_image(p.crop_jpeg, f"kept face of {p.identity} ({p.photo_name})")
        vector = embedder.embed(image, [face_from_json(p.face)])[0].astype(np.float32)
        out.append((p.identity, EnrolledFace(p.photo_sha256, p.photo_name, p.detector, embedder.model_name, vector,
                                             None, p.face, {})))
        if progress is not None:
            progress(i + 1, len(photos))
    without = store.photoless()
    n = store.replace_model(embedder.model_name, out, actor)
    return ReembedResult(embedder.model_name, n, len({name for name, _ in out}), without)
