"""The storage layer: one `Repository` over PostgreSQL (distributed) or SQLite (embedded).

Every write is one short transaction with batched, idempotent statements keyed on natural
keys (``ON CONFLICT DO NOTHING`` / ``DO UPDATE``), so a retried or redelivered task never
duplicates a row and never loses one. Reads return domain objects in a deterministic order
that is the same on both backends.
"""

from __future__ import annotations

import errno
import functools
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Engine, and_, create_engine, delete, event, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from genesis.adapters.db.attempts import batch_rows as attempt_rows
from genesis.adapters.db.attempts import run_attempts
from genesis.adapters.db.packs import Passages, keyed_packs, pack_row, run_packs, segments_of
from genesis.adapters.db.packs import crossings as packed_crossings
from genesis.adapters.db.packs import zone_events as packed_zone_events
from genesis.adapters.db.partitions import ensure_days
from genesis.adapters.db.points import day_rows, point_keys, stored_points
from genesis.adapters.db.tables import (
    RUN_STATUSES,
    AttemptPack,
    Camera,
    FaceEmbedding,
    HeatmapRow,
    Identity,
    LineCrossingRow,
    PassagePack,
    PointBatchRow,
    Run,
    Track,
    ZoneEventRow,
    utcnow,
)
from genesis.domain import (
    Direction,
    LineCrossing,
    PathPoint,
    RecognitionAttempt,
    Sighting,
    TrackRecord,
    ZoneEvent,
    ZoneEventKind,
)
from genesis.domain.heat import count_feet, encode_cells
from genesis.domain.redact import redact

if TYPE_CHECKING:  # Alembic is imported when a migration runs, not by every process that opens the database
    from alembic.config import Config

_DB_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = _DB_DIR / "alembic.ini"
MIGRATIONS_DIR = _DB_DIR / "migrations"

WRITE_TRANSACTION = "genesis_write"
"""Connection execution option: on SQLite, start the transaction with BEGIN IMMEDIATE."""

MIGRATION_LOCK = 0x67656E65_73697300
"""PostgreSQL advisory lock key held while migrating ("genesis" in ASCII)."""

_VECTOR_DTYPE = np.dtype("<f4")

_ALEMBIC_LOCK = threading.Lock()
"""Alembic keeps the running migration context in a module global (``alembic.context``), so
two threads migrating at once in one process would mix their contexts: serialise them here.
Processes are serialised by the database (advisory lock / BEGIN IMMEDIATE, see env.py)."""


class NotFoundError(LookupError):
    """The run (or other row) a write refers to does not exist."""


@dataclass(frozen=True, slots=True)
class EmbeddingRecord:
    """One enrolled face embedding; ``dim`` is ``vector.shape[0]``."""

    identity: str
    model: str
    detector: str
    vector: npt.NDArray[Any]
    photo_sha256: str
    photo_name: str


@dataclass(frozen=True, slots=True)
class IdentitySummary:
    name: str
    photos: int
    """Distinct photos (by sha256) over all models."""
    models: tuple[str, ...]
    created_at: datetime
    id: int = 0
    """The identity's stable id (rows keep it through renames)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    camera_id: str
    source: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    frames: int
    meta: dict[str, Any]
    site: str | None = None
    """The site (Redis) of a distributed run (None: stored before sites, or embedded)."""
    holder: dict[str, Any] | None = None
    """The lease of an embedded run: which process runs it (see genesis.pipeline.lease)."""


# ---------------------------------------------------------------------------------------------
# engine and migrations


SQLITE_BUSY_TIMEOUT_S = 60.0
"""How long a SQLite writer waits for another connection's write transaction before it fails."""
MAX_IN_IDS = 500
"""Reads of some tracks of a run filter in SQL up to this many track ids (one bound parameter each: SQLite allows
999 on old builds), and in Python beyond."""


TRACK_RECORD_COLUMNS = (Track.camera_id, Track.track_id, Track.first_seq, Track.last_seq, Track.first_ts,
                        Track.last_ts, Track.frames, Track.identity_name, Track.votes, Track.attempts,
                        Track.best_distance, Track.segment, Track.named_ts, Track.end_reason)
"""The columns of a `TrackRecord`, in its fields' order."""


def zone_event_order(e: ZoneEvent) -> tuple[int, str, int, str]:
    """How a run's zone events are listed: by (seq, zone, track id, kind), text by code point on both backends."""
    return (e.seq, e.zone, e.track_id, e.kind.value)


def crossing_order(c: LineCrossing) -> tuple[int, str, int]:
    """How a run's line crossings are listed: by (seq, line, track id)."""
    return (c.seq, c.line, c.track_id)


_KINDS = {k.value: k for k in ZoneEventKind}
_DIRECTIONS = {d.value: d for d in Direction}
"""Stored values to members: a dict lookup instead of an Enum call per row (a tenth of a busy day's report)."""


def _zone_event(cam: str, zone: str, tid: int, kind: str, seq: int, ts: float) -> ZoneEvent:
    return ZoneEvent(camera_id=cam, zone=zone, track_id=tid, kind=_KINDS[kind], seq=seq, ts=ts)


def _crossing(cam: str, line: str, tid: int, direction: str, seq: int, ts: float) -> LineCrossing:
    return LineCrossing(camera_id=cam, line=line, track_id=tid, direction=_DIRECTIONS[direction], seq=seq, ts=ts)


@dataclass
class IdentityPassages:
    """What an identity's report entry is made of in one run: the segments, zone events and line crossings of
    the run's tracks that carry the name (`Repository.identity_rows`)."""

    tracks: list[TrackRecord]
    zone_events: list[ZoneEvent]
    crossings: list[LineCrossing]


def _where_tracks(query: Any, table: Any, track_ids: Collection[int] | None) -> Any:
    """``query`` limited to ``track_ids`` in SQL, when given and few enough (:data:`MAX_IN_IDS`)."""
    if track_ids is None or len(track_ids) > MAX_IN_IDS:
        return query
    return query.where(table.track_id.in_(sorted(track_ids)))


KEYED_IDS = 2_000
""":func:`_by_key` looks up at most this many tracks of a run by key; more are picked from the run's rows."""


def _by_key(conn: Connection, query: Any, table: Any, second: Any, run_id: str, ids: Sequence[int],
            named: Any, of_named: Any) -> list[Any]:
    """``query``'s rows of the run's tracks ``ids`` in ``table``, whose primary key leads with (run, ``second``,
    track) (zone events: the zone; crossings: the line): the run's values of ``second`` are found first, one index
    probe each (a loose index scan), so that the rows are then looked up in the key by (run, value, track) instead
    of a read of the whole table or run (neither table has an index by track: it would cost storage). Beyond
    :data:`KEYED_IDS` tracks the run's rows are read instead, joined in SQL with ``named`` (a subquery of the named
    tracks) on ``of_named``."""
    run, track = table.run_id, table.track_id
    if len(ids) > KEYED_IDS:  # many of a busy run's tracks: joined with them in SQL, the run's rows read once
        return list(conn.execute(query.join(named, of_named).where(run == run_id)))
    values: list[Any] = []
    while True:
        probe = select(second).where(run == run_id).order_by(second).limit(1)
        value = conn.execute(probe if not values else probe.where(second > values[-1])).scalar()
        if value is None:
            break
        values.append(value)
    out: list[Any] = []
    for at in range(0, len(ids) if values else 0, MAX_IN_IDS):
        out += conn.execute(query.where(run == run_id, second.in_(values), track.in_(ids[at:at + MAX_IN_IDS]))).all()
    return out


def _of_tracks(rows: list[Any], track_ids: Collection[int] | None) -> list[Any]:
    """The rows of ``track_ids`` (all when None): the filter :func:`_where_tracks` may have left to Python."""
    return rows if track_ids is None else [r for r in rows if r.track_id in track_ids]


def make_engine(url: str, *, foreign_keys: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url``, with SQLite made to behave like a real transactional database.

    For SQLite: creates the folder of the file; turns on WAL (readers never block the writer)
    with ``synchronous=NORMAL`` (an application crash loses nothing; a power cut may lose the
    last commits, never consistency); enforces foreign keys (off by default in SQLite; the
    cascades rely on them) unless ``foreign_keys`` is False (migrations, which rebuild tables);
    and takes over BEGIN from the sqlite3 driver, whose legacy mode autocommits DDL and never
    opens a transaction for SELECT. Write transactions use BEGIN IMMEDIATE so that two writers
    queue on the busy timeout instead of failing with a lock-upgrade deadlock; that timeout is
    ``SQLITE_BUSY_TIMEOUT_S`` (the driver's 5 s is shorter than a first migration on a loaded
    machine, and a writer waiting that long then fails with "database is locked").
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, **kwargs)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.get("connect_args", {})}
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
            # Erasure (forget, purge) must not leave deleted biometric rows in free pages of the file:
            # set here, whatever the SQLite build's default.
            cursor.execute("PRAGMA secure_delete=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_TRANSACTION) else "BEGIN")

    return engine


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode, unless it is already (an in-memory one stays in memory).

    Switching needs the database to itself, and SQLite answers "database is locked" at once, without its busy
    timeout, when another connection holds it meanwhile: two processes or threads opening a new database
    together (a capture launcher's cameras, workers starting side by side) hit that. So the mode is read first,
    and a switch that finds the database busy is tried again until :data:`SQLITE_BUSY_TIMEOUT_S`."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(0.25, 2 * delay)


def alembic_config(url: str | None = None, *, connection: Connection | None = None) -> Config:
    """The Alembic configuration of the packaged migrations, for a URL or an open connection.

    ``genesis db upgrade`` and the tests use this; the ``alembic`` command line works too:
    ``alembic -c genesis/adapters/db/alembic.ini -x url=sqlite:///genesis.db upgrade head``.
    """
    from alembic.config import Config

    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % (URL-encoded passwords, options) must be doubled.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


@functools.cache
def head_revision() -> str | None:
    """The head of the packaged migrations, read from the scripts' ``revision``/``down_revision``
    lines (what Alembic computes, without importing it; tests/unit/adapters compares the two).
    None when the scripts have no single head (Alembic then decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        fields = dict(_REVISION_LINE.findall(script.read_text()))
        rev = fields.get("revision", "").strip("\"'")
        if not rev:
            continue
        revisions.add(rev)
        down = fields.get("down_revision", "None")
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


# ---------------------------------------------------------------------------------------------
# helpers


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in one write transaction (BEGIN IMMEDIATE on SQLite), committed on success."""
    with engine.connect().execution_options(**{WRITE_TRANSACTION: True}) as conn, conn.begin():
        yield conn


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in one read transaction: a consistent view of several statements (PostgreSQL: REPEATABLE READ,
    one snapshot for the whole transaction, reset when the connection goes back to the pool; SQLite: a read
    transaction sees one snapshot in WAL mode). A reader of a run's rows and of its packs sees each passage once,
    whether or not the storage upkeep packs it meanwhile."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def dialect_insert(conn: Connection, table: Any) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {name!r} (use PostgreSQL or SQLite)")


def _insert_ignore(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """executemany INSERT ... ON CONFLICT (primary key, the row's natural key) DO NOTHING."""
    if rows:
        keys = list(table.__table__.primary_key.columns)
        conn.execute(dialect_insert(conn, table).on_conflict_do_nothing(index_elements=keys), rows)


def _vector_bytes(record: EmbeddingRecord) -> tuple[int, bytes]:
    vector = np.asarray(record.vector)
    if vector.ndim != 1 or vector.shape[0] == 0:
        raise ValueError(f"embedding of {record.identity!r} must be a non-empty 1-D vector, got {vector.shape}")
    if not np.issubdtype(vector.dtype, np.number) or not np.all(np.isfinite(vector)):
        raise ValueError(f"embedding of {record.identity!r} ({record.photo_name}) has non-finite values")
    return int(vector.shape[0]), vector.astype(_VECTOR_DTYPE).tobytes()


EPOCH_MIN = 1e9
"""A ``ts`` at or above this (2001-09-09) is an epoch time (a live source); below, a position in a video."""

HOUR_S = 3600
DAY_S = 86400


def absolute_ts(ts: float, started: float) -> float:
    """A row's absolute time (epoch seconds): ``ts`` itself for a live source, else the run's start + ``ts``."""
    return ts if ts >= EPOCH_MIN else started + ts


def _packs_holding(conn: Connection, run_id: str, started: float, items: Iterable[tuple[int, float]]
                   ) -> tuple[list[tuple[int, int, Passages]], set[int]]:
    """(day, first track, pack) of the run's packs that may hold the tracks of ``items`` ((track id, a time of the
    track in the batch)), and those track ids: a batch stored after its tracks were packed (a dead letter replayed
    days later; a batch stored after midnight's packing behind a backlog). A pack holds the tracks whose last
    sighting fell on its day, so only packs of the batch's earliest day or later are read: a live batch's tracks
    are seen today, and none is read."""
    times: dict[int, float] = {}
    for tid, ts in items:
        times[tid] = min(ts, times.get(tid, ts))
    if not times:
        return [], set()
    day = int(min(absolute_ts(ts, started) for ts in times.values()) // DAY_S)
    return keyed_packs(conn, run_id, set(times), day), set(times)


def _take_out_of_packs(conn: Connection, run_id: str, started: float, held: list[tuple[int, int, Passages]],
                       tracks: set[int]) -> None:
    """Take ``tracks`` out of their packs: their zone events and crossings back as rows, their segments dropped
    (the caller writes the newer ones), each pack written again without them (deleted when none of its segments
    is left)."""
    for day, first, p in held:
        every = segments_of(p)
        segs = [t for t in every if t.track_id not in tracks]
        if len(segs) == len(every):
            continue
        events, crossings = packed_zone_events(p), packed_crossings(p)
        _insert_ignore(conn, ZoneEventRow, _zone_event_rows(run_id, [e for e in events if e.track_id in tracks]))
        _insert_ignore(conn, LineCrossingRow, _crossing_rows(run_id, [c for c in crossings if c.track_id in tracks]))
        where = and_(PassagePack.run_id == run_id, PassagePack.day == day, PassagePack.first_track == first)
        if not segs:
            conn.execute(delete(PassagePack).where(where))
            continue
        # keyed by its new first track (no other pack holds it), so the track taken out can be packed again
        conn.execute(update(PassagePack).where(where).values(first_track=min(t.track_id for t in segs), **pack_row(
            segs, [e for e in events if e.track_id not in tracks], [c for c in crossings if c.track_id not in tracks],
            lambda ts: absolute_ts(ts, started))))


def _segment_row(run_id: str, t: TrackRecord, ids: dict[str, int]) -> dict[str, Any]:
    """The ``tracks`` row of a segment (``ids``: identity name -> enrolled identity id, where there is one)."""
    return {
        "run_id": run_id,
        "track_id": int(t.track_id),
        "segment": int(t.segment),
        "camera_id": t.camera_id,
        "first_seq": int(t.first_seq),
        "last_seq": int(t.last_seq),
        "first_ts": float(t.first_ts),
        "last_ts": float(t.last_ts),
        "frames": int(t.frames),
        "identity_id": ids.get(t.identity) if t.identity is not None else None,
        "identity_name": t.identity,
        "votes": int(t.votes),
        "attempts": int(t.attempts),
        "best_distance": None if t.best_distance is None else float(t.best_distance),
        "named_ts": None if t.named_ts is None else float(t.named_ts),
        "end_reason": t.end_reason,
    }


def unpack_tracks(conn: Connection, run_id: str, tracks: Collection[int]) -> int:
    """Take ``tracks`` of a run out of their passage packs, as rows again (segments, zone events, crossings), on
    ``conn``: a packed track that review or clustering is about to name (a named segment is a row). The caller
    holds the run's passage lock (:func:`lock_passages`). Returns the segments put back (0: none was packed)."""
    held = keyed_packs(conn, run_id, set(tracks), 0)
    segs = [t for _, _, p in held for t in segments_of(p, tracks)]
    if not segs:
        return 0
    started = conn.execute(select(Run.started_at).where(Run.id == run_id)).scalar_one().timestamp()
    _take_out_of_packs(conn, run_id, started, held, {int(t.track_id) for t in segs})
    conn.execute(insert(Track), [_segment_row(run_id, t, {}) for t in segs])  # packed segments carry no name
    return len(segs)


PASSAGES_LOCK_SEED = 0x70617373  # "pass": the advisory lock of a run's passages (packing them, naming one)


def lock_passages(conn: Connection, run_id: str) -> None:
    """On PostgreSQL, serialise packing a run's passages with naming one of its segments (a transaction-level
    advisory lock on the run): a name given between the packer's read of a track and its delete would be lost
    with the row. SQLite's write transactions are serialised already."""
    if conn.dialect.name == "postgresql":
        _run_lock(conn, run_id, PASSAGES_LOCK_SEED)


def _last_seqs(segments: Iterable[TrackRecord]) -> dict[int, int]:
    """Track id -> the last frame of its segments."""
    out: dict[int, int] = {}
    for t in segments:
        out[int(t.track_id)] = max(int(t.last_seq), out.get(int(t.track_id), int(t.last_seq)))
    return out


def _zone_event_rows(run_id: str, events: Iterable[ZoneEvent]) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "zone": e.zone, "track_id": int(e.track_id), "seq": int(e.seq),
             "kind": ZoneEventKind(e.kind).value, "camera_id": e.camera_id, "ts": float(e.ts)} for e in events]


def _crossing_rows(run_id: str, crossings: Iterable[LineCrossing]) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "line": c.line, "track_id": int(c.track_id), "seq": int(c.seq),
             "camera_id": c.camera_id, "direction": Direction(c.direction).value, "ts": float(c.ts)}
            for c in crossings]


def _by_hour(sightings: Sequence[Sighting], started: float) -> dict[int, list[Sighting]]:
    """Sightings by the hour (absolute time, epoch seconds) they fall in."""
    by_hour: dict[int, list[Sighting]] = {}
    for s in sightings:
        by_hour.setdefault(int(absolute_ts(s.ts, started) // HOUR_S) * HOUR_S, []).append(s)
    return by_hour


def heat_rows(run_id: str, camera_id: str, started: float, width: int, height: int, cell_px: int,
              sightings: Sequence[Sighting]) -> list[dict[str, Any]]:
    """The ``heatmap_cells`` rows of a batch's sightings: one per hour (absolute time) they fall in, keyed by the
    batch's first frame in that hour, with its last frame beside it (a retried batch gives the same keys)."""
    out = []
    for hour, items in sorted(_by_hour(sightings, started).items()):
        grid = count_feet((s.box for s in items), width, height, cell_px)
        out.append({"run_id": run_id, "hour": datetime.fromtimestamp(hour, UTC), "day": hour // DAY_S,
                    "first_seq": min(int(s.seq) for s in items), "last_seq": max(int(s.seq) for s in items),
                    "camera_id": camera_id, "width": int(width), "height": int(height), "cell_px": int(cell_px),
                    "points": len(items), "cells": encode_cells(grid)})
    return out


def _uncounted(conn: Connection, run_id: str, sightings: Sequence[Sighting], started: float) -> list[Sighting]:
    """The sightings of a batch whose frames no stored heat row of the run counts yet, hour by hour.

    The same case as :func:`_unstored`: a sequencer resumed after it was killed between handing a batch on and
    saving its state sends a batch that starts at the same frame and may run further. Its frames a stored row
    counts (``first_seq`` .. ``last_seq`` of the same hour; a row stored before migration 0012 counts its first
    frame only, a merged row everything up to its ``last_seq``) are left out, so each frame is counted once and the
    extra frames are counted at all (keyed by the first frame alone, the batch was dropped whole)."""
    if not sightings:
        return []
    lo, hi = min(int(s.seq) for s in sightings), max(int(s.seq) for s in sightings)
    by_hour = _by_hour(sightings, started)
    t = HeatmapRow
    spans: dict[int, list[tuple[int, int]]] = {}
    for hour, first, last in conn.execute(select(t.hour, t.first_seq, func.coalesce(t.last_seq, t.first_seq)).where(
            t.run_id == run_id, t.hour.in_([datetime.fromtimestamp(h, UTC) for h in by_hour]),
            t.first_seq <= hi, func.coalesce(t.last_seq, t.first_seq) >= lo)):
        spans.setdefault(int(hour.timestamp()), []).append((int(first), int(last)))
    if not spans:
        return list(sightings)
    return [s for hour, items in by_hour.items() for s in items
            if not any(a <= int(s.seq) <= b for a, b in spans.get(hour, ()))]


def point_rows(run_id: str, points: Sequence[PathPoint], started: float) -> list[dict[str, Any]]:
    """The ``point_batches`` rows of a batch's points (``genesis.adapters.db.points``): one per UTC day of their
    absolute time, keyed by its first point (frame, track), so that a retried batch gives the same keys."""
    return day_rows(run_id, points, lambda ts: int(absolute_ts(ts, started) // DAY_S))


def _lock_run_writes(conn: Connection, dialect: str, run_id: str) -> None:
    """On PostgreSQL, serialise the run's point and heat writes (a transaction-level advisory lock on the run), so
    two store workers cannot both miss each other's rows in :func:`_unstored` / :func:`_uncounted`; SQLite's write
    transactions are serialised already."""
    if dialect == "postgresql":
        _run_lock(conn, run_id, POINTS_LOCK_SEED)


def _run_lock(conn: Connection, run_id: str, seed: int) -> None:
    """A transaction-level advisory lock on the run (PostgreSQL), one per ``seed`` (what it serialises)."""
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(run_id, seed))))


def _unstored(conn: Connection, run_id: str, points: Sequence[PathPoint]) -> list[PathPoint]:
    """The points of a batch that no stored row of the run holds yet (by frame and track).

    A sequencer killed after handing a batch to the store and before saving its state is resumed from the state
    before that batch, and its next batch may cover more frames than the first one did (a pass takes every result
    that has arrived): the same points again, and new ones, under another row key or the same (the first point).
    Without this the packed rows would hold a point twice, or the second batch would be dropped whole. The caller
    holds the run's write lock (:func:`_lock_run_writes`)."""
    if not points:
        return []
    lo, hi = min(int(p.seq) for p in points), max(int(p.seq) for p in points)
    t = PointBatchRow
    held: set[tuple[int, int]] = set()
    for first, blob in conn.execute(select(t.first_seq, t.points).where(
            t.run_id == run_id, t.last_seq >= lo, t.first_seq <= hi)):
        held.update(point_keys(int(first), bytes(blob)))
    return [p for p in points if (int(p.seq), int(p.track_id)) not in held] if held else list(points)


POINTS_LOCK_SEED = 0x706F696E  # "poin": the advisory lock of a run's point and heat writes (hashtextextended's seed)


def _check_camera(run_id: str, run_camera: str, items: Iterable[Any]) -> None:
    for item in items:
        if item.camera_id != run_camera:
            raise ValueError(f"run {run_id} belongs to camera {run_camera!r}, got a row of camera {item.camera_id!r}")


RUN_COLUMNS = select(
    Run.id, Run.camera_id, Run.source, Run.status, Run.started_at, Run.finished_at, Run.frames, Run.meta, Run.site,
    Run.holder,
)
"""The columns of a run, in the order :func:`run_record` reads them (the one list of them)."""


_RunRow = tuple[str, str, str, str, datetime, datetime | None, int, dict[str, Any] | None, str | None,
                dict[str, Any] | None]


def run_record(row: _RunRow) -> RunRecord:
    run_id, camera_id, source, status, started_at, finished_at, frames, meta, site, holder = row
    return RunRecord(run_id, camera_id, source, status, started_at, finished_at, frames, dict(meta or {}), site,
                     dict(holder) if holder else None)


SQLITE_DISK_RESERVE = 8 * 2**20
"""Free bytes a SQLite database's disk keeps for cleaning up (see :meth:`Repository._keep_room`)."""


class Repository:
    """Typed access to the Genesis database; one engine, short transactions, no other state.

    Thread-safe as far as the SQLAlchemy engine is (each call checks a connection out of the
    pool and returns it). Use as a context manager or call `close`.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self._engine = make_engine(url)
        if migrate:
            self.upgrade()

    @property
    def engine(self) -> Engine:
        return self._engine

    def _keep_room(self) -> None:
        """A SQLite database stops taking a run's rows while its disk has less than :data:`SQLITE_DISK_RESERVE`
        free (OSError ENOSPC, the caller's "disk full"): the rest stays for removing the failed run's rows,
        which on a disk with nothing left fails too (SQLite writes the pages a delete changes to its WAL first).
        PostgreSQL keeps its own disk."""
        path = self._engine.url.database if self.dialect == "sqlite" else None
        if not path or path == ":memory:" or path.startswith("file:"):
            return
        folder = Path(path).resolve().parent
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return
        if free < SQLITE_DISK_RESERVE:
            raise OSError(errno.ENOSPC, f"No space left on device: {free // 1024} KiB free, "
                          f"{SQLITE_DISK_RESERVE // 2**20} MiB kept for the database to clean up", path)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- migrations -------------------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Apply the migrations up to ``revision`` (a no-op when already there: a database at the
        head revision is recognised with one query, without loading Alembic and its scripts)."""
        if revision == "head" and self.revision() == head_revision():
            return
        from alembic import command

        with _ALEMBIC_LOCK, self._migration_connection() as conn:
            command.upgrade(alembic_config(connection=conn), revision)

    def downgrade(self, revision: str) -> None:
        """Revert the migrations down to ``revision`` (``"base"`` drops every table)."""
        from alembic import command

        with _ALEMBIC_LOCK, self._migration_connection() as conn:
            command.downgrade(alembic_config(connection=conn), revision)

    def revision(self) -> str | None:
        """The database's migration revision (None: no schema yet, or more than one head)."""
        from sqlalchemy import inspect, text

        with self._engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        return str(versions[0]) if len(versions) == 1 else None

    @contextmanager
    def _migration_connection(self) -> Iterator[Connection]:
        """A connection for Alembic; on SQLite with foreign keys off while tables are rebuilt.

        Batch migrations on SQLite copy a table and drop the old one, which with enforced
        foreign keys would cascade-delete the children. The PRAGMA only works outside a
        transaction, so it is sent straight to the driver before Alembic begins one.
        """
        with self._engine.connect().execution_options(**{WRITE_TRANSACTION: True}) as conn:
            raw = conn.connection.driver_connection if self.dialect == "sqlite" else None
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=OFF")
            try:
                yield conn
                if conn.in_transaction():
                    conn.commit()
            finally:
                if raw is not None:
                    if conn.in_transaction():
                        conn.rollback()
                    raw.execute("PRAGMA foreign_keys=ON")

    def _write(self) -> AbstractContextManager[Connection]:
        return write_connection(self._engine)

    def _read(self) -> AbstractContextManager[Connection]:
        return read_connection(self._engine)

    # -- identities -------------------------------------------------------------------------

    def add_embeddings(self, records: Sequence[EmbeddingRecord]) -> int:
        """Store enrolled embeddings, creating their identities; returns the rows newly inserted.

        One transaction. Idempotent on (identity, model, photo_sha256): a photo already stored
        for that identity and model is skipped (the first vector stays). All embeddings of one
        model must have the same dimension.
        """
        if not records:
            return 0
        prepared = []
        dims: dict[str, int] = {}
        for rec in records:
            if not rec.identity.strip():
                raise ValueError("identity name is empty")
            if not rec.model:
                raise ValueError("embedding model name is empty")
            dim, blob = _vector_bytes(rec)
            if dims.setdefault(rec.model, dim) != dim:
                raise ValueError(f"embeddings of model {rec.model!r} differ in dimension: {dims[rec.model]}, {dim}")
            prepared.append((rec, dim, blob))
        now = utcnow()
        names = sorted({rec.identity for rec in records})
        with self._write() as conn:
            stored = conn.execute(
                select(FaceEmbedding.model, func.min(FaceEmbedding.dim), func.max(FaceEmbedding.dim))
                .where(FaceEmbedding.model.in_(sorted(dims)))
                .group_by(FaceEmbedding.model)
            ).all()
            for model, lo, hi in stored:
                if lo != dims[model] or hi != dims[model]:
                    raise ValueError(
                        f"model {model!r} has embeddings of dimension {lo} stored, got dimension {dims[model]}"
                    )
            conn.execute(
                dialect_insert(conn, Identity).on_conflict_do_nothing(index_elements=[Identity.name]),
                [{"name": n, "created_at": now} for n in names],
            )
            ids = dict(conn.execute(select(Identity.name, Identity.id).where(Identity.name.in_(names))).all())
            stmt = (
                dialect_insert(conn, FaceEmbedding)
                .on_conflict_do_nothing(
                    index_elements=[FaceEmbedding.identity_id, FaceEmbedding.model, FaceEmbedding.photo_sha256]
                )
                .returning(FaceEmbedding.id)
            )
            rows = [
                {
                    "identity_id": ids[rec.identity],
                    "model": rec.model,
                    "detector": rec.detector,
                    "dim": dim,
                    "vector": blob,
                    "photo_sha256": rec.photo_sha256,
                    "photo_name": rec.photo_name,
                    "created_at": now,
                }
                for rec, dim, blob in prepared
            ]
            # RETURNING yields a row only for what was actually inserted, on both backends.
            return len(conn.execute(stmt, rows).all())

    def identities(self) -> list[IdentitySummary]:
        """Every identity with its photo count and models, sorted by name."""
        with self._read() as conn:
            heads = conn.execute(
                select(Identity.name, Identity.created_at, func.count(FaceEmbedding.photo_sha256.distinct()),
                       Identity.id)
                .outerjoin(FaceEmbedding, FaceEmbedding.identity_id == Identity.id)
                .group_by(Identity.id, Identity.name, Identity.created_at)
            ).all()
            pairs = conn.execute(select(Identity.name, FaceEmbedding.model).join(FaceEmbedding).distinct()).all()
        models: dict[str, list[str]] = {}
        for name, model in pairs:
            models.setdefault(name, []).append(model)
        # Sorted in Python: PostgreSQL orders text by the database collation, SQLite by bytes.
        return sorted(
            (
                IdentitySummary(name=n, photos=int(photos), models=tuple(sorted(models.get(n, []))), created_at=at,
                                id=int(ident))
                for n, at, photos, ident in heads
            ),
            key=lambda s: s.name,
        )

    def gallery(self, model: str) -> tuple[list[str], npt.NDArray[np.float32]]:
        """Names per row and the (N, dim) float32 matrix of the embeddings of ``model``.

        Rows are ordered by identity name, then by embedding id (enrolment order).
        """
        with self._read() as conn:
            rows = list(
                conn.execute(
                    select(Identity.name, FaceEmbedding.dim, FaceEmbedding.vector)
                    .join(Identity, Identity.id == FaceEmbedding.identity_id)
                    .where(FaceEmbedding.model == model)
                    .order_by(FaceEmbedding.id)
                )
            )
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        rows.sort(key=lambda r: r[0])  # stable: keeps the id order within a name
        dims = {r[1] for r in rows}
        if len(dims) != 1:
            raise ValueError(f"model {model!r} has embeddings of several dimensions: {sorted(dims)}")
        dim = dims.pop()
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=_VECTOR_DTYPE).reshape(len(rows), dim)
        return [r[0] for r in rows], matrix.astype(np.float32)

    def delete_identity(self, name: str) -> bool:
        """Delete an identity and its embeddings; tracks keep the name but lose the link."""
        with self._write() as conn:
            result = conn.execute(delete(Identity).where(Identity.name == name))
            return bool(result.rowcount)

    # -- runs ---------------------------------------------------------------------------------

    def start_run(self, run_id: str, camera_id: str, source: str, meta: dict[str, Any], *, site: str | None = None,
                  holder: dict[str, Any] | None = None) -> None:
        """Record a new run (status ``running``), creating the camera row if it is missing.

        ``site``: the site (Redis) of a distributed run; ``holder``: the lease of an embedded run
        (the process that runs it). Starting the same run again is a no-op (a retried start),
        unless it names another camera.
        """
        now = utcnow()
        with self._write() as conn:
            conn.execute(
                dialect_insert(conn, Camera).on_conflict_do_nothing(index_elements=[Camera.id]),
                {"id": camera_id, "name": camera_id, "created_at": now},
            )
            conn.execute(
                dialect_insert(conn, Run).on_conflict_do_nothing(index_elements=[Run.id]),
                {
                    "id": run_id,
                    "camera_id": camera_id,
                    "source": redact(source),  # stored for display: never a camera's credentials
                    "status": "running",
                    "started_at": now,
                    "finished_at": None,
                    "frames": 0,
                    "meta": dict(meta),
                    "site": site,
                    "holder": dict(holder) if holder is not None else None,
                },
            )
            stored = conn.execute(select(Run.camera_id).where(Run.id == run_id)).scalar_one()
            if stored != camera_id:
                raise ValueError(f"run {run_id} already exists for camera {stored!r}")

    def finish_run(self, run_id: str, status: str, frames: int, meta: dict[str, Any]) -> None:
        """Close a run: status, frame count, end time; ``meta`` is merged into the stored meta."""
        if status not in RUN_STATUSES:
            raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
        with self._write() as conn:
            old = conn.execute(select(Run.meta).where(Run.id == run_id)).one_or_none()
            if old is None:
                raise NotFoundError(f"unknown run {run_id}")
            conn.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(
                    status=status,
                    frames=int(frames),
                    finished_at=None if status == "running" else utcnow(),
                    meta={**(old[0] or {}), **meta},
                )
            )

    def abandon_run(self, run_id: str, reason: str, *, remove_rows: bool = False) -> bool:
        """Mark a run that is still ``running`` as failed, with ``meta.abandoned = reason``.

        Conditional: a run that finished (or was marked) meanwhile is left as it is. True when
        this call marked it. With ``remove_rows`` (an embedded run, whose failure removes its
        rows) everything recorded in the run goes too, in the same transaction: the run row is
        deleted (the foreign keys cascade) and written again, failed, with ``meta.rows_removed``.
        """
        with self._write() as conn:
            found = conn.execute(RUN_COLUMNS.where(Run.id == run_id, Run.status == "running")).one_or_none()
            if found is None:
                return False
            run = run_record(found)
            meta = {**run.meta, "abandoned": reason, "abandoned_at": utcnow().isoformat()}
            if remove_rows:
                conn.execute(delete(Run).where(Run.id == run_id))
                conn.execute(dialect_insert(conn, Run), {
                    "id": run.run_id, "camera_id": run.camera_id, "source": run.source, "status": "failed",
                    "started_at": run.started_at, "finished_at": utcnow(), "frames": 0,
                    "meta": {**meta, "rows_removed": True}, "site": run.site, "holder": run.holder,
                })
                return True
            done = conn.execute(
                update(Run).where(Run.id == run_id, Run.status == "running")
                .values(status="failed", finished_at=utcnow(), meta=meta)
            )
            return bool(done.rowcount)

    def delete_run(self, run_id: str) -> None:
        """Remove a run and everything recorded in it (the foreign keys cascade)."""
        with self._write() as conn:
            conn.execute(delete(Run).where(Run.id == run_id))

    # -- writing a run's outcome -----------------------------------------------------------

    def save_outcome(
        self,
        run_id: str,
        sightings: Sequence[Sighting],
        attempts: Sequence[RecognitionAttempt],
        zone_events: Sequence[ZoneEvent],
        crossings: Sequence[LineCrossing],
        points: Sequence[PathPoint] = (),
        cell_px: int = 8,
    ) -> None:
        """Store what the ordered stages derived from some frames: one transaction, idempotent.

        ``sightings`` (every track in every frame) are not stored row by row: they are summed into the
        run's heatmap grid of ``cell_px`` squares per hour (``heatmap_cells``); ``points`` (the sampled
        trajectories) are stored packed, one ``point_batches`` row per UTC day they fall in. Each kind of
        row is one executemany INSERT ... ON CONFLICT DO NOTHING on its natural key (the packed points: run,
        the first point's frame and track, day), so a retried call stores nothing twice and a partial failure
        stores nothing; a point (frame, track) a stored row already holds is left out of the new rows, so a batch
        that repeats part of an earlier one (a sequencer resumed after it was killed) stores only what is new, and
        the heatmap rows count only the frames no stored row counts yet.
        Every row must belong to the run's camera.
        """
        if not (sightings or points or attempts or zone_events or crossings):
            return
        self._keep_room()
        if self.dialect == "postgresql" and (sightings or points):
            self._ensure_partitions(run_id, [*sightings, *points])
        with self._write() as conn:
            found = conn.execute(select(Run.camera_id, Run.started_at, Run.meta).where(Run.id == run_id)).one_or_none()
            if found is None:
                raise NotFoundError(f"unknown run {run_id}")
            camera, start, meta = str(found[0]), found[1].timestamp(), dict(found[2] or {})
            _check_camera(run_id, camera, [*sightings, *points, *attempts, *zone_events, *crossings])
            width, height = int(meta.get("width", 0) or 0), int(meta.get("height", 0) or 0)
            if sightings or points or attempts:
                _lock_run_writes(conn, self.dialect, run_id)
            if sightings and width > 0 and height > 0:
                _insert_ignore(conn, HeatmapRow, heat_rows(run_id, camera, start, width, height, cell_px,
                                                            _uncounted(conn, run_id, sightings, start)))
            _insert_ignore(conn, PointBatchRow, point_rows(run_id, _unstored(conn, run_id, points), start))
            _insert_ignore(conn, AttemptPack, attempt_rows(
                conn, run_id, attempts, lambda ts: int(absolute_ts(ts, start) // DAY_S)))
            times = [(e.track_id, e.ts) for e in zone_events] + [(c.track_id, c.ts) for c in crossings]
            packed, ids = _packs_holding(conn, run_id, start, times)
            if packed:  # a batch stored after its tracks were packed: what the packs hold is not repeated
                held_events = {(e.zone, e.track_id, e.seq, e.kind) for _, _, p in packed
                               for e in packed_zone_events(p, ids)}
                held_crossings = {(c.line, c.track_id, c.seq) for _, _, p in packed for c in packed_crossings(p, ids)}
                zone_events = [e for e in zone_events
                               if (e.zone, e.track_id, e.seq, ZoneEventKind(e.kind)) not in held_events]
                crossings = [c for c in crossings if (c.line, c.track_id, c.seq) not in held_crossings]
            _insert_ignore(conn, ZoneEventRow, _zone_event_rows(run_id, zone_events))
            _insert_ignore(conn, LineCrossingRow, _crossing_rows(run_id, crossings))

    def _ensure_partitions(self, run_id: str, rows: Sequence[Sighting | PathPoint]) -> None:
        """The day partitions the rows fall in (PostgreSQL), created first in a transaction of their own
        when this process has not seen them (beat creates them ahead; a back-dated run needs this)."""
        with self._read() as conn:
            started = conn.execute(select(Run.started_at).where(Run.id == run_id)).scalar_one_or_none()
        if started is None:
            return  # the write says which run is unknown
        start = started.timestamp()
        days = {int(absolute_ts(r.ts, start) // DAY_S) for r in rows}
        ensure_days(self.engine, days)

    def save_tracks(self, run_id: str, tracks: Sequence[TrackRecord]) -> None:
        """Insert or update the track segments of a run (upsert on (run_id, track_id, segment)); one
        transaction.

        ``identity`` is linked to the enrolled identity of that name when there is one; the
        name itself is always kept. When a segment appears twice, the last record wins. The
        segments of a track after its last one given here are removed (a track re-saved with fewer
        segments: nothing stale stays behind). A track whose passages are already packed is left out when the pack
        holds as late a state (a dead letter replayed days later), and taken out of its pack when this one is later
        (its last batch stored after midnight's packing, behind a backlog): `_take_out_of_packs`.
        """
        if not tracks:
            return
        latest = {(int(t.track_id), int(t.segment)): t for t in tracks}
        with self._write() as conn:
            found = conn.execute(select(Run.camera_id, Run.started_at).where(Run.id == run_id)).one_or_none()
            if found is None:
                raise NotFoundError(f"unknown run {run_id}")
            _check_camera(run_id, str(found[0]), latest.values())
            started = found[1].timestamp()
            packed, asked = _packs_holding(conn, run_id, started, [(t.track_id, t.last_ts) for t in latest.values()])
            if packed:  # a batch stored after some of its tracks were packed
                packed_last = _last_seqs(t for _, _, p in packed for t in segments_of(p, asked))
                given_last = _last_seqs(latest.values())
                # an older state (a dead letter replayed days later) is left out: the pack holds a later one; a newer
                # one (stored behind a backlog after midnight's packing) takes its track out of the pack first
                newer = {tid for tid, last in packed_last.items() if given_last[tid] > last}
                latest = {k: t for k, t in latest.items() if k[0] not in packed_last or k[0] in newer}
                if newer:
                    _take_out_of_packs(conn, run_id, started, packed, newer)
                if not latest:
                    return
            names = sorted({t.identity for t in latest.values() if t.identity is not None})
            ids: dict[str, int] = {}
            if names:
                ids = dict(conn.execute(select(Identity.name, Identity.id).where(Identity.name.in_(names))).all())
            stmt = dialect_insert(conn, Track)
            stmt = stmt.on_conflict_do_update(
                index_elements=[Track.run_id, Track.track_id, Track.segment],
                set_={
                    col: getattr(stmt.excluded, col)
                    for col in (
                        "camera_id",
                        "first_seq",
                        "last_seq",
                        "first_ts",
                        "last_ts",
                        "frames",
                        "identity_id",
                        "identity_name",
                        "votes",
                        "attempts",
                        "best_distance",
                        "named_ts",
                        "end_reason",
                    )
                },
            )
            conn.execute(stmt, [_segment_row(run_id, t, ids) for _, t in sorted(latest.items())])
            last: dict[int, int] = {}
            for tid, seg in latest:
                last[tid] = max(last.get(tid, 0), seg)
            for tid, seg in sorted(last.items()):
                conn.execute(delete(Track).where(Track.run_id == run_id, Track.track_id == tid, Track.segment > seg))

    @staticmethod
    def _run_camera(conn: Connection, run_id: str) -> str | None:
        return conn.execute(select(Run.camera_id).where(Run.id == run_id)).scalar_one_or_none()

    # -- reading back -------------------------------------------------------------------------
    # Plain column selects on a Connection (no ORM session): rows map straight onto the
    # domain dataclasses without an identity map, which matters for the large event tables.

    def run(self, run_id: str) -> RunRecord | None:
        with self._read() as conn:
            row = conn.execute(RUN_COLUMNS.where(Run.id == run_id)).one_or_none()
        return None if row is None else run_record(row)

    def runs(self, camera_id: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Runs (of a camera, in a status), newest first (ties broken by run id, descending)."""
        query = RUN_COLUMNS if camera_id is None else RUN_COLUMNS.where(Run.camera_id == camera_id)
        if status is not None:
            query = query.where(Run.status == status)
        with self._read() as conn:
            rows = [run_record(row) for row in conn.execute(query)]
        return sorted(rows, key=lambda r: (r.started_at, r.run_id), reverse=True)

    def tracks(self, run_id: str, track_ids: Collection[int] | None = None) -> list[TrackRecord]:
        """The track segments of a run by (track id, segment) (of ``track_ids`` only, when given)."""
        query = (
            select(*TRACK_RECORD_COLUMNS)
            .where(Track.run_id == run_id)
            .order_by(Track.track_id, Track.segment)
        )
        with self._read() as conn:
            rows = _of_tracks([TrackRecord(*row) for row in conn.execute(_where_tracks(query, Track, track_ids))],
                              track_ids)
            packed = [t for p in run_packs(conn, run_id, track_ids) for t in segments_of(p, track_ids)]
        if packed:  # the run's packed passages (genesis.adapters.db.packs), in the same order
            rows = sorted(rows + packed, key=lambda t: (t.track_id, t.segment))
        return rows

    def runs_by_id(self, run_ids: Collection[str]) -> dict[str, RunRecord]:
        """The runs of ``run_ids`` that exist, by id (one read)."""
        if not run_ids:
            return {}
        with self._read() as conn:
            rows = [run_record(row) for row in conn.execute(RUN_COLUMNS.where(Run.id.in_(sorted(run_ids))))]
        return {r.run_id: r for r in rows}

    def identity_rows(self, run_ids: Collection[str], name: str) -> dict[str, IdentityPassages]:
        """For each of ``run_ids`` where a track segment carries ``name``: every segment, zone event and line
        crossing of the tracks that carry it, in the orders of :meth:`tracks`, :meth:`zone_events` and
        :meth:`line_crossings` (what those three give for each run with the tracks that carry the name: the
        segments in one read for all the runs, their events and crossings by key, run by run: :func:`_by_key`)."""
        if not run_ids:
            return {}
        named = (select(Track.run_id, Track.track_id)
                 .where(Track.run_id.in_(sorted(run_ids)), Track.identity_name == name).distinct().subquery())

        def of_named(table: Any) -> Any:
            return and_(named.c.run_id == table.run_id, named.c.track_id == table.track_id)

        z, c = ZoneEventRow, LineCrossingRow
        out: dict[str, IdentityPassages] = {}
        with self._read() as conn:
            for row in conn.execute(select(Track.run_id, *TRACK_RECORD_COLUMNS).join(named, of_named(Track))
                                    .order_by(Track.run_id, Track.track_id, Track.segment)):
                run_id, *fields = row
                out.setdefault(str(run_id), IdentityPassages([], [], [])).tracks.append(TrackRecord(*fields))
            events: list[Any] = []
            crossings: list[Any] = []
            for run_id, rows in out.items():  # through the primary keys: (run, zone or line, track, ...)
                ids = sorted({t.track_id for t in rows.tracks})
                events += _by_key(conn, select(z.run_id, z.camera_id, z.zone, z.track_id, z.kind, z.seq, z.ts), z,
                                  z.zone, run_id, ids, named, of_named(z))
                crossings += _by_key(conn, select(c.run_id, c.camera_id, c.line, c.track_id, c.direction, c.seq,
                                                  c.ts), c, c.line, run_id, ids, named, of_named(c))
        for run_id, cam, zone, tid, kind, seq, ts in events:
            out[str(run_id)].zone_events.append(_zone_event(cam, zone, tid, kind, seq, ts))
        for run_id, cam, line, tid, d, seq, ts in crossings:
            out[str(run_id)].crossings.append(_crossing(cam, line, tid, d, seq, ts))
        for rows in out.values():
            rows.zone_events.sort(key=zone_event_order)
            rows.crossings.sort(key=crossing_order)
        return out

    def _run_rows(
        self, run_id: str, columns: Sequence[Any], order_by: Sequence[Any] = (),
        track_ids: Collection[int] | None = None,
    ) -> tuple[str, list[Any]]:
        """The run's camera and the ``columns`` of the run's rows of their table (of ``track_ids`` only, when
        given), in ``order_by`` order (one read transaction); an unknown run has camera "" and no rows."""
        camera, rows, _ = self._run_rows_packed(run_id, columns, order_by, track_ids, packed=False)
        return camera, rows

    def _run_rows_packed(
        self, run_id: str, columns: Sequence[Any], order_by: Sequence[Any] = (),
        track_ids: Collection[int] | None = None, *, packed: bool = True,
    ) -> tuple[str, list[Any], list[Passages]]:
        """:meth:`_run_rows`, and the run's packs that may hold ``track_ids`` (every pack, when not given), read in
        the same transaction (a packing in between would otherwise hide rows or give them twice)."""
        table = columns[0].class_
        query = select(*columns).where(table.run_id == run_id).order_by(*order_by)
        with self._read() as conn:
            camera = self._run_camera(conn, run_id)
            if camera is None:
                return "", [], []
            rows = _of_tracks(list(conn.execute(_where_tracks(query, table, track_ids))), track_ids)
            return camera, rows, list(run_packs(conn, run_id, track_ids)) if packed else []

    def points(self, run_id: str) -> list[PathPoint]:
        """The trajectory points of a run by (seq, track_id); the camera is the run's."""
        t = PointBatchRow
        camera, rows = self._run_rows(run_id, (t.first_seq, t.points), order_by=(t.first_seq, t.first_track, t.day))
        out = [p for first, blob in rows for p in stored_points(int(first), bytes(blob))]
        out.sort(key=lambda p: (p.seq, p.track_id))  # rows of one frame range may overlap (a day's boundary)
        return [p.path_point(camera) for p in out]

    def attempts(self, run_id: str) -> list[RecognitionAttempt]:
        """The recognition attempts of a run by (seq, track_id); the camera is the run's."""
        with self._read() as conn:
            camera = conn.execute(select(Run.camera_id).where(Run.id == run_id)).scalar_one_or_none()
            return [] if camera is None else [a.attempt(camera) for a in run_attempts(conn, run_id)]

    def zone_events(self, run_id: str, track_ids: Collection[int] | None = None) -> list[ZoneEvent]:
        """The zone events of a run by (seq, zone, track_id, kind) (of ``track_ids`` only, when given)."""
        t = ZoneEventRow
        _, rows, packed = self._run_rows_packed(run_id, (t.camera_id, t.zone, t.track_id, t.kind, t.seq, t.ts),
                                                track_ids=track_ids)
        events = [_zone_event(*row) for row in rows] + [e for p in packed for e in packed_zone_events(p, track_ids)]
        # Sorted in Python so that text compares by code point on both backends.
        return sorted(events, key=zone_event_order)

    def line_crossings(self, run_id: str, track_ids: Collection[int] | None = None) -> list[LineCrossing]:
        """The line crossings of a run by (seq, line, track_id) (of ``track_ids`` only, when given)."""
        t = LineCrossingRow
        _, rows, packed = self._run_rows_packed(run_id, (t.camera_id, t.line, t.track_id, t.direction, t.seq, t.ts),
                                                track_ids=track_ids)
        out = [_crossing(*row) for row in rows] + [c for p in packed for c in packed_crossings(p, track_ids)]
        return sorted(out, key=crossing_order)


__all__ = [
    "ALEMBIC_INI",
    "EPOCH_MIN",
    "MIGRATIONS_DIR",
    "MIGRATION_LOCK",
    "RUN_COLUMNS",
    "WRITE_TRANSACTION",
    "EmbeddingRecord",
    "IdentityPassages",
    "IdentitySummary",
    "NotFoundError",
    "Repository",
    "RunRecord",
    "TrackRecord",
    "alembic_config",
    "lock_passages",
    "make_engine",
    "passage_rows",
    "read_connection",
    "run_record",
    "segment_at",
    "segment_index",
    "segment_spans",
    "span_holding",
    "unpack_tracks",
    "write_connection",
]


SegmentSpan = tuple[int, int, int, str | None]
"""(segment, first_seq, last_seq, name) of a track segment: what a trajectory point needs of it."""


def segment_spans(conn: Connection, run_id: str, track_ids: Collection[int] | None = None,
                  identity: str | None = None, packed_tracks: Collection[int] | None = None
                  ) -> dict[int, list[SegmentSpan]]:
    """Track id -> the spans of the run's segments in order (of ``track_ids`` and named ``identity``, when given),
    for :func:`span_holding`. Packed segments (which carry no name) of ``packed_tracks`` only, when given (the
    tracks whose spans the caller will look up: a long run's packs are not all read)."""
    query = select(Track.track_id, Track.segment, Track.first_seq, Track.last_seq, Track.identity_name).where(
        Track.run_id == run_id)
    if track_ids is not None:
        query = query.where(Track.track_id.in_(sorted(track_ids)))
    if identity is not None:
        query = query.where(Track.identity_name == identity)
    out: dict[int, list[SegmentSpan]] = {}
    for tid, segment, first, last, name in conn.execute(query.order_by(Track.track_id, Track.segment)):
        out.setdefault(int(tid), []).append((int(segment), int(first), int(last), name))
    if identity is None:  # packed segments carry no name
        wanted = track_ids if packed_tracks is None else packed_tracks
        for p in run_packs(conn, run_id, wanted):
            for t in segments_of(p, wanted):
                out.setdefault(t.track_id, []).append((t.segment, t.first_seq, t.last_seq, t.identity))
        for spans in out.values():
            spans.sort()
    return out


def passage_rows(conn: Connection, run_id: str, low: int, high: int | None = None
                 ) -> tuple[list[TrackRecord], list[ZoneEvent], list[LineCrossing]]:
    """The run's segments (by track, segment), zone events and line crossings of the tracks ``low`` .. ``high``
    (no upper bound when None): what a pack of those tracks holds."""
    def within(table: Any) -> Any:
        cond = and_(table.run_id == run_id, table.track_id >= low)
        return cond if high is None else and_(cond, table.track_id <= high)

    z, c = ZoneEventRow, LineCrossingRow
    segs = [TrackRecord(*r) for r in conn.execute(select(*TRACK_RECORD_COLUMNS).where(within(Track))
                                                   .order_by(Track.track_id, Track.segment))]
    events = [_zone_event(*r) for r in conn.execute(select(z.camera_id, z.zone, z.track_id, z.kind, z.seq, z.ts)
                                                      .where(within(z)))]
    crossings = [_crossing(*r) for r in conn.execute(select(c.camera_id, c.line, c.track_id, c.direction, c.seq, c.ts)
                                                        .where(within(c)))]
    return segs, events, crossings


def span_holding(spans: dict[int, list[SegmentSpan]], track_id: int, seq: int) -> SegmentSpan | None:
    """The segment of ``track_id`` whose sightings span frame ``seq`` (a stored point lies in one segment of its
    track or, between two of them, in none: unlike :func:`segment_at`, which gives events there the earlier one)."""
    for span in spans.get(track_id, ()):
        if span[1] <= seq <= span[2]:
            return span
    return None


def segment_index(tracks: Iterable[TrackRecord]) -> dict[int, list[TrackRecord]]:
    """Track id -> its segments in order (for :func:`segment_at`)."""
    out: dict[int, list[TrackRecord]] = {}
    for t in sorted(tracks, key=lambda r: (r.track_id, r.segment)):
        out.setdefault(int(t.track_id), []).append(t)
    return out


def segment_at(index: dict[int, list[TrackRecord]], track_id: int, seq: int) -> TrackRecord | None:
    """The segment of ``track_id`` that holds ``seq``: the last one starting at or before it (events
    between two segments' sightings belong to the earlier one); None for an unknown track."""
    segments = index.get(int(track_id))
    if not segments:
        return None
    found = segments[0]
    for t in segments:
        if t.first_seq <= seq:
            found = t
        else:
            break
    return found
