"""The gallery a worker matches against, cached per process and refreshed when it changes.

The version is the ``gallery_version`` row (embedded mode: read from the database) or its copy
in Redis under :data:`~genesis.identities.store.VERSION_KEY` (distributed mode), bumped by every
enroll, forget, rename, reject and re-embed. A :class:`GalleryCache` looks at it at most once per
``identities.gallery_check_s`` seconds and reloads the matrix only when it moved.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from genesis.config import Settings
from genesis.stages.recognize import Gallery


def load_gallery(repo: Any, settings: Settings, store: Any = None) -> Gallery:
    from genesis.identities.store import IdentityStore

    store = store or IdentityStore(repo)
    emb = settings.recognition.embedder
    names, matrix = store.gallery(emb.model)
    negatives = store.negatives(emb.model)
    return Gallery.build(
        emb.model, names, matrix, emb.cosine_threshold, settings.recognition.match_margin,
        negatives=negatives, negative_margin=settings.identities.negative_margin,
    )


class GalleryCache:
    def __init__(self, repo: Any, settings: Settings, redis: Any = None, clock: Any = time.monotonic) -> None:
        from genesis.identities.store import IdentityStore

        self.settings = settings
        self.store = IdentityStore(repo, redis=redis)
        self._clock = clock
        self._lock = threading.Lock()
        self._gallery: Gallery | None = None
        self._version: int | None = None
        self._checked = float("-inf")
        self.loads = 0

    def get(self) -> Gallery:
        with self._lock:
            now = self._clock()
            if self._gallery is not None and now - self._checked < self.settings.identities.gallery_check_s:
                return self._gallery
            self._checked = now
            version = self.store.version()
            if self._gallery is None or version != self._version:
                self._gallery = load_gallery(None, self.settings, self.store)
                self._version = version
                self.loads += 1
            return self._gallery

    @property
    def version(self) -> int | None:
        return self._version


class LiveFaces:
    """The face models with the current gallery: ``get()`` is a ``FaceModels`` (the same object while
    the gallery is unchanged) or None while nobody is enrolled (unless
    ``identities.unknowns_without_gallery``: then faces are still searched, all unknown, and clustered)."""

    def __init__(self, detector: Any, embedder: Any, cache: GalleryCache) -> None:
        self.detector, self.embedder, self.cache = detector, embedder, cache
        self._faces: Any = None
        self._gallery: Gallery | None = None

    def get(self) -> Any:
        from genesis.stages.camera import FaceModels

        gallery = self.cache.get()
        if gallery is not self._gallery:
            self._gallery = gallery
            wanted = bool(gallery.names) or self.cache.settings.identities.unknowns_without_gallery
            self._faces = FaceModels(self.detector, self.embedder, gallery) if wanted else None
        return self._faces
