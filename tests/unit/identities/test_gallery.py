"""The open-set gallery (exact cosine top-k, margin, negatives) against a brute-force reference, and
the per-process gallery cache refreshed through the version (database row; Redis key)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from genesis.adapters.db import Repository
from genesis.config import Settings, load_settings
from genesis.identities.cache import GalleryCache
from genesis.identities.store import VERSION_KEY, EnrolledFace, IdentityStore
from genesis.stages.recognize import Gallery
from tests.services import redis_url

REDIS_DB = 13


def _reference(names: list[str], matrix: np.ndarray, v: np.ndarray, threshold: float, margin: float) -> tuple[
        str | None, float]:
    m = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    best: dict[str, float] = {}
    for n, sim in zip(names, (m @ v).tolist(), strict=True):
        best[n] = max(best.get(n, -2.0), sim)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    d = round(1 - ranked[0][1], 6)
    d2 = round(1 - ranked[1][1], 6) if len(ranked) > 1 else None
    if d > threshold or (d2 is not None and d2 - d < margin):
        return None, d
    return ranked[0][0], d


def test_match_equals_brute_force() -> None:
    rng = np.random.default_rng(7)
    dim = 16
    centres = rng.standard_normal((30, dim)).astype(np.float32)
    names, rows = [], []
    for i in rng.permutation(90):  # unsorted input: the gallery groups the rows itself
        names.append(f"p{int(i) % 30:02d}")
        rows.append(centres[int(i) % 30] + 0.3 * rng.standard_normal(dim).astype(np.float32))
    matrix = np.stack(rows)
    gallery = Gallery.build("SFace", names, matrix, threshold=0.4, margin=0.05)
    assert gallery.identities == sorted(set(names))
    named = 0
    for _ in range(200):
        v = (centres[rng.integers(30)] + 0.4 * rng.standard_normal(dim)).astype(np.float32)
        v /= np.linalg.norm(v)
        got = gallery.match(v)
        want = _reference(names, matrix, v, 0.4, 0.05)
        assert (got.identity, got.distance) == pytest.approx(want)
        named += got.identity is not None
    assert 0 < named < 200  # both outcomes exercised
    top = gallery.top_k(centres[3] / np.linalg.norm(centres[3]), 3)
    assert top[0][0] == "p03" and len(top) == 3 and top[0][1] <= top[1][1] <= top[2][1]


def test_negative_excludes_that_identity_only_near_the_rejected_face() -> None:
    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    b = np.array([0.0, 1.0, 0.0], dtype=np.float32)
    face = np.array([0.9, 0.1, 0.42], dtype=np.float32)
    face /= np.linalg.norm(face)
    plain = Gallery.build("SFace", ["ann", "bob"], np.stack([a, b]), threshold=0.5, margin=0.05)
    assert plain.match(face).identity == "ann"
    gallery = Gallery.build("SFace", ["ann", "bob"], np.stack([a, b]), threshold=0.5, margin=0.05,
                            negatives=(["ann"], face[None, :]), negative_margin=0.1)
    assert gallery.match(face).identity is None
    # A different face of ann (far from the rejected one) is still ann.
    other = np.array([0.95, -0.2, -0.2], dtype=np.float32)
    assert gallery.match(other / np.linalg.norm(other)).identity == "ann"
    # A negative for someone not enrolled in this model is ignored.
    g2 = Gallery.build("SFace", ["ann"], a[None, :], 0.5, 0.05, negatives=(["zed"], face[None, :]))
    assert g2.match(face).identity == "ann"


def _face(seed: int) -> EnrolledFace:
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return EnrolledFace(f"{seed:064d}", f"{seed}.jpg", "yunet:test", "SFace", v / np.linalg.norm(v), None, {}, {})


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[tuple[Settings, Repository]]:
    settings = load_settings(environ={"GENESIS_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}",
                                      "GENESIS_IDENTITIES__GALLERY_CHECK_S": "1"})
    with Repository(settings.database_url) as repo:
        yield settings, repo


def test_cache_embedded_reloads_on_db_version(env: tuple[Settings, Repository]) -> None:
    settings, repo = env
    now = [0.0]
    cache = GalleryCache(repo, settings, clock=lambda: now[0])
    assert cache.get().names == () and cache.loads == 1
    IdentityStore(repo).enroll("ann", [_face(1)], "test")
    assert cache.get().names == ()  # within gallery_check_s: not looked at
    now[0] = 1.5
    assert cache.get().names == ("ann",) and cache.loads == 2
    now[0] = 3.0
    g = cache.get()
    assert cache.loads == 2 and g is cache.get()  # unchanged version: no reload
    IdentityStore(repo).forget("ann", "test")
    now[0] = 4.5
    assert cache.get().names == () and cache.loads == 3


def test_cache_distributed_reads_the_redis_version(env: tuple[Settings, Repository]) -> None:
    settings, repo = env
    client = redis.Redis.from_url(redis_url(REDIS_DB))
    client.delete(VERSION_KEY)
    try:
        now = [0.0]
        cache = GalleryCache(repo, settings, redis=client, clock=lambda: now[0])
        assert cache.get().names == ()
        assert int(client.get(VERSION_KEY) or -1) == 0  # set from the database when missing, with a TTL
        assert 0 < client.ttl(VERSION_KEY) <= 10
        IdentityStore(repo, redis=client).enroll("bob", [_face(2)], "test")  # a writer that reaches Redis
        assert int(client.get(VERSION_KEY) or -1) == 1
        now[0] = 2.0
        assert cache.get().names == ("bob",)
        # The worker trusts Redis: a version bumped in the database only shows once the copy expires.
        IdentityStore(repo).enroll("cy", [_face(3)], "test")
        now[0] = 4.0
        assert cache.get().names == ("bob",)
        client.delete(VERSION_KEY)  # what the TTL does within 10 s
        now[0] = 6.0
        assert cache.get().names == ("bob", "cy")
    finally:
        client.delete(VERSION_KEY)
        client.close()


def test_store_never_mixes_models(env: tuple[Settings, Repository]) -> None:
    _, repo = env
    store = IdentityStore(repo)
    store.enroll("ann", [_face(4)], "test")
    dlib = EnrolledFace("9" * 64, "d.jpg", "yunet:test", "Dlib", np.ones(128, dtype=np.float32), None, {}, {})
    store.enroll("ann", [dlib], "test")
    assert store.gallery("SFace")[1].shape == (1, 128) and store.gallery("Dlib")[1].shape == (1, 128)
    assert not np.allclose(store.gallery("SFace")[1], store.gallery("Dlib")[1])
    assert store.models() == ["Dlib", "SFace"]
    assert store.db_version() == 2  # two bumps


def test_a_gallery_is_never_compared_with_another_models_embeddings(models_dir: Path) -> None:
    from genesis.backends.faces import build_embedder
    from genesis.config import EmbedderConfig
    from genesis.pipeline.model_loader import load_face_models
    from genesis.stages.recognize import identify_faces

    settings = load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir)})
    fd, _ = load_face_models(settings)
    dlib = build_embedder(EmbedderConfig(model="Dlib"), models_dir)
    sface_gallery = Gallery.build("SFace", ["ann"], np.ones((1, 128), dtype=np.float32), 0.5, 0.05)
    with pytest.raises(ValueError, match="holds SFace embeddings, the embedder is Dlib"):
        identify_faces(np.zeros((64, 64, 3), dtype=np.uint8), fd, dlib, sface_gallery)


def test_cache_falls_back_to_the_database_when_redis_is_away(env: tuple[Settings, Repository]) -> None:
    settings, repo = env
    away = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nothing listens there
    IdentityStore(repo, redis=away).enroll("dee", [_face(5)], "test")  # the write does not need Redis
    assert GalleryCache(repo, settings, redis=away).get().names == ("dee",)
