"""What the database holds: rows and bytes per table, rows per camera and per camera-day (``genesis db stats``,
``GET /api/db/stats``, the ``genesis_db_*`` gauges, ``python -m genesis.bench storage``).

Bytes are the database's own figures:

- **PostgreSQL** (method ``pg_total_relation_size``): a table's total is ``pg_total_relation_size`` (heap, its
  TOAST table and TOAST index, the free-space and visibility maps, every index); ``heap_bytes`` is
  ``pg_relation_size`` (the main fork), ``index_bytes`` ``pg_indexes_size`` and ``toast_bytes`` the
  ``pg_total_relation_size`` of its TOAST table. A partitioned table is the sum of its partitions.
- **SQLite** with the ``dbstat`` virtual table (method ``dbstat``): the pages of each b-tree (overflow pages
  included), the table's own and those of its indexes; there is no TOAST (``toast_bytes`` 0).
- **SQLite without dbstat** (method ``page_count``): only the whole file is known (``page_count × page_size``);
  per-table bytes and every estimate built on them are None.

Rows are ``count(*)``, exact, unless ``exact_rows=False`` asks for PostgreSQL's planner estimate
(``pg_class.reltuples``, kept by ANALYZE and autovacuum: free, where ``count(*)`` reads the whole table) —
what the scrape-time gauges use.

Per camera-day: rows of the high-volume tables (:data:`DAY_TABLES`) per camera and UTC day of their absolute
time (``ts`` when it is an epoch time, else the run's start + ``ts``: see
:mod:`genesis.adapters.db.analytics`). The bytes of a camera-day are an **estimate**: for each table, its
bytes per row (total bytes / rows) times the camera-day's rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Float,
    Integer,
    String,
    case,
    cast,
    exists,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    text,
    update,
)

from genesis.adapters.db import packs
from genesis.adapters.db.attempts import pack_row as attempt_pack
from genesis.adapters.db.attempts import stored_attempts
from genesis.adapters.db.partitions import create_days
from genesis.adapters.db.points import StoredPoint, point_keys, row_of, stored_points
from genesis.adapters.db.repository import (
    EPOCH_MIN,
    dialect_insert,
    passage_rows,
    read_connection,
    write_connection,
)
from genesis.adapters.db.schema import metadata
from genesis.adapters.db.tables import AttemptPack, Identity, PassagePack, Run, Track, utcnow

DAY_TABLES: dict[str, str] = {
    "point_batches": "first_ts",
    "attempt_packs": "first_ts",
    "zone_events": "ts",
    "line_crossings": "ts",
    "tracks": "first_ts",
    "track_faces": "ts",
    "alerts": "ts",
    "passage_packs": "last_ts",
}
"""The high-volume tables counted per camera-day, and the column that gives a row its time (every one has
``run_id``: the camera is the run's)."""

DAY_S = 86400


@dataclass(frozen=True, slots=True)
class TableStats:
    """One table: rows and bytes (None where the method cannot tell)."""

    table: str
    rows: int
    bytes: int | None
    """Everything the table occupies: heap + TOAST + indexes (+ free-space and visibility maps)."""
    heap_bytes: int | None
    index_bytes: int | None
    toast_bytes: int | None
    rows_estimated: bool = False
    """True: ``rows`` is PostgreSQL's planner estimate (``reltuples``), not a count."""

    @property
    def bytes_per_row(self) -> float | None:
        if self.bytes is None or self.rows <= 0:
            return None
        return self.bytes / self.rows


@dataclass(frozen=True, slots=True)
class CameraDayStats:
    """The rows one camera has on one UTC day, per high-volume table, and their estimated bytes."""

    camera_id: str
    day: date
    rows: dict[str, int]
    bytes_estimate: int | None
    """Sum over the tables of bytes per row × rows: an estimate (None without per-table bytes)."""


@dataclass(frozen=True, slots=True)
class CameraStats:
    camera_id: str
    days: int
    """UTC days with at least one row (partial days count as one)."""
    rows: dict[str, int]
    bytes_estimate: int | None
    bytes_at_retention: int | None = None
    """What the camera holds once its oldest rows reach their retention (``keep_days`` of :func:`storage_stats`):
    per table, rows a day (over the days it has rows) x bytes per row x the days that table's rows are kept. An
    estimate; None without per-table bytes or without the retention."""

    @property
    def mb_per_day(self) -> float | None:
        if self.bytes_estimate is None or self.days == 0:
            return None
        return self.bytes_estimate / self.days / 1e6


@dataclass(frozen=True, slots=True)
class StorageStats:
    dialect: str
    method: str
    """``pg_total_relation_size``, ``dbstat`` or ``page_count``: how bytes were measured."""
    database_bytes: int
    """The whole database: ``pg_database_size`` (catalogs included) or SQLite's ``page_count × page_size``."""
    tables: tuple[TableStats, ...]
    cameras: tuple[CameraStats, ...] = ()
    camera_days: tuple[CameraDayStats, ...] = ()
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    keep_days: dict[str, int] = field(default_factory=dict)
    """Days each high-volume table's rows are kept (the retention the cameras' ``bytes_at_retention`` assume)."""
    pack_after_days: int | None = None
    """Days after which the estimate at retention counts the passages packed (None: never, or not estimated)."""

    def table(self, name: str) -> TableStats | None:
        return next((t for t in self.tables if t.table == name), None)

    @property
    def tables_bytes(self) -> int | None:
        """The Genesis tables together (None when per-table bytes are unknown)."""
        sizes = [t.bytes for t in self.tables]
        return None if any(b is None for b in sizes) else sum(b for b in sizes if b is not None)

    @property
    def mb_per_camera_day(self) -> float | None:
        """The projection: estimated MB per camera-day, averaged over the camera-days stored (partial days
        included, so a short recording underestimates a full day)."""
        estimates = [d.bytes_estimate for d in self.camera_days]
        if not estimates or any(b is None for b in estimates):
            return None
        return sum(b for b in estimates if b is not None) / len(estimates) / 1e6

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json`` and the API)."""
        return {
            "dialect": self.dialect,
            "method": self.method,
            "taken_at": self.taken_at.isoformat(),
            "database_bytes": self.database_bytes,
            "tables_bytes": self.tables_bytes,
            "tables": [
                {"table": t.table, "rows": t.rows, "rows_estimated": t.rows_estimated, "bytes": t.bytes,
                 "heap_bytes": t.heap_bytes, "index_bytes": t.index_bytes, "toast_bytes": t.toast_bytes,
                 "bytes_per_row": None if t.bytes_per_row is None else round(t.bytes_per_row, 1)}
                for t in self.tables
            ],
            "cameras": [
                {"camera_id": c.camera_id, "days": c.days, "rows": dict(c.rows), "bytes_estimate": c.bytes_estimate,
                 "mb_per_day_estimate": None if c.mb_per_day is None else round(c.mb_per_day, 3),
                 "bytes_at_retention_estimate": c.bytes_at_retention}
                for c in self.cameras
            ],
            "camera_days": [
                {"camera_id": d.camera_id, "day": d.day.isoformat(), "rows": dict(d.rows),
                 "bytes_estimate": d.bytes_estimate}
                for d in self.camera_days
            ],
            "mb_per_camera_day_estimate": None if self.mb_per_camera_day is None else round(self.mb_per_camera_day, 3),
            "retention_days": dict(self.keep_days),
            "pack_after_days": self.pack_after_days,
        }


# ---------------------------------------------------------------------------------------------


def genesis_tables(conn: Connection) -> list[str]:
    """The tables of the schema that exist in this database, by name."""
    present = set(inspect(conn).get_table_names())
    return sorted(t for t in metadata.tables if t in present)


def _pg_sizes(conn: Connection, names: Sequence[str]) -> dict[str, tuple[int, int, int, int, float]]:
    """name -> (total, heap, indexes, toast, reltuples) summed over a partitioned table's partitions."""
    rows = conn.execute(text("""
        SELECT parent.relname,
               sum(pg_total_relation_size(part.relid)),
               sum(pg_relation_size(part.relid)),
               sum(pg_indexes_size(part.relid)),
               sum(CASE WHEN c.reltoastrelid = 0 THEN 0 ELSE pg_total_relation_size(c.reltoastrelid) END),
               sum(greatest(c.reltuples, 0)),
               min(c.reltuples)
        FROM pg_class parent
        JOIN pg_namespace n ON n.oid = parent.relnamespace AND n.nspname = current_schema()
        CROSS JOIN LATERAL (
            SELECT parent.oid AS relid WHERE parent.relkind = 'r'
            UNION ALL
            SELECT t.relid FROM pg_partition_tree(parent.oid) t WHERE parent.relkind = 'p' AND t.isleaf
        ) part
        JOIN pg_class c ON c.oid = part.relid
        WHERE parent.relname = ANY(:names) AND parent.relkind IN ('r', 'p')
        GROUP BY parent.relname
    """), {"names": list(names)}).all()
    out: dict[str, tuple[int, int, int, int, float]] = {}
    for name, total, heap, idx, toast, tuples, least in rows:
        # reltuples is -1 for a table never vacuumed or analysed: no estimate.
        out[str(name)] = (int(total or 0), int(heap or 0), int(idx or 0), int(toast or 0),
                          -1.0 if least is None or float(least) < 0 else float(tuples or 0))
    return out


def _sqlite_sizes(conn: Connection, names: Sequence[str]) -> dict[str, tuple[int, int]] | None:
    """name -> (table b-tree bytes, its indexes' bytes) from dbstat, or None when dbstat is not compiled in."""
    try:
        pages: dict[str, int] = dict(conn.execute(text("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")).all())
    except Exception:  # "no such table: dbstat"
        return None
    indexes = text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
    owner: dict[str, str] = dict(conn.execute(indexes).all())
    out = {name: (int(pages.get(name, 0) or 0), 0) for name in names}
    for index, table in owner.items():
        if table in out:
            heap, idx = out[table]
            out[table] = (heap, idx + int(pages.get(index, 0) or 0))
    return out


def _count(conn: Connection, name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one())


def table_stats(conn: Connection, *, exact_rows: bool = True) -> tuple[str, int, list[TableStats]]:
    """(method, database bytes, one entry per Genesis table)."""
    names = genesis_tables(conn)
    out: list[TableStats] = []
    if conn.dialect.name == "postgresql":
        sizes = _pg_sizes(conn, names)
        db_bytes = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
        for name in names:
            total, heap, idx, toast, tuples = sizes.get(name, (0, 0, 0, 0, -1.0))
            estimated = not exact_rows and tuples >= 0
            rows = round(tuples) if estimated else _count(conn, name)
            out.append(TableStats(name, rows, total, heap, idx, toast, estimated))
        return "pg_total_relation_size", db_bytes, out
    page_size = int(conn.execute(text("PRAGMA page_size")).scalar_one())
    page_count = int(conn.execute(text("PRAGMA page_count")).scalar_one())
    db_bytes = page_size * page_count
    stat = _sqlite_sizes(conn, names) if conn.dialect.name == "sqlite" else None
    for name in names:
        rows = _count(conn, name)
        if stat is None:
            out.append(TableStats(name, rows, None, None, None, None))
        else:
            heap, idx = stat[name]
            out.append(TableStats(name, rows, heap + idx, heap, idx, 0))
    return ("dbstat" if stat is not None else "page_count"), db_bytes, out


def _epoch(conn: Connection, column: Any) -> Any:
    """A UTC datetime column as epoch seconds, in SQL."""
    if conn.dialect.name == "postgresql":
        return cast(func.extract("epoch", column), Float)
    return (func.julianday(column) - 2440587.5) * float(DAY_S)


def day_rows(conn: Connection, tables: Sequence[str] | None = None) -> dict[tuple[str, int, str], int]:
    """(camera, UTC day number since the epoch, table) -> rows, for the high-volume tables present."""
    present = set(genesis_tables(conn))
    out: dict[tuple[str, int, str], int] = {}
    for name in tables if tables is not None else DAY_TABLES:
        if name not in present:
            continue
        t = metadata.tables[name]
        ts = t.c[DAY_TABLES[name]]
        absolute = case((ts >= EPOCH_MIN, ts), else_=_epoch(conn, Run.started_at) + ts)
        # floor() for PostgreSQL; SQLite may lack its math functions, and its times are positive (truncation).
        day = func.floor(absolute / DAY_S) if conn.dialect.name == "postgresql" else absolute / DAY_S
        inner = (
            select(Run.camera_id.label("camera"), cast(day, Integer).label("day"))
            .select_from(t.join(Run.__table__, Run.id == t.c.run_id))
            .subquery()
        )
        query = select(inner.c.camera, inner.c.day, func.count()).group_by(inner.c.camera, inner.c.day)
        for camera, day, n in conn.execute(query):
            out[(str(camera), int(day), name)] = int(n)
    return out


PASSAGE_TABLES = ("tracks", "zone_events", "line_crossings")
"""The tables whose rows the storage upkeep packs (``passage_packs``) once ``retention.pack_after_days`` old."""
PACK_SAMPLE = 5000
"""Segments of the newest run packed in memory to estimate a packed segment's bytes where nothing is packed yet."""


def _packed_by_camera(conn: Connection) -> dict[str, int]:
    """Camera -> the segments its packs hold."""
    if "passage_packs" not in genesis_tables(conn):
        return {}
    query = (select(Run.camera_id, func.sum(PassagePack.segments)).join(Run, Run.id == PassagePack.run_id)
             .group_by(Run.camera_id))
    return {str(c): int(n or 0) for c, n in conn.execute(query)}


def _sampled_pack_bytes(conn: Connection) -> float | None:
    """Bytes a segment takes packed (its zone events and crossings with it), from packing up to
    :data:`PACK_SAMPLE` segments of the newest run in memory; None without segments."""
    run_id = conn.execute(select(Track.run_id).join(Run, Run.id == Track.run_id)
                          .order_by(Run.started_at.desc()).limit(1)).scalar_one_or_none()
    if run_id is None:
        return None
    newest = (select(Track.track_id).where(Track.run_id == run_id).order_by(Track.track_id.desc())
              .limit(PACK_SAMPLE).subquery())
    low = int(conn.execute(select(func.min(newest.c.track_id))).scalar_one())
    segs, events, crossings = passage_rows(conn, run_id, low)
    return len(packs.encode(packs.columns_of(segs, events, crossings))) / len(segs)


def _named_share(conn: Connection) -> float:
    """Of the newest :data:`PACK_SAMPLE` segments of the newest run (rows and packed), the share that stays rows
    past ``pack_after_days``: those of named tracks, as long as the events are kept."""
    run_id = conn.execute(select(Run.id).where(or_(exists().where(Track.run_id == Run.id),
                                                   exists().where(PassagePack.run_id == Run.id)))
                          .order_by(Run.started_at.desc()).limit(1)).scalar_one_or_none()
    if run_id is None:
        return 0.0
    newest = {(int(t), int(s)): name is not None for t, s, name in conn.execute(
        select(Track.track_id, Track.segment, Track.identity_name).where(Track.run_id == run_id)
        .order_by(Track.track_id.desc(), Track.segment.desc()).limit(PACK_SAMPLE))}
    held = 0
    for (data,) in conn.execute(select(PassagePack.data).where(PassagePack.run_id == run_id)
                                .order_by(PassagePack.last_track.desc())):
        if held >= PACK_SAMPLE:
            break
        cols = packs.decode(bytes(data)).segments.ints  # packed segments carry no name
        keys = list(zip(cols["track_id"].tolist(), cols["segment"].tolist(), strict=True))
        newest.update(dict.fromkeys(keys, False))
        held += len(keys)
    sample = sorted(newest, reverse=True)[:PACK_SAMPLE]
    named_tracks = {t for t, s in sample if newest[(t, s)]}
    return sum(1 for t, _ in sample if t in named_tracks) / len(sample)


def storage_stats(engine: Engine, *, per_day: bool = True, exact_rows: bool = True,
                  keep_days: Mapping[str, int] | None = None, pack_after_days: int | None = None) -> StorageStats:
    """Rows and bytes per table and, with ``per_day``, per camera and camera-day (one read transaction); with
    ``keep_days`` (days each table of :data:`DAY_TABLES` is kept: `genesis.services.rollups.kept_days`) what each
    camera holds at that retention, its passages (:data:`PASSAGE_TABLES`) as rows for ``pack_after_days`` (when
    given: ``retention.packed_after_days()``) and packed for the rest of their days.

    ``per_day`` reads every row of the high-volume tables (a GROUP BY over them): seconds on a large database.
    """
    with read_connection(engine) as conn:
        method, db_bytes, tables = table_stats(conn, exact_rows=exact_rows)
        counts = day_rows(conn) if per_day else {}
        packed = _packed_by_camera(conn) if per_day else {}
        pack_bytes: float | None = None
        named_share = 0.0
        if per_day and keep_days is not None and pack_after_days is not None:
            t = next((t for t in tables if t.table == "passage_packs"), None)
            held = sum(packed.values())
            pack_bytes = t.bytes / held if t is not None and t.bytes and held else _sampled_pack_bytes(conn)
            named_share = _named_share(conn)
    per_row = {t.table: t.bytes_per_row for t in tables}
    unknown = any(t.bytes is None for t in tables)

    def at_retention(total: dict[str, int], days: int, camera: str) -> int:
        """Rows a day x bytes a row x days kept, per table; with packing, the passages (the segments, stored or
        packed, each with its share of zone events and crossings) as rows for ``pack_after_days`` and packed
        (``pack_bytes`` a segment) for the rest, except those of named tracks (rows while kept), at their share of
        the newest run's segments (:func:`_named_share`)."""
        keep = keep_days or {}
        passages = pack_after_days is not None and pack_bytes is not None
        out = sum(n / days * (per_row.get(name) or 0.0) * keep.get(name, 0) for name, n in total.items()
                  if not passages or name not in (*PASSAGE_TABLES, "passage_packs"))
        if pack_after_days is not None and pack_bytes is not None:
            hot = total.get("tracks", 0)
            segments = (hot + packed.get(camera, 0)) / days
            per_segment = sum((total.get(name, 0) / hot if hot else 0.0) * (per_row.get(name) or 0.0)
                              for name in PASSAGE_TABLES)
            kept = keep.get("tracks", 0)
            for rows_days, share in ((pack_after_days, 1.0 - named_share), (kept, named_share)):
                out += segments * share * (per_segment * min(kept, rows_days) + pack_bytes * max(0, kept - rows_days))
        return round(out)

    def estimate(rows: dict[str, int]) -> int | None:
        if unknown:
            return None
        return round(sum(n * (per_row.get(name) or 0.0) for name, n in rows.items()))

    days: dict[tuple[str, int], dict[str, int]] = {}
    for (camera, day, name), n in counts.items():
        days.setdefault((camera, day), {})[name] = n
    epoch = date(1970, 1, 1)
    camera_days = tuple(
        CameraDayStats(camera, epoch + timedelta(days=day), dict(sorted(rows.items())), estimate(rows))
        for (camera, day), rows in sorted(days.items())
    )
    cams: dict[str, list[CameraDayStats]] = {}
    for d in camera_days:
        cams.setdefault(d.camera_id, []).append(d)
    cameras = []
    for camera, ds in sorted(cams.items()):
        total: dict[str, int] = {}
        for d in ds:
            for name, n in d.rows.items():
                total[name] = total.get(name, 0) + n
        kept = None
        if keep_days is not None and not unknown:
            kept = at_retention(total, len(ds), camera)
        cameras.append(CameraStats(camera, len(ds), dict(sorted(total.items())), estimate(total), kept))
    return StorageStats(engine.dialect.name, method, db_bytes, tuple(tables), tuple(cameras), camera_days,
                        keep_days=dict(keep_days or {}), pack_after_days=pack_after_days)


# ---------------------------------------------------------------------------------------------
# benchmark helpers (python -m genesis.bench storage): measuring after VACUUM, and copying a run's rows


RUN_TABLES = ("point_batches", "heatmap_cells", "attempt_packs", "zone_events", "line_crossings", "tracks",
              "track_faces", "alerts", "occupancy_samples")
"""Every table whose rows belong to a run (``run_id``), copied by :func:`copy_run_rows`."""
_SEQ_COLUMNS = frozenset({"seq", "first_seq", "last_seq"})
_TS_COLUMNS = frozenset({"ts", "first_ts", "last_ts", "named_ts"})
_TIME_COLUMN = {**DAY_TABLES}
_KEY_PREFIX = 8
"""An alert's copy keeps the first 8 characters of its key, then the copy's number (6 digits) and its shifted seq
(at most 32 characters in all)."""


def vacuum_analyze(engine: Engine, *, full: Sequence[str] = ()) -> None:
    """``VACUUM ANALYZE`` (PostgreSQL, outside a transaction) or ``VACUUM`` + ``ANALYZE`` (SQLite): dead rows
    and free pages out of the way before sizes are read. ``full``: tables (of :data:`RUN_TABLES`) that also get
    ``VACUUM FULL`` on PostgreSQL, which gives back the pages their deleted rows left free (SQLite's VACUUM always
    does, for every table)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
            for table in full:
                if table not in RUN_TABLES:
                    raise ValueError(f"not a run table: {table!r}")
                conn.exec_driver_sql(f'VACUUM FULL ANALYZE "{table}"')
        return
    raw = engine.raw_connection()  # SQLite: straight to the driver (make_engine's BEGIN hook stays out of it)
    try:
        raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
        raw.driver_connection.execute("ANALYZE")  # type: ignore[union-attr]
    finally:
        raw.close()


@dataclass(frozen=True, slots=True)
class RunCopy:
    """How :func:`copy_run_rows` shifts what it copies."""

    ts_shift: float
    seq_shift: int = 0
    track_shift: int = 0
    window_shift: int = 0
    ts_below: float | None = None
    """Copy only the rows whose time is before this (before the shift)."""


def run_extent(engine: Engine, run_id: str) -> tuple[int, int]:
    """(largest track id, largest occupancy window) of a run: the shifts that keep a copy's keys apart."""
    points, tracks, samples = (metadata.tables[n] for n in ("point_batches", "tracks", "occupancy_samples"))
    with read_connection(engine) as conn:
        track = int(conn.execute(select(func.coalesce(func.max(tracks.c.track_id), 0))
                                 .where(tracks.c.run_id == run_id)).scalar_one())
        for first, blob in conn.execute(select(points.c.first_seq, points.c.points).where(points.c.run_id == run_id)):
            track = max(track, *(tid for _, tid in point_keys(int(first), bytes(blob))))
        window = int(conn.execute(select(func.coalesce(func.max(samples.c.window_index), 0))
                                  .where(samples.c.run_id == run_id)).scalar_one())
    return track, window


def copy_run_rows(engine: Engine, run_id: str, to_run: str, shift: RunCopy, copy_no: int) -> int:
    """Copy the rows of ``run_id`` into ``to_run`` (the same run, or a new one: its ``runs`` row is copied first),
    with times, frames, track ids and occupancy windows shifted; one INSERT ... SELECT per table, in SQL.
    ``copy_no`` makes the copied alerts' keys unique. Returns the rows inserted."""
    total = 0
    suffix = f"{copy_no:06d}"
    with write_connection(engine) as conn:
        if to_run != run_id:  # the run's row first, its times shifted too
            row = dict(conn.execute(select(Run.__table__).where(Run.id == run_id)).one()._mapping)
            late = timedelta(seconds=shift.ts_shift)
            row.update(id=to_run, started_at=row["started_at"] + late,
                       finished_at=None if row["finished_at"] is None else row["finished_at"] + late)
            conn.execute(insert(Run), [row])
        for name in RUN_TABLES:
            t = metadata.tables[name]
            if name == "heatmap_cells":
                total += _copy_heat(conn, run_id, to_run, shift)
                continue
            if name == "point_batches":
                total += _copy_points(conn, run_id, to_run, shift)
                continue
            if name == "attempt_packs":
                total += _copy_attempts(conn, run_id, to_run, shift)
                continue
            cols: list[str] = []
            exprs: list[Any] = []
            for c in t.columns:
                if c.name == "id":  # alerts: autoincrement
                    continue
                cols.append(c.name)
                if c.name == "run_id":
                    e: Any = literal(to_run)
                elif c.name in _SEQ_COLUMNS:
                    e = c + shift.seq_shift
                elif c.name == "track_id":
                    e = c + shift.track_shift
                elif c.name in _TS_COLUMNS:
                    e = c + shift.ts_shift
                elif c.name == "window_index":
                    e = c + shift.window_shift
                elif c.name == "key":  # alerts: unique over the database; (copy, shifted seq) is unique
                    e = (func.substr(c, 1, _KEY_PREFIX, type_=String) + literal(suffix)
                         + cast(t.c.seq + shift.seq_shift, String))
                else:
                    e = c
                exprs.append(e.label(c.name))
            query = select(*exprs).where(t.c.run_id == run_id)
            if shift.ts_below is not None and name in _TIME_COLUMN:
                query = query.where(t.c[_TIME_COLUMN[name]] < shift.ts_below)
            if "day" in t.c:  # PostgreSQL: the day partitions the copies fall in
                day = next(x for x in exprs if x.name == "day")
                create_days(conn, [int(d) for (d,) in conn.execute(
                    select(day.element).where(t.c.run_id == run_id).distinct())])
            total += int(conn.execute(insert(t).from_select(cols, query)).rowcount or 0)
    return total


def _copy_points(conn: Connection, run_id: str, to_run: str, shift: RunCopy) -> int:
    """:func:`copy_run_rows` for ``point_batches``: each packed row unpacked, its points' frames, track ids and
    times shifted (only those before ``ts_below``), packed again per UTC day of the shifted time; the rows
    inserted."""
    t = metadata.tables["point_batches"]
    start = conn.execute(select(Run.started_at).where(Run.id == run_id)).scalar_one().timestamp()
    rows = []
    for first, first_track, blob in conn.execute(select(t.c.first_seq, t.c.first_track, t.c.points)
                                                 .where(t.c.run_id == run_id)):
        by_day: dict[int, list[StoredPoint]] = {}
        for p in stored_points(int(first), bytes(blob)):
            if shift.ts_below is not None and p.ts >= shift.ts_below:
                continue
            moved = StoredPoint(p.track_id + shift.track_shift, p.seq + shift.seq_shift, p.ts + shift.ts_shift,
                                p.box, p.score, p.frames)
            d = int(((p.ts if p.ts >= EPOCH_MIN else p.ts + start) + shift.ts_shift) // DAY_S)
            by_day.setdefault(d, []).append(moved)
        for d, points in sorted(by_day.items()):
            key = (int(first) + shift.seq_shift, int(first_track) + shift.track_shift)
            rows.append(row_of(to_run, d, points, key if (points[0].seq, points[0].track_id) == key else None))
    if rows:
        create_days(conn, {r["day"] for r in rows})
        conn.execute(dialect_insert(conn, t).on_conflict_do_nothing(
            index_elements=list(t.primary_key.columns)), rows)
    return len(rows)


def _copy_attempts(conn: Connection, run_id: str, to_run: str, shift: RunCopy) -> int:
    """:func:`copy_run_rows` for ``attempt_packs``: each row unpacked, its attempts' frames, track ids and times
    shifted (only those before ``ts_below``), packed again under the shifted key; the rows inserted."""
    t = AttemptPack
    rows = []
    for first, first_track, names, data in conn.execute(select(t.first_seq, t.first_track, t.names, t.data)
                                                        .where(t.run_id == run_id)):
        moved = [replace(a, track_id=a.track_id + shift.track_shift, seq=a.seq + shift.seq_shift,
                         ts=a.ts + shift.ts_shift)
                 for a in stored_attempts(int(first), names, bytes(data))
                 if shift.ts_below is None or a.ts < shift.ts_below]
        if moved:
            key = (int(first) + shift.seq_shift, int(first_track) + shift.track_shift)
            rows.append(attempt_pack(to_run, moved, key if (moved[0].seq, moved[0].track_id) == key else None))
    if rows:
        conn.execute(dialect_insert(conn, t).on_conflict_do_nothing(
            index_elements=[t.run_id, t.first_seq, t.first_track]), rows)
    return len(rows)


def _copy_heat(conn: Connection, run_id: str, to_run: str, shift: RunCopy) -> int:
    """:func:`copy_run_rows` for ``heatmap_cells``: the hour of each grid moved by the time shift (whole
    hours, in Python: the two databases share no interval arithmetic), its first frame by the frame shift."""
    t = metadata.tables["heatmap_cells"]
    started = conn.execute(select(Run.started_at).where(Run.id == run_id)).scalar_one()
    rows = []
    for r in conn.execute(select(t).where(t.c.run_id == run_id)):
        row = dict(r._mapping)
        hour = row["hour"].timestamp()
        if shift.ts_below is not None and hour >= started.timestamp() + shift.ts_below:
            continue
        moved = (hour + shift.ts_shift) // 3600 * 3600
        row.update(run_id=to_run, first_seq=row["first_seq"] + shift.seq_shift if row["first_seq"] >= 0
                   else row["first_seq"] - shift.seq_shift - 1,
                   last_seq=row["last_seq"] + shift.seq_shift if row["last_seq"] is not None else None,
                   hour=datetime.fromtimestamp(moved, UTC), day=int(moved // DAY_S))
        rows.append(row)
    if rows:
        create_days(conn, {r["day"] for r in rows})
        conn.execute(dialect_insert(conn, t).on_conflict_do_nothing(
            index_elements=list(t.primary_key.columns)), rows)
    return len(rows)


def set_run_span(engine: Engine, run_id: str, started: float, finished: float) -> None:
    """Set a run's start and end (epoch seconds): a benchmark's run written in seconds stands for hours of camera."""
    with write_connection(engine) as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(
            started_at=datetime.fromtimestamp(started, UTC), finished_at=datetime.fromtimestamp(finished, UTC)))


def label_tracks(engine: Engine, run_ids: Sequence[str], name: str, every: int, offset: int = 0) -> int:
    """Give the tracks of the runs whose id is ``offset`` modulo ``every`` the identity ``name`` (created if
    missing): the identities a benchmark's report and timeline queries read. Returns the track segments named."""
    with write_connection(engine) as conn:
        conn.execute(dialect_insert(conn, Identity).on_conflict_do_nothing(index_elements=[Identity.name]),
                     [{"name": name, "created_at": utcnow()}])
        ident = conn.execute(select(Identity.id).where(Identity.name == name)).scalar_one()
        done = conn.execute(update(Track).where(Track.run_id.in_(list(run_ids)), Track.track_id % every == offset)
                            .values(identity_id=ident, identity_name=name))
        return int(done.rowcount or 0)


__all__ = [
    "DAY_TABLES",
    "RUN_TABLES",
    "CameraDayStats",
    "CameraStats",
    "RunCopy",
    "StorageStats",
    "TableStats",
    "copy_run_rows",
    "day_rows",
    "genesis_tables",
    "label_tracks",
    "run_extent",
    "set_run_span",
    "storage_stats",
    "table_stats",
    "vacuum_analyze",
]
