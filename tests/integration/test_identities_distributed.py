"""Identities in distributed mode (capture -> Redis -> Celery workers -> PostgreSQL), with biometric
data encrypted: track faces stored by the store task, unknown faces clustered exactly as in the
embedded run, a cluster named, search by photo across runs, and forget leaving nothing behind in
PostgreSQL and Redis."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from sqlalchemy import create_engine, inspect, text

from genesis.identities.crops import as_jpeg
from genesis.identities.crypto import BiometricCipher, is_encrypted
from genesis.services import live
from tests.integration.workers import genesis_cli, pipeline_env, workers
from tests.photos import face_photo
from tests.services import redis_url
from tests.stored import point_rows

BROKER = redis_url(6)
FRAMES = redis_url(7)
CLIP = ["--camera", "entrance", "--stride", "3", "--max-frames", "60"]
NAME = "Zyx Ana"


@pytest.fixture(scope="module")
def env(models_dir: Path, tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[dict[str, str]]:
    out = tmp_path_factory.mktemp("identities")
    with pipeline_env(out, models_dir, data_dir, BROKER, FRAMES, {"gap_timeout_s": 20}) as e:
        e["GENESIS_EMBEDDING_KEY"] = BiometricCipher.new_key()
        yield e


def _faces(url: str) -> list[tuple[int, float, int | None]]:
    """(track id, ts, cluster rank) of the run's track faces; clusters numbered by first appearance."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT track_id, ts, cluster_id FROM track_faces ORDER BY ts, track_id")).all()
    engine.dispose()
    rank: dict[int, int] = {}
    out = []
    for tid, ts, cid in rows:
        if cid is not None:
            rank.setdefault(cid, len(rank))
        out.append((int(tid), float(ts), None if cid is None else rank[cid]))
    return out


def _dump(url: str) -> str:
    engine = create_engine(url)
    parts = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            # Blobs are ciphertext (random base64 may spell anything): only the other values.
            parts += [repr(tuple(v for v in r if not isinstance(v, bytes | memoryview)))
                      for r in conn.execute(text(f'SELECT * FROM "{table}"'))]
    engine.dispose()
    return "\n".join(parts)


def test_track_faces_clusters_search_and_forget(env: dict[str, str], shared_dir: Path, data_dir: Path) -> None:
    faces = shared_dir / "models" / "faces"
    video = str(data_dir / "video" / "opencv4nodejs_people.mp4")
    out = Path(env["TEST_OUT_DIR"])
    # Embedded reference (SQLite), same clip, same enrolled person.
    emb_env = dict(env, GENESIS_DATABASE_URL=f"sqlite:///{out}/embedded.db")
    genesis_cli(emb_env, "enroll", "obama", str(faces / "obama.jpg"), str(faces / "obama2.jpg"))
    genesis_cli(emb_env, "run", "--source", video, *CLIP)
    embedded = _faces(emb_env["GENESIS_DATABASE_URL"])
    assert len(embedded) >= 3 and any(c is not None for _, _, c in embedded)

    pg = env["GENESIS_DATABASE_URL"]
    genesis_cli(env, "enroll", "obama", str(faces / "obama.jpg"), str(faces / "obama2.jpg"))
    specs = [("detect", "detect", 1, "prefork"), ("recognize", "recognize", 1, "solo"), ("store", "store", 1, "solo")]
    frames_redis = redis.Redis.from_url(FRAMES)
    live.mark_watched("entrance", 600, None, frames_redis)  # somebody watches the camera's live view
    with workers(*specs, env=env, log_dir=out):
        printed = genesis_cli(env, "capture", "--source", video, *CLIP)
        run_id = re.search(r"run ([0-9a-f]{32})", printed)[1]  # type: ignore[index]
        genesis_cli(env, "drain", "--timeout", "300")
    distributed = _faces(pg)
    assert distributed == embedded  # same tracks with a face, same unknown clusters
    # The sequencer published the live view to Redis: the sightings of one frame, whose tracks' stored
    # trajectories (entry to exit point) span that frame, with the stored box where a point fell on it.
    shown = live.read_latest("entrance", None, frames_redis)
    assert shown is not None and shown.meta["run_id"] == run_id and shown.jpeg[:2] == b"\xff\xd8"
    assert 0 < frames_redis.ttl(live.frame_key("entrance")) <= live.REDIS_FRAME_TTL_S
    seq = shown.meta["seq"]
    engine = create_engine(pg)
    with engine.connect() as conn:
        points = [p for _, p in point_rows(conn, "WHERE run_id = :r", r=run_id)]
        spans = {t: (min(p.seq for p in points if p.track_id == t), max(p.seq for p in points if p.track_id == t))
                 for t in {p.track_id for p in points}}
        at = {p.track_id: p.box for p in points if p.seq == seq}
        crops = [r[0] for r in conn.execute(text("SELECT crop FROM track_faces"))]
    engine.dispose()
    persons = {p["track_id"]: p["box"] for p in shown.meta["persons"]}
    assert persons and all(spans[t][0] <= seq <= spans[t][1] for t in persons), (persons, spans)
    assert set(at) <= set(persons)
    for t, box in at.items():
        assert np.allclose(persons[t], box, atol=0.06), (t, persons[t], box)
    assert crops and all(c is not None and is_encrypted(bytes(c)) for c in crops)  # face crops, encrypted

    engine = create_engine(pg)
    with engine.connect() as conn:
        blobs = [bytes(r[0]) for r in conn.execute(text("SELECT vector FROM track_faces"))]
        cluster_id, track_id, crop = conn.execute(text(
            "SELECT cluster_id, track_id, crop FROM track_faces WHERE cluster_id IS NOT NULL AND crop IS NOT NULL "
            "ORDER BY ts, track_id")).first()  # type: ignore[misc]
    engine.dispose()
    assert all(is_encrypted(bytes(b)) for b in blobs)  # encrypted at rest
    listing = genesis_cli(env, "identities", "unknowns")
    assert f"unknown-{cluster_id}" in listing

    # Search by photo: that person's face from the video (the kept crop, decrypted, enlarged on a grey margin)
    # finds that track.
    photo = face_photo(as_jpeg(BiometricCipher.from_env(env).decrypt(bytes(crop))), out / "person.jpg")
    found = genesis_cli(env, "search", str(photo), "--top", "3")
    assert run_id in found and re.search(rf"\b{track_id}\b", found), found

    # Naming the cluster relabels its tracks; forgetting the name erases everything of that person.
    assert "relabelled" in genesis_cli(env, "identities", "name", f"unknown-{cluster_id}", NAME)
    engine = create_engine(pg)
    with engine.connect() as conn:
        named = conn.execute(text("SELECT count(*) FROM tracks WHERE identity_name = :n"), {"n": NAME}).scalar_one()
    engine.dispose()
    assert named >= 1
    assert NAME in _dump(pg)
    genesis_cli(env, "identities", "forget", NAME, "--yes")
    assert "Zyx" not in _dump(pg)
    # Redis: no key or value names her (frame JPEGs are random bytes: the full name, not a fragment).
    for url in (BROKER, FRAMES):
        client = redis.Redis.from_url(url)
        for key in client.scan_iter("*"):
            assert NAME.encode() not in key and NAME.encode() not in (client.dump(key) or b"")
        client.close()
    audit = genesis_cli(env, "identities", "audit")
    assert "forget" in audit and "search" in audit and "Zyx" not in audit
