"""Track face embeddings at rest as float16 (`genesis.identities.store.FACE_VECTOR_DTYPE`), on SQLite and
PostgreSQL, clear and encrypted, with real SFace embeddings of the shared photos: a stored vector is ``dim`` * 2
bytes and reads back within float16's rounding; search and clustering find what float32 finds; what a track face
is copied into (an enrolled embedding, a negative) and the cluster centroids stay float32; key rotation keeps
each row's precision; rows stored as float32 before this change are still read; any other length is an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from genesis.adapters.db import Repository, TrackRecord
from genesis.adapters.db.identities import write_transaction
from genesis.adapters.db.tables import utcnow
from genesis.identities import review
from genesis.identities.crypto import KEY_ENV, BiometricCipher, is_encrypted
from genesis.identities.store import FACE_VECTOR_DTYPE, IdentityStore, track_face_blob, vector_blob
from genesis.identities.tracks import TrackFaceRecord, save_track_faces, search, vector_of
from genesis.pipeline.model_loader import load_face_models
from genesis.services.enroll import read_image
from tests.unit.adapters.test_repository import db_url  # noqa: F401  (the sqlite + postgresql fixture)

STEMS = ("adams", "carell", "clapton-1", "clapton-2", "lennon-1", "lennon-2")
THRESHOLD = 0.593
"""SFace's cosine threshold (the default recognition and cluster threshold)."""


@pytest.fixture(scope="module")
def vectors(data_dir: Path, models_dir: Path) -> dict[str, np.ndarray]:
    """stem -> SFace embedding (float32) of the single-face photos of people nobody enrolled."""
    from genesis.config import load_settings

    fd, emb = load_face_models(load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir)}))
    out = {}
    for stem in STEMS:
        image = read_image(data_dir / "faces" / "unknown" / f"{stem}.jpg")
        out[stem] = np.asarray(emb.embed(image, fd.detect(image)[:1])[0], dtype=np.float32)
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v / np.linalg.norm(v), dtype=np.float64)


def _reference_clusters(vs: list[np.ndarray], threshold: float) -> list[int]:
    """The clustering of `genesis.identities.tracks` (nearest centroid within the threshold, else a new cluster;
    centroid = normalised mean) on the float32 vectors, in float64: the cluster index of each vector."""
    sums: list[np.ndarray] = []
    out = []
    for v in map(_unit, vs):
        d = [1.0 - float(_unit(s) @ v) for s in sums]
        j = int(np.argmin(d)) if d and min(d) <= threshold else -1
        if j < 0:
            sums.append(v.copy())
            j = len(sums) - 1
        else:
            sums[j] = sums[j] + v
        out.append(j)
    return out


def _partition(labels: list[object]) -> list[list[int]]:
    groups: dict[object, list[int]] = {}
    for i, g in enumerate(labels):
        groups.setdefault(g, []).append(i)
    return sorted(groups.values())


def _raw(repo: Repository, sql: str) -> list[tuple[int, bytes]]:
    with repo.engine.connect() as conn:
        return [(int(r[0]), bytes(r[1])) for r in conn.execute(text(sql))]


def _store_run(repo: Repository, vectors: dict[str, np.ndarray]) -> IdentityStore:
    """Run "run-a" of camera "door": track i + 1 has the face of STEMS[i], none named; its faces stored."""
    repo.start_run("run-a", "door", "test", {})
    repo.save_tracks("run-a", [TrackRecord("door", i + 1, 0, 10, float(i), float(i) + 1, 10, None, 0, 3, 0.7)
                               for i in range(len(STEMS))])
    store = IdentityStore(repo)
    records = [TrackFaceRecord("door", i + 1, float(i), "SFace", [float(x) for x in vectors[s]], None, 0.7)
               for i, s in enumerate(STEMS)]
    assert save_track_faces(store, "run-a", records, THRESHOLD) == len(STEMS)
    return store


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_track_faces_are_float16_at_rest_and_read_back(db_url: str, vectors: dict[str, np.ndarray],  # noqa: F811
                                                       encrypted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    key = BiometricCipher.new_key()
    if encrypted:
        monkeypatch.setenv(KEY_ENV, key)
    else:
        monkeypatch.delenv(KEY_ENV, raising=False)
    dim = len(vectors[STEMS[0]])
    with Repository(db_url) as repo:
        store = _store_run(repo, vectors)
        stored = _raw(repo, "SELECT dim, vector FROM track_faces ORDER BY track_id")
        assert [d for d, _ in stored] == [dim] * len(STEMS)
        for (_, blob), stem in zip(stored, STEMS, strict=True):
            assert is_encrypted(blob) == encrypted
            raw = store.cipher.decrypt(blob)
            assert len(raw) == dim * 2 and raw == vectors[stem].astype("<f2").tobytes()
            if encrypted:
                assert len(blob) == 3 + 329  # GF2 + the Fernet token of 256 bytes (588 for float32's 512)
            back = vector_of(store, blob, dim)
            assert back.dtype == np.float32 and float(np.max(np.abs(back - vectors[stem]))) < 1e-3
            assert abs(float(_unit(back) @ _unit(vectors[stem])) - 1.0) < 1e-4
        # Centroids stay float32 (re-read and summed at every clustering).
        assert {len(store.cipher.decrypt(b)) for _, b in _raw(repo, "SELECT dim, centroid FROM unknown_clusters")} \
            == {dim * 4}

        # Clustering: the groups float32 makes (Clapton's two photos, Lennon's two, the others alone).
        with repo.engine.connect() as conn:
            clusters = [c for (c,) in conn.execute(text("SELECT cluster_id FROM track_faces ORDER BY track_id"))]
        expected = _reference_clusters([vectors[s] for s in STEMS], THRESHOLD)
        assert _partition(list(clusters)) == _partition(list(expected))
        assert _partition(list(clusters)) == [[0], [1], [2, 3], [4, 5]]
        # A cluster's faces read back from float16: their distances to the centroid as float32 gives them.
        clapton = f"unknown-{clusters[2]}"
        mean = _unit(_unit(vectors["clapton-1"]) + _unit(vectors["clapton-2"]))
        for face in review.cluster_faces(store, clapton):
            want = 1.0 - float(_unit(vectors[STEMS[face.track_id - 1]]) @ mean)
            assert face.centroid_distance == pytest.approx(want, abs=1e-3)

        # Search by photo: the same hits in the same order, distances within float16's rounding.
        for stem in STEMS:
            probe = vectors[stem]
            hits = search(store, probe, "SFace", 10, THRESHOLD, "test", "sha")
            ref = sorted((1.0 - float(_unit(vectors[s]) @ _unit(probe)), i + 1) for i, s in enumerate(STEMS))
            ref = [(d, t) for d, t in ref if d <= THRESHOLD]
            assert [h.track_id for h in hits] == [t for _, t in ref]
            for h, (d, _) in zip(hits, ref, strict=True):
                assert h.distance == pytest.approx(d, abs=1e-3)

        # What a track face is copied into stays float32: an enrolled embedding (assign), a negative (reject).
        review.assign_face(store, "run-a", 5, "John", "test", create=True)
        review.reject_segment(store, "run-a", 5, 0, "test", identity="John")
        for sql in ("SELECT dim, vector FROM face_embeddings", "SELECT dim, vector FROM identity_negatives"):
            rows = _raw(repo, sql)
            assert len(rows) == 1 and len(store.cipher.decrypt(rows[0][1])) == dim * 4
        names, matrix = store.gallery("SFace")
        assert names == ["John"] and float(np.max(np.abs(matrix[0] - vectors["lennon-1"]))) < 1e-3

        # Key rotation (encrypting a clear database, or re-encrypting with a new key) keeps each row's precision.
        monkeypatch.setenv(KEY_ENV, ",".join([BiometricCipher.new_key()] + ([key] if encrypted else [])))
        rotated = IdentityStore(repo)
        assert rotated.rotate_key("test") > 0
        after = _raw(repo, "SELECT dim, vector FROM track_faces ORDER BY track_id")
        assert all(is_encrypted(b) for _, b in after)
        assert [rotated.cipher.decrypt(b) for _, b in after] == [store.cipher.decrypt(b) for _, b in stored]
        assert {len(rotated.cipher.decrypt(b)) for _, b in _raw(repo, "SELECT dim, vector FROM face_embeddings")} \
            == {dim * 4}


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_float32_rows_of_before_are_read_and_a_wrong_length_is_an_error(
    db_url: str, vectors: dict[str, np.ndarray], encrypted: bool, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    if encrypted:
        monkeypatch.setenv(KEY_ENV, BiometricCipher.new_key())
    else:
        monkeypatch.delenv(KEY_ENV, raising=False)
    dim = len(vectors["adams"])
    with Repository(db_url) as repo:
        store = _store_run(repo, vectors)
        # A face stored before float16 (float32 bytes), written as it was then, beside the float16 ones.
        repo.save_tracks("run-a", [TrackRecord("door", 7, 0, 10, 7.0, 8.0, 10, None, 0, 3, 0.7)])
        old = vectors["lennon-2"]
        with write_transaction(repo.engine) as rows:
            rows.add_track_face("run-a", 7, 0, "door", 7.0, "SFace", dim, store.cipher.encrypt(old.tobytes()), 0.7,
                                None, utcnow())
        (_, blob), = _raw(repo, "SELECT dim, vector FROM track_faces WHERE track_id = 7")
        assert len(store.cipher.decrypt(blob)) == dim * 4
        assert np.array_equal(vector_of(store, blob, dim), old)  # exactly as stored
        hits = search(store, old, "SFace", 10, THRESHOLD, "test", "sha")
        # Itself and its float16 copy (track 6) at distance ~0 (float16 moves a vector's direction by ~1e-8 in
        # cosine), then the other photo of Lennon.
        assert {h.track_id for h in hits[:2]} == {6, 7} and [h.track_id for h in hits[2:]] == [5]
        assert [h.distance for h in hits[:2]] == pytest.approx([0.0, 0.0], abs=1e-4)

        # Naming the old face copies it into the gallery as float32, unchanged.
        review.assign_face(store, "run-a", 7, "John", "test", create=True)
        names, matrix = store.gallery("SFace")
        assert names == ["John"] and np.array_equal(matrix[0], old)

        # Any other length: a clear error, not garbage.
        repo.save_tracks("run-a", [TrackRecord("door", 8, 0, 10, 8.0, 9.0, 10, None, 0, 3, 0.7)])
        with write_transaction(repo.engine) as rows:
            rows.add_track_face("run-a", 8, 0, "door", 8.0, "SFace", dim, store.cipher.encrypt(b"\x00" * (dim * 3)),
                                0.7, None, utcnow())
        with pytest.raises(ValueError, match=f"{dim * 3} bytes, expected {dim} values"):
            search(store, old, "SFace", 10, THRESHOLD, "test", "sha")
        (_, bad), = _raw(repo, "SELECT dim, vector FROM track_faces WHERE track_id = 8")
        with pytest.raises(ValueError, match=r"\(float32\) or \d+ \(float16\)"):
            vector_of(store, bad, dim)
        with pytest.raises(ValueError):
            vector_of(store, blob, dim + 1)  # a dim that fits neither form


def test_track_face_blob() -> None:
    v = np.linspace(-0.3, 0.3, 128, dtype=np.float32)
    dim, raw = track_face_blob(v)
    assert dim == 128 and len(raw) == 256 and raw == v.astype(FACE_VECTOR_DTYPE).tobytes()
    assert vector_blob(v) == (128, v.astype("<f4").tobytes())  # enrolled embeddings, negatives, centroids
    # What float16 cannot hold faithfully stays float32 (the reader takes both): beyond its range, or so small that
    # its subnormals lose the vector.
    for bad in (v * 1e6, v * 1e-6):
        dim, raw = track_face_blob(bad)
        assert len(raw) == 512 and raw == bad.astype("<f4").tobytes()
    for wrong in (np.array([1.0, np.nan]), np.zeros((2, 2)), np.zeros(0)):
        with pytest.raises(ValueError, match="finite, non-empty 1-D"):
            track_face_blob(wrong)
