"""Faces of tracks on real photos and the real models: unknown-face clustering (the two Clapton and the
two Lennon photos of ../shared/data/faces/unknown), naming a cluster, "not this person", search by photo,
retention, and forget leaving nothing behind (every table, every Redis key)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from sqlalchemy import insert, inspect, text

from genesis.adapters.db import Repository, TrackRecord
from genesis.adapters.db.attempts import StoredAttempt
from genesis.adapters.db.attempts import pack_row as attempt_pack
from genesis.adapters.db.tables import AttemptPack
from genesis.config import Settings
from genesis.identities import review
from genesis.identities.crypto import KEY_ENV, BiometricCipher, is_encrypted
from genesis.identities.store import IdentityStore
from genesis.identities.tracks import (
    TrackFaceRecord,
    name_unknown,
    purge,
    save_track_faces,
    search,
    unknowns,
)
from genesis.pipeline.model_loader import detector_label, load_face_models, load_gallery
from genesis.services.enroll import enroll, read_image
from tests.services import redis_url
from tests.unit.adapters.test_repository import db_url  # noqa: F401  (the sqlite + postgresql fixture)

REDIS_DB = 12


@pytest.fixture(scope="module")
def unknown_faces(data_dir: Path, models_dir: Path) -> dict[str, np.ndarray]:
    """file stem (and face index for photos of two people) -> SFace embedding."""
    from genesis.config import load_settings

    fd, emb = load_face_models(load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir)}))
    out: dict[str, np.ndarray] = {}
    for p in sorted((data_dir / "faces" / "unknown").glob("*.jpg")):
        image = read_image(p)
        faces = fd.detect(image)
        for i, v in enumerate(emb.embed(image, faces)):
            out[p.stem if len(faces) == 1 else f"{p.stem}:{i}"] = v
    return out


def _run(repo: Repository, run_id: str, camera: str, tracks: dict[int, str | None]) -> None:
    repo.start_run(run_id, camera, "test", {})
    repo.save_tracks(run_id, [TrackRecord(camera, tid, 0, 10, 0.0, 1.0, 10, name, 2 if name else 0, 3, 0.3)
                              for tid, name in tracks.items()])


def _rec(camera: str, tid: int, v: np.ndarray, identity: str | None = None, ts: float = 0.0) -> TrackFaceRecord:
    return TrackFaceRecord(camera, tid, ts, "SFace", [float(x) for x in v], identity, 0.3 if identity else 0.7)


def test_unknown_faces_cluster_by_person_and_name_one(
    settings: Settings, unknown_faces: dict[str, np.ndarray]
) -> None:
    assert {"clapton-1", "clapton-2", "lennon-1", "lennon-2"} <= set(unknown_faces)
    stems = sorted(unknown_faces)
    thr = settings.recognition.embedder.cosine_threshold
    with Repository(settings.database_url) as repo:
        store = IdentityStore(repo)
        _run(repo, "run-a", "door", {i + 1: None for i in range(len(stems))})
        records = [_rec("door", i + 1, unknown_faces[s], ts=float(i)) for i, s in enumerate(stems)]
        assert save_track_faces(store, "run-a", records, thr) == len(stems)
        assert save_track_faces(store, "run-a", records, thr) == 0  # redelivered: nothing twice
        with repo.engine.connect() as conn:
            cluster = {stems[int(tid) - 1]: cid for tid, cid in conn.execute(
                text("SELECT track_id, cluster_id FROM track_faces WHERE run_id = 'run-a'"))}
        assert cluster["clapton-1"] == cluster["clapton-2"]
        assert cluster["lennon-1"] == cluster["lennon-2"]
        assert cluster["clapton-1"] != cluster["lennon-1"]
        others = [cluster[s] for s in stems if not s.startswith(("clapton", "lennon"))]
        assert len(set(others)) == len(others) and not set(others) & {cluster["clapton-1"], cluster["lennon-1"]}
        assert len(unknowns(store)) == len(stems) - 2
        # Another camera, later: the same person joins the same cluster (a persistent id).
        _run(repo, "run-b", "hall", {1: None})
        save_track_faces(store, "run-b", [_rec("hall", 1, unknown_faces["clapton-2"])], thr)
        clapton = f"unknown-{cluster['clapton-1']}"
        summary = {u.label: u for u in unknowns(store)}[clapton]
        assert summary.tracks == 3 and summary.cameras == ("door", "hall")
        # Naming it: its faces become enrolled, its past tracks get the name.
        assert name_unknown(store, clapton, "Eric Clapton", "test") == 3
        assert clapton not in {u.label for u in unknowns(store)}
        tracks = {(r.camera_id, r.track_id): r.identity for run in ("run-a", "run-b") for r in repo.tracks(run)}
        assert tracks[("hall", 1)] == "Eric Clapton"
        assert tracks[("door", stems.index("clapton-1") + 1)] == "Eric Clapton"
        assert tracks[("door", stems.index("lennon-1") + 1)] is None
        gallery = load_gallery(repo, settings)
        assert gallery.identities == ["Eric Clapton"]
        assert gallery.match(unknown_faces["clapton-1"]).identity == "Eric Clapton"
        assert gallery.match(unknown_faces["lennon-1"]).identity is None
        assert [a.action for a in store.audit_log()] == ["name"]


def test_not_this_person_and_search_by_photo(
    settings: Settings, unknown_faces: dict[str, np.ndarray], data_dir: Path, models_dir: Path
) -> None:
    fd, emb = load_face_models(settings)
    unknown = data_dir / "faces" / "unknown"
    thr = settings.recognition.embedder.cosine_threshold
    with Repository(settings.database_url) as repo:
        enroll(repo, "lennon", [unknown / "lennon-1.jpg"], fd, emb, detector_label(settings))
        store = IdentityStore(repo)
        probe = unknown_faces["lennon-2"]
        assert load_gallery(repo, settings).match(probe).identity == "lennon"
        _run(repo, "run-c", "door", {1: "lennon", 2: None})
        save_track_faces(store, "run-c", [_rec("door", 1, probe, "lennon"), _rec("door", 2, unknown_faces["adams"])],
                         thr)
        # Search by photo: the lennon track, not the other one.
        hits = search(store, unknown_faces["lennon-1"], "SFace", 5, thr, "test", "sha")
        assert [(h.run_id, h.track_id, h.identity) for h in hits] == [("run-c", 1, "lennon")]
        assert review.reject_segment(store, "run-c", 1, 0, "test").identity == "lennon"
        assert [r.identity for r in repo.tracks("run-c")] == [None, None]
        gallery = load_gallery(repo, settings)
        assert gallery.match(probe).identity is None  # that face never matches lennon again
        assert gallery.match(unknown_faces["lennon-1"]).identity == "lennon"  # lennon himself still does
        assert [a.action for a in store.audit_log()] == ["enroll", "search", "reject"]
        # Retention: unknown faces older than the retention go; the tracks stay.
        counts = purge(store, 30, "test", now=store.audit_log()[-1].at + timedelta(days=31))
        assert counts == {"unknown_clusters": 1, "track_faces": 2}
        assert unknowns(store) == [] and len(repo.tracks("run-c")) == 2


def _everything(repo: Repository) -> str:
    """Every value of every row of every table, as text (blobs left out)."""
    parts = []
    with repo.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                # Blobs are ciphertext (random base64 may spell anything): checked by decrypting them below.
                parts.append(f"{table}: {tuple(v for v in row if not isinstance(v, bytes | memoryview))!r}")
    return "\n".join(parts)


def _all_vectors(repo: Repository, store: IdentityStore) -> list[np.ndarray]:
    out = []
    with repo.engine.connect() as conn:
        for table, col in (("face_embeddings", "vector"), ("identity_negatives", "vector"),
                           ("track_faces", "vector"), ("unknown_clusters", "centroid")):
            for blob, dim in conn.execute(text(f"SELECT {col}, dim FROM {table}")):
                out.append(store._vec(blob, dim))
    return out


def test_forget_leaves_nothing_behind(
    settings: Settings, unknown_faces: dict[str, np.ndarray], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, BiometricCipher.new_key())
    fd, emb = load_face_models(settings)
    ana = sorted((data_dir / "faces" / "known" / "scarlett").glob("*.jpg"))
    ana_vec = emb.embed(read_image(ana[0]), fd.detect(read_image(ana[0]))[:1])[0]
    ana_other = emb.embed(read_image(ana[4]), fd.detect(read_image(ana[4]))[:1])[0]
    client = redis.Redis.from_url(redis_url(REDIS_DB))
    client.flushdb()
    thr = settings.recognition.embedder.cosine_threshold
    try:
        with Repository(settings.database_url) as repo:
            enroll(repo, "Ana Zed", ana[:3], fd, emb, detector_label(settings), redis=client)
            enroll(repo, "lennon", [data_dir / "faces" / "unknown" / "lennon-1.jpg"], fd, emb,
                   detector_label(settings), redis=client)
            store = IdentityStore(repo, redis=client)
            _run(repo, "run-d", "door", {1: "Ana Zed", 2: "Ana Zed", 3: "lennon", 4: None})
            with repo.engine.begin() as conn:
                conn.execute(insert(AttemptPack), [attempt_pack("run-d", [
                    StoredAttempt(1, 5, 0.1, (0.0, 0.0, 9.0, 9.0), 0.9, "Ana Zed", 0.2),
                    StoredAttempt(2, 5, 0.1, (1.0, 1.0, 9.0, 9.0), 0.8, None, 0.6)])])
            save_track_faces(store, "run-d", [_rec("door", 1, ana_vec, "Ana Zed"), _rec("door", 2, ana_vec, "Ana Zed"),
                                              _rec("door", 3, unknown_faces["lennon-2"], "lennon"),
                                              _rec("door", 4, ana_other)], thr)  # her, before she was enrolled
            assert len(unknowns(store)) == 1
            review.reject_segment(store, "run-d", 2, 0, "test")  # a negative of Ana
            store.rename("Ana Zed", "Ana", "test")
            assert [a.identity for a in repo.attempts("run-d")] == ["Ana", None]  # the packed attempts follow
            store.rename("Ana", "Ana Zed", "test")
            search(store, ana_vec, "SFace", 5, thr, "test", "sha")
            assert "Ana Zed" in _everything(repo)
            counts = store.forget("Ana Zed", "test")
            assert [(a.track_id, a.identity, a.distance) for a in repo.attempts("run-d")] == [(1, None, 0.2),
                                                                                               (2, None, 0.6)]
            assert counts["embeddings"] == 3 and counts["face_photos"] == 3 and counts["negatives"] == 1
            assert counts["unknown_clusters"] == 1 and counts["track_faces"] == 3
            assert unknowns(store) == []
            dump = _everything(repo)
            assert "Ana" not in dump
            assert "lennon" in dump  # only her
            for v in _all_vectors(repo, store):  # no embedding of her face anywhere, in any table
                for mine in (ana_vec, ana_other):
                    assert 1.0 - float(v @ mine) / float(np.linalg.norm(v)) > thr
            with repo.engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM face_photos")).scalar_one() == 1  # lennon's
                assert conn.execute(text("SELECT count(*) FROM tracks WHERE identity_id IS NOT NULL")).scalar_one() == 1
            for key in client.scan_iter("*"):
                value = client.dump(key) or b""
                assert b"Ana Zed" not in key and b"Ana Zed" not in value
            assert load_gallery(repo, settings).identities == ["lennon"]
    finally:
        client.flushdb()
        client.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_the_retention_purge_beat_runs_deletes_old_unknown_faces(settings: Settings,
                                                                 unknown_faces: dict[str, np.ndarray],
                                                                 encrypted: bool) -> None:
    """Beat's hourly retention purge (`genesis.services.rollups.purge`) applies ``retention.unknown_faces_days`` to
    the faces of unrecognised tracks and to unknown clusters, as ``genesis identities purge`` does: before, they
    stayed until someone ran that command. Named faces and recent ones stay; the tracks stay, anonymous; a purge
    that deleted nothing writes no audit entry (it runs every hour). Deleting needs no key: faces stored encrypted
    are purged by a process without ``GENESIS_EMBEDDING_KEY``."""
    from datetime import UTC, datetime

    from genesis.services.rollups import RETENTION_ACTOR
    from genesis.services.rollups import purge as retention_purge

    thr = settings.recognition.embedder.cosine_threshold
    with Repository(settings.database_url) as repo:
        store = IdentityStore(repo, BiometricCipher([BiometricCipher.new_key().encode()] if encrypted else []))
        _run(repo, "run-d", "door", {1: "lennon", 2: None, 3: None})
        save_track_faces(store, "run-d", [_rec("door", 1, unknown_faces["lennon-1"], "lennon"),
                                          _rec("door", 2, unknown_faces["adams"]),
                                          _rec("door", 3, unknown_faces["clapton-1"])], thr)
        stored = datetime.now(UTC).timestamp()
        with repo.engine.connect() as conn:
            blobs = [bytes(v) for (v,) in conn.execute(text("SELECT vector FROM track_faces"))]
        assert len(blobs) == 3 and all(is_encrypted(b) == encrypted for b in blobs)
        days = settings.retention.unknown_faces_days
        assert retention_purge(repo, settings, now=stored + (days - 1) * 86400)["track_faces"] == 0  # not old yet
        assert store.audit_log() == []
        counts = retention_purge(repo, settings, now=stored + (days + 1) * 86400)
        assert (counts["track_faces"], counts["unknown_clusters"]) == (2, 2), counts
        with repo.engine.connect() as conn:
            left = [tuple(r) for r in conn.execute(text("SELECT run_id, track_id FROM track_faces"))]
        assert left == [("run-d", 1)] and unknowns(store) == [] and len(repo.tracks("run-d")) == 3
        assert [(a.actor, a.action, a.detail["track_faces"]) for a in store.audit_log()] == [
            (RETENTION_ACTOR, "purge", 2)]


def test_the_unknown_face_purge_goes_in_batches(db_url: str, settings: Settings) -> None:  # noqa: F811
    """The purge deletes a few faces a transaction (the clustering lock is never held long): with batches of 2,
    the 7 faces of unknown people (their clusters too) go over several transactions, on both databases, and the
    named one stays."""
    from datetime import UTC, datetime

    rng = np.random.default_rng(7)
    with Repository(db_url) as repo:
        store = IdentityStore(repo, BiometricCipher([]))
        _run(repo, "run-e", "door", {t: ("ana" if t == 8 else None) for t in range(1, 9)})
        vectors = rng.normal(size=(8, 128))
        save_track_faces(store, "run-e", [_rec("door", t, vectors[t - 1], "ana" if t == 8 else None)
                                          for t in range(1, 9)], settings.recognition.embedder.cosine_threshold)
        clusters = len(unknowns(store))
        assert clusters >= 2
        later = datetime.now(UTC) + timedelta(days=31)
        assert purge(store, 30, "test", now=later, batch=2) == {"unknown_clusters": clusters, "track_faces": 7}
        with repo.engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(text("SELECT track_id FROM track_faces"))] == [(8,)]
        assert unknowns(store) == [] and purge(store, 30, "test", now=later, batch=2) == {
            "unknown_clusters": 0, "track_faces": 0}
        assert [a.detail["track_faces"] for a in store.audit_log() if a.action == "purge"] == [7, 0]
