"""The storage layer on both backends: SQLite (a temporary file) and a real PostgreSQL.

Each PostgreSQL test gets its own schema (via ``search_path`` in the URL), dropped afterwards,
so tests never see each other's rows and can run in parallel.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from genesis.adapters.db import (
    EmbeddingRecord,
    NotFoundError,
    Repository,
    TrackRecord,
    alembic_config,
)
from genesis.adapters.db.schema import metadata
from genesis.domain import (
    Direction,
    LineCrossing,
    PathPoint,
    RecognitionAttempt,
    Sighting,
    ZoneEvent,
    ZoneEventKind,
)

POSTGRES_URL = os.environ.get("GENESIS_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")

TABLES = {
    "cameras",
    "identities",
    "face_embeddings",
    "runs",
    "tracks",
    "point_batches",
    "heatmap_cells",
    "attempt_packs",
    "zone_events",
    "line_crossings",
    "passage_packs",
    "alerts",
    "alert_deliveries",
    "occupancy_samples",
    "api_keys",
    "dashboard_sessions",
    # identities (migration 0004)
    "face_photos",
    "identity_negatives",
    "unknown_clusters",
    "track_faces",
    "gallery_version",
    "audit_log",
    # analytics (migration 0003)
    "camera_snapshots",
    "rollup_camera",
    "rollup_zone",
    "rollup_line",
    "rollup_identity",
    "rollup_identity_zone",
    # console (migration 0006)
    "live_frames",
    "live_watch",
}
RUN_TABLES = ("tracks", "point_batches", "heatmap_cells", "attempt_packs", "zone_events", "line_crossings")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        # A folder that does not exist yet: the repository creates it.
        yield f"sqlite:///{tmp_path / 'data' / 'genesis.db'}"
        return
    admin = create_engine(POSTGRES_URL, poolclass=NullPool)
    schema = f"genesis_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for these tests and is not reachable at {POSTGRES_URL}: {exc}")
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture()
def repo(db_url: str) -> Iterator[Repository]:
    with Repository(db_url) as r:
        yield r


def scalar(repo: Repository, sql: str, **params: object) -> object:
    with repo.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def emb(identity: str, photo: str, seed: int, *, model: str = "sface", dim: int = 8) -> EmbeddingRecord:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return EmbeddingRecord(
        identity=identity,
        model=model,
        detector="yunet",
        vector=vector,
        photo_sha256=f"{photo:0>64}",
        photo_name=f"{photo}.jpg",
    )


def outcome(
    camera: str, seqs: range
) -> tuple[list[Sighting], list[RecognitionAttempt], list[ZoneEvent], list[LineCrossing]]:
    """Rows of a few frames with awkward floats (they must come back bit for bit)."""
    sightings, attempts, events, crossings = [], [], [], []
    for seq in seqs:
        ts = 1_732_800_000.0 + seq / 3.0
        for tid in (2, 1):
            box = (0.1 + seq, 0.2 + tid, 100.0 / 3.0 + seq, 1e-9 + 200.0)
            sightings.append(Sighting(camera, tid, seq, ts, box, 0.1 + 0.2))
            if seq % 2 == 0:
                who = "alice" if tid == 1 else None
                attempts.append(RecognitionAttempt(camera, tid, seq, ts, (1.25, 2.5, 3.75, 5.0), 0.875, who, 1 / 7))
        if seq % 3 == 0:
            events.append(ZoneEvent(camera, "door", 1, ZoneEventKind.ENTER, seq, ts))
            events.append(ZoneEvent(camera, "Desk", 2, ZoneEventKind.EXIT, seq, ts))
            crossings.append(LineCrossing(camera, "gate", 2, Direction.OUT, seq, ts))
            crossings.append(LineCrossing(camera, "Gate", 1, Direction.IN, seq, ts))
    return sightings, attempts, events, crossings


def points_of(sightings: list[Sighting]) -> list[PathPoint]:
    """Every sighting as a trajectory point (what a stored point is: its box and score in single precision)."""
    return [PathPoint(s.camera_id, s.track_id, s.seq, s.ts, s.box, s.score, 1 + s.seq % 3) for s in sightings]


def stored(points: list[PathPoint]) -> list[PathPoint]:
    """The points as read back, by (seq, track): box and score rounded to single precision."""
    def f32(x: float) -> float:
        return float(str(np.float32(x)))

    return sorted((dataclasses.replace(p, box=tuple(f32(v) for v in p.box), score=f32(p.score))  # type: ignore[arg-type]
                   for p in points), key=lambda p: (p.seq, p.track_id))


def track(track_id: int, identity: str | None = None, *, camera: str = "cam1", votes: int = 0) -> TrackRecord:
    return TrackRecord(
        camera_id=camera,
        track_id=track_id,
        first_seq=10,
        last_seq=20 + track_id,
        first_ts=0.1,
        last_ts=2.0 / 3.0,
        frames=11,
        identity=identity,
        votes=votes,
        attempts=votes + 1,
        best_distance=None if identity is None else 0.123456789,
    )


# -- migrations ---------------------------------------------------------------------------------


def _tables(repo: Repository) -> set[str]:
    return set(inspect(repo.engine).get_table_names()) - {"alembic_version"}


def _revision(repo: Repository) -> str | None:
    with repo.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrations_create_the_schema(repo: Repository) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert _tables(repo) == TABLES
    assert _revision(repo) == head


def test_upgrade_twice_is_a_noop(repo: Repository) -> None:
    repo.add_embeddings([emb("alice", "a", 1)])
    repo.upgrade()
    repo.upgrade("head")
    assert _tables(repo) == TABLES
    assert [s.name for s in repo.identities()] == ["alice"]


def test_downgrade_base_then_upgrade(repo: Repository) -> None:
    repo.add_embeddings([emb("alice", "a", 1)])
    repo.downgrade("base")
    assert _tables(repo) == set()
    assert _revision(repo) is None
    repo.upgrade()
    assert _tables(repo) == TABLES
    assert repo.identities() == []


def test_migrations_match_the_models(repo: Repository) -> None:
    """The hand-written migrations create exactly what the ORM models describe."""
    with repo.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        diff = compare_metadata(ctx, metadata)
    assert diff == []


def test_alembic_config_from_url(db_url: str) -> None:
    """The `genesis db upgrade` path: a URL in the config, no connection passed."""
    command.upgrade(alembic_config(db_url), "head")
    command.upgrade(alembic_config(db_url), "head")
    with Repository(db_url, migrate=False) as repo:
        assert _tables(repo) == TABLES
        command.downgrade(alembic_config(db_url), "base")
        assert _tables(repo) == set()


def test_head_revision_is_alembics_and_a_database_at_head_skips_alembic(db_url: str) -> None:
    """The fast path of Repository.upgrade: the head read from the scripts is Alembic's, a database at it
    is left alone, and one behind it is still upgraded."""
    from alembic.script import ScriptDirectory

    from genesis.adapters.db.repository import head_revision

    assert [head_revision()] == ScriptDirectory.from_config(alembic_config()).get_heads()
    with Repository(db_url) as repo:
        assert repo.revision() == head_revision()
        repo.downgrade("0008")
        assert repo.revision() == "0008"
        repo.upgrade()
        assert repo.revision() == head_revision()
        assert _tables(repo) == TABLES


def _start_repository(url: str) -> None:
    Repository(url).close()


def test_concurrent_startup_migrates_once(db_url: str) -> None:
    """Workers that start together on a fresh database all come up; the tables are made once."""
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(_start_repository, db_url) for _ in range(4)]:
            future.result()
    with Repository(db_url, migrate=False) as repo:
        assert _tables(repo) == TABLES


def test_an_upgrade_is_one_transaction(db_url: str) -> None:
    """All the migrations of an upgrade commit together, on SQLite as on PostgreSQL: a process that commits
    after each one lets another one starting beside it read a half-way version and apply a migration twice
    (what test_concurrent_startup_migrates_once caught now and then)."""
    from genesis.adapters.db.repository import head_revision

    with Repository(db_url, migrate=False) as repo:
        commits: list[int] = []
        event.listen(repo._engine, "commit", lambda _conn: commits.append(1))
        repo.upgrade()
        assert repo.revision() == head_revision()
        assert len(commits) == 1


def test_threads_may_open_repositories_together(db_url: str) -> None:
    """Alembic keeps its context in a module global: upgrades in one process are serialised."""
    errors: list[BaseException] = []

    def start() -> None:
        try:
            Repository(db_url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_sqlite_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "genesis.db"
    with Repository(f"sqlite:///{path}") as repo:
        assert path.is_file()
        assert scalar(repo, "PRAGMA foreign_keys") == 1
        assert scalar(repo, "PRAGMA journal_mode") == "wal"


def test_sqlite_new_database_held_by_another_connection_is_waited_for(tmp_path: Path) -> None:
    """A new database another process holds (here a reader in the default rollback mode, for longer than the
    driver's 5 s busy timeout: a first migration on a loaded machine) is waited for, then switched to WAL."""
    path = tmp_path / "genesis.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN")
    other.execute("SELECT * FROM t").fetchall()  # a shared lock: nobody can switch the journal mode meanwhile
    release = threading.Timer(6.0, other.execute, ("COMMIT",))
    release.start()
    try:
        with Repository(f"sqlite:///{path}") as repo:
            assert scalar(repo, "PRAGMA journal_mode") == "wal"
            repo.start_run("r", "cam", "file", {})
    finally:
        release.join()
        other.close()


def test_sqlite_in_memory() -> None:
    with Repository("sqlite://") as repo:
        assert _tables(repo) == TABLES
        repo.start_run("r", "cam", "mem", {})
        assert repo.run("r") is not None


# -- identities ---------------------------------------------------------------------------------


def test_add_embeddings_is_idempotent(repo: Repository) -> None:
    records = [emb("bob", "b1", 1), emb("alice", "a1", 2), emb("alice", "a2", 3)]
    assert repo.add_embeddings(records) == 3
    assert repo.add_embeddings(records) == 0
    # A retried batch that overlaps a new one: only the new photo counts.
    assert repo.add_embeddings([*records, emb("alice", "a3", 4)]) == 1
    # The same photo in the same call twice is stored once.
    assert repo.add_embeddings([emb("carol", "c1", 5), emb("carol", "c1", 5)]) == 1
    assert scalar(repo, "SELECT count(*) FROM face_embeddings") == 5
    assert scalar(repo, "SELECT count(*) FROM identities") == 3
    assert repo.add_embeddings([]) == 0


def test_add_embeddings_creates_only_identities(repo: Repository) -> None:
    repo.add_embeddings([emb("alice", "a1", 1)])
    for table in TABLES - {"identities", "face_embeddings"}:
        assert scalar(repo, f"SELECT count(*) FROM {table}") == 0


def test_add_embeddings_is_one_transaction(repo: Repository) -> None:
    good = emb("alice", "a1", 1)
    bad = emb("bob", "b1", 2, dim=4)  # another dimension for the same model
    with pytest.raises(ValueError, match="dimension"):
        repo.add_embeddings([good, bad])
    assert repo.identities() == []
    repo.add_embeddings([good])
    with pytest.raises(ValueError, match="dimension"):
        repo.add_embeddings([emb("bob", "b1", 2, dim=4)])
    assert [s.name for s in repo.identities()] == ["alice"]
    # A failure inside the database (NOT NULL) after the identity insert rolls it back too.
    broken = EmbeddingRecord("bob", "sface", "yunet", good.vector, None, "b.jpg")  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        repo.add_embeddings([emb("carol", "c1", 3), broken])
    assert [s.name for s in repo.identities()] == ["alice"]


@pytest.mark.parametrize(
    "vector",
    [np.zeros((2, 4), np.float32), np.zeros(0, np.float32), np.array([1.0, np.nan], np.float32)],
    ids=["2d", "empty", "nan"],
)
def test_add_embeddings_rejects_bad_vectors(repo: Repository, vector: np.ndarray) -> None:
    record = EmbeddingRecord("alice", "sface", "yunet", vector, "0" * 64, "a.jpg")
    with pytest.raises(ValueError):
        repo.add_embeddings([record])
    assert repo.identities() == []


def test_gallery_order_dtype_shape_and_model_separation(repo: Repository) -> None:
    records = [
        emb("zoe", "z1", 1),
        emb("alice", "a2", 2),
        emb("bob", "b1", 3),
        emb("alice", "a1", 4),
        emb("alice", "a1", 5, model="dlib", dim=128),
    ]
    repo.add_embeddings(records)
    names, matrix = repo.gallery("sface")
    # By identity name, then by enrolment (embedding id) order: a2 was stored before a1.
    assert names == ["alice", "alice", "bob", "zoe"]
    assert matrix.dtype == np.float32
    assert matrix.shape == (4, 8)
    assert matrix.flags.c_contiguous
    expected = np.stack([records[1].vector, records[3].vector, records[2].vector, records[0].vector])
    np.testing.assert_array_equal(matrix, expected)

    names, matrix = repo.gallery("dlib")
    assert names == ["alice"]
    assert matrix.shape == (1, 128)
    np.testing.assert_array_equal(matrix[0], records[4].vector)

    names, matrix = repo.gallery("nobody")
    assert names == []
    assert matrix.shape == (0, 0)
    assert matrix.dtype == np.float32


def test_gallery_accepts_float64_input(repo: Repository) -> None:
    vector = np.array([0.1, 0.2, 0.3], dtype=np.float64)
    repo.add_embeddings([EmbeddingRecord("alice", "m", "d", vector, "1" * 64, "a.jpg")])
    _, matrix = repo.gallery("m")
    np.testing.assert_array_equal(matrix[0], vector.astype(np.float32))


def test_identities_summary(repo: Repository) -> None:
    before = datetime.now(UTC)
    repo.add_embeddings(
        [
            emb("bob", "b1", 1),
            emb("alice", "a1", 2),
            emb("alice", "a2", 3),
            emb("alice", "a1", 4, model="dlib", dim=128),  # same photo, other model: still 2 photos
        ]
    )
    summaries = repo.identities()
    assert [(s.name, s.photos, s.models) for s in summaries] == [
        ("alice", 2, ("dlib", "sface")),
        ("bob", 1, ("sface",)),
    ]
    for s in summaries:
        assert s.created_at.tzinfo is not None
        assert s.created_at.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= s.created_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_delete_identity_cascades_embeddings_and_unlinks_tracks(repo: Repository) -> None:
    repo.add_embeddings([emb("alice", "a1", 1), emb("alice", "a2", 2), emb("bob", "b1", 3)])
    repo.start_run("run1", "cam1", "video.mp4", {})
    repo.save_tracks("run1", [track(1, "alice", votes=3), track(2, "bob"), track(3, None)])
    alice_id = scalar(repo, "SELECT id FROM identities WHERE name = 'alice'")
    assert scalar(repo, "SELECT identity_id FROM tracks WHERE track_id = 1") == alice_id

    assert repo.delete_identity("alice") is True
    assert repo.delete_identity("alice") is False
    assert repo.delete_identity("nobody") is False

    assert [s.name for s in repo.identities()] == ["bob"]
    assert scalar(repo, "SELECT count(*) FROM face_embeddings") == 1
    assert repo.gallery("sface")[0] == ["bob"]
    assert scalar(repo, "SELECT identity_id FROM tracks WHERE track_id = 1") is None
    assert scalar(repo, "SELECT identity_id FROM tracks WHERE track_id = 2") is not None
    # The decision made at the time is history: the track keeps the name it was given.
    assert repo.tracks("run1") == [track(1, "alice", votes=3), track(2, "bob"), track(3, None)]


# -- runs ---------------------------------------------------------------------------------------


def test_start_and_finish_run(repo: Repository) -> None:
    before = datetime.now(UTC)
    repo.start_run("run1", "cam1", "rtsp://cam1", {"fps": 25.0, "size": [640, 480]})
    run = repo.run("run1")
    assert run is not None
    assert (run.run_id, run.camera_id, run.source, run.status, run.frames) == (
        "run1",
        "cam1",
        "rtsp://cam1",
        "running",
        0,
    )
    assert run.meta == {"fps": 25.0, "size": [640, 480]}
    assert run.finished_at is None
    assert run.started_at.tzinfo is not None and run.started_at.utcoffset() == timedelta(0)
    assert run.started_at >= before - timedelta(seconds=1)
    assert scalar(repo, "SELECT name FROM cameras WHERE id = 'cam1'") == "cam1"

    repo.finish_run("run1", "finished", 460, {"fps": 30.0, "last_ts": 15.3})
    run = repo.run("run1")
    assert run is not None
    assert (run.status, run.frames) == ("finished", 460)
    assert run.meta == {"fps": 30.0, "size": [640, 480], "last_ts": 15.3}
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert repo.run("nope") is None


def test_start_run_is_idempotent_per_camera(repo: Repository) -> None:
    repo.start_run("run1", "cam1", "a.mp4", {})
    repo.start_run("run1", "cam1", "a.mp4", {})
    assert len(repo.runs()) == 1
    with pytest.raises(ValueError, match="cam1"):
        repo.start_run("run1", "cam2", "a.mp4", {})
    assert scalar(repo, "SELECT count(*) FROM cameras") == 1


def test_finish_run_errors(repo: Repository) -> None:
    with pytest.raises(NotFoundError):
        repo.finish_run("nope", "finished", 1, {})
    repo.start_run("run1", "cam1", "a.mp4", {})
    with pytest.raises(ValueError, match="status"):
        repo.finish_run("run1", "done", 1, {})


def test_runs_newest_first_and_by_camera(repo: Repository) -> None:
    for run_id, camera in (("r1", "cam1"), ("r2", "cam2"), ("r3", "cam1")):
        repo.start_run(run_id, camera, f"{run_id}.mp4", {})
    assert [r.run_id for r in repo.runs()] == ["r3", "r2", "r1"]
    assert [r.run_id for r in repo.runs("cam1")] == ["r3", "r1"]
    assert repo.runs("cam9") == []


# -- outcome rows -------------------------------------------------------------------------------


def test_save_outcome_round_trips_in_order(repo: Repository) -> None:
    repo.start_run("run1", "cam1", "a.mp4", {})
    sightings, attempts, events, crossings = outcome("cam1", range(7))
    points = points_of(sightings)
    # Written in reverse: reading back must not depend on the insert order.
    repo.save_outcome("run1", sightings[::-1], attempts[::-1], events[::-1], crossings[::-1], points[::-1])

    assert repo.points("run1") == stored(points)
    assert repo.attempts("run1") == sorted(attempts, key=lambda a: (a.seq, a.track_id))
    assert repo.zone_events("run1") == sorted(events, key=lambda e: (e.seq, e.zone, e.track_id, e.kind.value))
    assert repo.line_crossings("run1") == sorted(crossings, key=lambda c: (c.seq, c.line, c.track_id))
    got = repo.zone_events("run1")[0]
    assert type(got.kind) is ZoneEventKind
    assert type(repo.line_crossings("run1")[0].direction) is Direction
    assert type(repo.points("run1")[0].box) is tuple


def heat_points(repo: Repository, run_id: str) -> int:
    return int(scalar(repo, "SELECT coalesce(sum(points), 0) FROM heatmap_cells WHERE run_id = :r", r=run_id))  # type: ignore[arg-type]


def test_save_outcome_twice_gives_no_duplicates(repo: Repository) -> None:
    repo.start_run("run1", "cam1", "a.mp4", {"width": 320, "height": 240})
    first = outcome("cam1", range(4))
    repo.save_outcome("run1", *first, points_of(first[0]))
    repo.save_outcome("run1", *first, points_of(first[0]))
    assert heat_points(repo, "run1") == len(first[0]) == 8  # the retried batch added nothing to the heatmap
    # A retried batch that overlaps the next one loses nothing and duplicates nothing.
    second = outcome("cam1", range(4, 8))
    repo.save_outcome("run1", *second, points_of(second[0]))
    repo.save_outcome("run1", *second, points_of(second[0]))
    full = outcome("cam1", range(8))
    assert heat_points(repo, "run1") == len(full[0]) == 16
    assert repo.points("run1") == stored(points_of(full[0]))
    assert repo.attempts("run1") == sorted(full[1], key=lambda a: (a.seq, a.track_id))
    assert len(repo.zone_events("run1")) == len(full[2])
    assert len(repo.line_crossings("run1")) == len(full[3])


def test_save_outcome_same_seq_both_zone_event_kinds(repo: Repository) -> None:
    """An enter and an exit of the same zone at the same frame are two rows (kind is in the key)."""
    repo.start_run("run1", "cam1", "a.mp4", {})
    events = [
        ZoneEvent("cam1", "door", 1, ZoneEventKind.EXIT, 5, 0.5),
        ZoneEvent("cam1", "door", 1, ZoneEventKind.ENTER, 5, 0.5),
    ]
    repo.save_outcome("run1", [], [], events, [])
    assert repo.zone_events("run1") == events[::-1]


def test_save_outcome_accepts_numpy_scalars(repo: Repository) -> None:
    repo.start_run("run1", "cam1", "a.mp4", {})
    s = Sighting("cam1", np.int64(3), np.int64(9), np.float64(0.3), tuple(np.float32([1, 2, 3, 4])), np.float32(0.5))  # type: ignore[arg-type]
    p = PathPoint(s.camera_id, s.track_id, s.seq, s.ts, s.box, s.score, np.int64(2))  # type: ignore[arg-type]
    repo.save_outcome("run1", [s], [], [], [], [p])
    assert repo.points("run1") == [PathPoint("cam1", 3, 9, 0.3, (1.0, 2.0, 3.0, 4.0), 0.5, 2)]


def test_save_outcome_checks_run_and_camera(repo: Repository) -> None:
    sightings, attempts, events, crossings = outcome("cam1", range(2))
    with pytest.raises(NotFoundError):
        repo.save_outcome("nope", sightings, attempts, events, crossings)
    repo.start_run("run1", "cam1", "a.mp4", {})
    other = Sighting("cam2", 1, 5, 0.5, (0, 0, 1, 1), 0.9)
    with pytest.raises(ValueError, match="cam2"):
        repo.save_outcome("run1", [*sightings, other], attempts, events, crossings)
    with pytest.raises(ValueError, match="cam2"):
        repo.save_outcome("run1", sightings, attempts, events, crossings,
                          [PathPoint("cam2", 1, 5, 0.5, (0, 0, 1, 1), 0.9)])
    assert repo.points("run1") == []
    repo.save_outcome("run1", [], [], [], [])  # nothing to do
    assert repo.points("nope") == []
    assert repo.attempts("nope") == []


def test_save_tracks_upserts(repo: Repository) -> None:
    repo.add_embeddings([emb("alice", "a1", 1)])
    repo.start_run("run1", "cam1", "a.mp4", {})
    repo.save_tracks("run1", [track(2), track(1)])
    assert repo.tracks("run1") == [track(1), track(2)]

    updated = track(1, "alice", votes=4)
    repo.save_tracks("run1", [updated, track(3, "stranger")])
    assert repo.tracks("run1") == [updated, track(2), track(3, "stranger")]
    assert scalar(repo, "SELECT count(*) FROM tracks") == 3
    assert scalar(repo, "SELECT identity_id FROM tracks WHERE track_id = 1") is not None
    assert scalar(repo, "SELECT identity_id FROM tracks WHERE track_id = 3") is None  # not enrolled

    # The same track twice in one call: the last record wins (no "affects row twice" error).
    repo.save_tracks("run1", [track(2, votes=1), track(2, votes=7)])
    assert repo.tracks("run1")[1] == track(2, votes=7)

    with pytest.raises(ValueError, match="cam2"):
        repo.save_tracks("run1", [track(5, camera="cam2")])
    with pytest.raises(NotFoundError):
        repo.save_tracks("nope", [track(1)])


def test_delete_run_removes_everything_of_the_run(repo: Repository) -> None:
    for run_id in ("run1", "run2"):
        repo.start_run(run_id, "cam1", f"{run_id}.mp4", {"width": 320, "height": 240})
        rows = outcome("cam1", range(6))
        repo.save_outcome(run_id, *rows, points_of(rows[0]))
        repo.save_tracks(run_id, [track(1), track(2)])
    kept = (repo.points("run2"), repo.attempts("run2"), repo.zone_events("run2"), repo.line_crossings("run2"))

    repo.delete_run("run1")
    repo.delete_run("run1")  # already gone: nothing to do
    assert repo.run("run1") is None
    for table in RUN_TABLES:
        assert scalar(repo, f"SELECT count(*) FROM {table} WHERE run_id = :r", r="run1") == 0
        assert scalar(repo, f"SELECT count(*) FROM {table} WHERE run_id = :r", r="run2") > 0
    assert (
        repo.points("run2"),
        repo.attempts("run2"),
        repo.zone_events("run2"),
        repo.line_crossings("run2"),
    ) == kept
    assert [r.run_id for r in repo.runs()] == ["run2"]
    assert scalar(repo, "SELECT count(*) FROM cameras") == 1


def test_rows_survive_reopening(db_url: str) -> None:
    sightings, attempts, events, crossings = outcome("cam1", range(3))
    with Repository(db_url) as repo:
        repo.start_run("run1", "cam1", "a.mp4", {"k": "v"})
        repo.save_outcome("run1", sightings, attempts, events, crossings, points_of(sightings))
    with Repository(db_url) as repo:
        assert repo.points("run1") == stored(points_of(sightings))
        run = repo.run("run1")
        assert run is not None and run.meta == {"k": "v"}


def test_named_segments_are_found_through_an_index_of_the_named_ones(db_url: str) -> None:
    """An identity's runs and segments are read through ``ix_tracks_identity_name``, not by going through every
    segment; it and ``ix_tracks_identity_id`` hold the named segments only (migration 0013)."""
    from genesis.adapters.db.events import read_events

    with Repository(db_url) as repo:
        for run in ("r1", "r2"):
            repo.start_run(run, "cam", "x", {})
            repo.save_tracks(run, [TrackRecord("cam", t, t, t + 5, t / 5, t / 5 + 1, 6,
                                               "alice" if t % 700 == 0 and run == "r1" else None, 1, 1, 0.3)
                                   for t in range(3000)])
        with repo.engine.begin() as conn:
            if repo.dialect == "postgresql":
                conn.execute(text("ANALYZE tracks"))
                # this test's schema only: another test's schema dropped meanwhile cannot be read
                defs = dict(conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tracks' "
                                              "AND schemaname = current_schema()")).all())
                plan = "\n".join(conn.execute(text(
                    "EXPLAIN SELECT run_id, track_id FROM tracks WHERE identity_name = 'alice'")).scalars())
            else:
                conn.execute(text("ANALYZE"))
                defs = dict(conn.execute(text("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'tracks' "
                                              "AND type = 'index' AND sql IS NOT NULL")).all())
                plan = "\n".join(str(r[-1]) for r in conn.execute(text(
                    "EXPLAIN QUERY PLAN SELECT run_id, track_id FROM tracks WHERE identity_name = 'alice'")))
        for name, column in (("ix_tracks_identity_name", "identity_name"), ("ix_tracks_identity_id", "identity_id")):
            assert f"{column} IS NOT NULL" in defs[name].replace('"', "").replace("(", "").replace(")", ""), defs
        assert "ix_tracks_identity_name" in plan, plan
        with repo.engine.connect() as conn:  # the retention of unknown faces reads them by age
            assert "ix_track_faces_created_at" in {i["name"] for i in inspect(conn).get_indexes("track_faces")}
        with read_events(repo.engine) as db:
            assert db.identity_runs("alice") == ["r1"]
        assert [t.track_id for t in repo.identity_rows(["r1", "r2"], "alice")["r1"].tracks] == [0, 700, 1400, 2100,
                                                                                                 2800]
