"""Queries of the analytics jobs: raw rows of a time window, rollup replacement, retention
purges and camera snapshots (kept out of `Repository`, which serves the pipeline).

Times. A row's ``ts`` is the position in the video for a file source and the epoch time for a
live source (see `genesis.adapters.video`). Its absolute time is therefore ``ts`` itself when
it is an epoch time (``ts >= EPOCH_MIN``) and ``run.started_at + ts`` otherwise.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from genesis.adapters.db import attempts, packs
from genesis.adapters.db.partitions import drop_before
from genesis.adapters.db.points import row_of, stored_points
from genesis.adapters.db.repository import (
    DAY_S,
    EPOCH_MIN,
    HOUR_S,
    Repository,
    dialect_insert,
    lock_passages,
    passage_rows,
    read_connection,
    segment_spans,
    span_holding,
    write_connection,
)
from genesis.adapters.db.tables import (
    HeatmapRow,
    LineCrossingRow,
    PassagePack,
    PointBatchRow,
    Run,
    Track,
    ZoneEventRow,
)
from genesis.adapters.db.tables_alerts import AlertRow, OccupancySampleRow
from genesis.adapters.db.tables_analytics import (
    CameraSnapshot,
    RollupCamera,
    RollupIdentity,
    RollupIdentityZone,
    RollupLine,
    RollupZone,
)
from genesis.domain.heat import add_cells, encode_cells, grid_shape

ROLLUP_TABLES: dict[str, Any] = {
    "camera": RollupCamera,
    "zone": RollupZone,
    "line": RollupLine,
    "identity": RollupIdentity,
    "identity_zone": RollupIdentityZone,
}


def epoch(dt: datetime) -> float:
    return dt.timestamp()


def from_epoch(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@dataclass(frozen=True, slots=True)
class RunSpan:
    run_id: str
    camera_id: str
    start: float
    """``started_at`` as epoch seconds (the origin of a file run's ``ts``)."""
    end: float | None
    """Latest absolute time the run can have rows at; None while it runs."""
    status: str
    width: int
    height: int

    def absolute(self, ts: float) -> float:
        return ts if ts >= EPOCH_MIN else self.start + ts


@dataclass(slots=True)
class WindowRows:
    """The raw rows a rollup of ``[since, until)`` needs (times absolute, epoch seconds)."""

    runs: dict[str, RunSpan] = field(default_factory=dict)
    sightings: list[tuple[str, int, float, int, str | None]] = field(default_factory=list)
    """(run, track, bucket start, count, identity) per bucket of the requested length and track segment."""
    zone_events: list[tuple[str, str, int, int, str, float]] = field(default_factory=list)
    """(run, zone, track, seq, kind, t) of every event before ``until`` (earlier ones open visits)."""
    crossings: list[tuple[str, str, int, str, float, int]] = field(default_factory=list)
    """(run, line, track, direction, t, seq) in the window."""
    segments: dict[tuple[str, int], list[tuple[int, float, str | None]]] = field(default_factory=dict)
    """(run, track) -> its identity segments in order: (first seq, first time, identity or None)."""

    def identity_at(self, run_id: str, track_id: int, seq: int) -> str | None:
        """The identity of the track segment that holds ``seq`` (None: unknown or no such track)."""
        name = None
        for first_seq, _, ident in self.segments.get((run_id, track_id), []):
            if first_seq > seq:
                break
            name = ident
        return name

    def identity_pieces(self, run_id: str, track_id: int, a: float, b: float) -> list[tuple[str, float, float]]:
        """The named parts (identity, start, end) of the track's stay from ``a`` to ``b``."""
        segs = self.segments.get((run_id, track_id), [])
        out = []
        for i, (_, first, ident) in enumerate(segs):
            start = first if i > 0 else float("-inf")
            end = segs[i + 1][1] if i + 1 < len(segs) else float("inf")
            lo, hi = max(a, start), min(b, end)
            if ident is not None and (hi > lo or (a == b and start <= a < end)):
                out.append((ident, lo, max(lo, hi)))
        return out


@dataclass(frozen=True, slots=True)
class HeatGrid:
    """Foot-point counts of a camera on a grid of ``cell_px`` squares over ``width`` x ``height``."""

    grid: np.ndarray
    width: int
    height: int
    cell_px: int
    points: int


def sum_grids(rows: Iterable[Sequence[Any]]) -> HeatGrid | None:
    """Sum stored grids given as (width, height, cell_px, points, cells), newest first: the grids of the
    first row's geometry are summed (a camera whose size or cell changed keeps its latest)."""
    out: HeatGrid | None = None
    for w, h, c, n, cells in rows:
        if out is None:
            out = HeatGrid(np.zeros(grid_shape(int(w), int(h), int(c)), dtype=np.int64), int(w), int(h), int(c), 0)
        if (int(w), int(h), int(c)) != (out.width, out.height, out.cell_px):
            continue
        add_cells(out.grid, bytes(cells))
        out = HeatGrid(out.grid, out.width, out.height, out.cell_px, out.points + int(n))
    return out


def _abs_ts(column: Any, span: RunSpan) -> ColumnElement[float]:
    expr: ColumnElement[float] = case((column >= EPOCH_MIN, column), else_=column + span.start)
    return expr


def _point_sightings(conn: Connection, span: RunSpan, since: float, until: float, bucket_s: float
                     ) -> list[tuple[str, int, float, int, str | None]]:
    """(run, track, bucket start, sightings, name of the point's segment) of a run's trajectory points whose
    absolute time lies in [since, until): each point counted for the ``frames`` sightings it stands for, in its
    bucket, per track segment (a point outside every segment: no name)."""
    P = PointBatchRow  # noqa: N806
    packed = conn.execute(select(P.first_seq, P.points).where(
        P.run_id == span.run_id, _abs_ts(P.last_ts, span) >= since, _abs_ts(P.first_ts, span) < until)).all()
    if not packed:
        return []
    points = []
    for first_seq, blob in packed:
        for p in stored_points(int(first_seq), bytes(blob)):
            t = p.ts if p.ts >= EPOCH_MIN else p.ts + span.start
            if since <= t < until:
                points.append((p, t))
    segments = segment_spans(conn, span.run_id, packed_tracks={p.track_id for p, _ in points})
    sums: dict[tuple[int, int | None, str | None, float], int] = {}
    for p, t in points:
        seg = span_holding(segments, p.track_id, p.seq)
        key = (p.track_id, None if seg is None else seg[0], None if seg is None else seg[3],
               float(math.floor(t / bucket_s)))
        sums[key] = sums.get(key, 0) + p.frames
    return [(span.run_id, tid, b * bucket_s, n, name)
            for (tid, _, name, b), n in sorted(sums.items(), key=lambda kv: (
                kv[0][0], -1 if kv[0][1] is None else kv[0][1], kv[0][3]))]


def _purge_points(conn: Connection, span: RunSpan, cutoff: float) -> int:
    """Retention of a run's packed trajectory points: the rows whose every point is older than ``cutoff``
    (absolute time) deleted, those with older and newer points rewritten with the newer ones (same key); the
    points removed."""
    P = PointBatchRow  # noqa: N806
    old = P.run_id == span.run_id, _abs_ts(P.last_ts, span) < cutoff
    n = int(conn.execute(select(func.coalesce(func.sum(P.n), 0)).where(*old)).scalar_one())
    conn.execute(delete(P).where(*old))
    for first_seq, first_track, day, count, blob in conn.execute(
            select(P.first_seq, P.first_track, P.day, P.n, P.points).where(
                P.run_id == span.run_id, _abs_ts(P.first_ts, span) < cutoff)).all():
        kept = stored_points(int(first_seq), bytes(blob),
                             lambda _t, _q, ts: (ts if ts >= EPOCH_MIN else ts + span.start) >= cutoff)
        where = (P.run_id == span.run_id, P.first_seq == first_seq, P.first_track == first_track, P.day == day)
        n += int(count) - len(kept)
        if not kept:
            conn.execute(delete(P).where(*where))
            continue
        row = row_of(span.run_id, int(day), kept, (int(first_seq), int(first_track)))
        conn.execute(update(P).where(*where).values(
            {k: v for k, v in row.items() if k not in ("run_id", "first_seq", "first_track", "day")}))
    return n


def _add_packed(conn: Connection, span: RunSpan, since: float, until: float, out: WindowRows) -> None:
    """The run's packed rows that a rollup of ``[since, until)`` reads as it reads the rows in tables: the zone
    events before ``until`` and the crossings in the window of the packs that reach into the window (or, while
    the run goes on, that hold a visit never closed: it stays open up to now), with their tracks' segments."""
    P = PassagePack  # noqa: N806
    query = select(P.data).where(P.run_id == span.run_id, P.first_ts < until)
    reach = P.last_ts >= since
    query = query.where(reach if span.end is not None else or_(reach, P.open_visits > 0))
    for (data,) in conn.execute(query.order_by(P.first_track, P.day)):
        p = packs.decode(bytes(data))
        for e in packs.zone_events(p):
            t = span.absolute(e.ts)
            if t < until:
                out.zone_events.append((span.run_id, e.zone, e.track_id, e.seq, e.kind.value, t))
        for c in packs.crossings(p):
            t = span.absolute(c.ts)
            if since <= t < until:
                out.crossings.append((span.run_id, c.line, c.track_id, c.direction.value, t, c.seq))
        for seg in packs.track_records(p):  # in (track, segment) order, and a track is packed whole
            out.segments.setdefault((span.run_id, seg.track_id), []).append(
                (seg.first_seq, span.absolute(seg.first_ts), seg.identity))


def _packable(conn: Connection, span: RunSpan, before: float) -> dict[int, list[int]]:
    """Day (UTC, of the track's last sighting) -> the tracks of the run to pack, in order: the tracks whose every
    segment ended before ``before`` (absolute time) and carries no name. A track that keeps a face is packed too:
    naming it later (review, clustering) takes it out of its pack first (``IdentityRows.set_segment_identity``)."""
    last = func.max(_abs_ts(Track.last_ts, span))
    named = func.count(Track.identity_name) + func.count(Track.identity_id)
    rows = conn.execute(select(Track.track_id, last).where(Track.run_id == span.run_id)
                        .group_by(Track.track_id).having(last < before, named == 0).order_by(Track.track_id))
    out: dict[int, list[int]] = {}
    for tid, t in rows:
        out.setdefault(int(float(t) // DAY_S), []).append(int(tid))
    return out


def _in_range(table: Any, run_id: str, tracks: Sequence[int]) -> Any:
    return and_(table.run_id == run_id, table.track_id >= tracks[0], table.track_id <= tracks[-1])


def _pack_part(conn: Connection, span: RunSpan, day: int, tracks: Sequence[int]) -> tuple[int, int, int] | None:
    """Pack the rows of ``tracks`` (sorted; of one day) into one ``passage_packs`` row and delete them, on
    ``conn`` (one transaction). A track named since it was chosen stays. Returns (segments, events, crossings)."""
    chosen = set(tracks)
    lock_passages(conn, span.run_id)  # no segment named between this read and the delete below
    segs, events, crossings = passage_rows(conn, span.run_id, tracks[0], tracks[-1])
    chosen -= {t.track_id for t in segs if t.identity is not None}
    segs = [t for t in segs if t.track_id in chosen]
    if not segs:
        return None
    events = [e for e in events if e.track_id in chosen]
    crossings = [x for x in crossings if x.track_id in chosen]
    ids = sorted({t.track_id for t in segs})
    written = conn.execute(dialect_insert(conn, PassagePack).values(
        run_id=span.run_id, day=day, first_track=ids[0], **packs.pack_row(segs, events, crossings, span.absolute)
    ).on_conflict_do_nothing())
    if not written.rowcount:  # another upkeep packed these tracks first: its pack stands, nothing is deleted
        raise _PackedElsewhereError
    for table in (ZoneEventRow, LineCrossingRow, Track):
        _delete_tracks(conn, table, span.run_id, ids)
    return len(segs), len(events), len(crossings)


def _delete_tracks(conn: Connection, table: Any, run_id: str, ids: Sequence[int]) -> None:
    """Delete the run's rows of ``table`` of the tracks ``ids``, in as few statements as the database allows:
    zone events and crossings have no index by track, so each statement reads the run's rows once (PostgreSQL:
    one statement with an array; SQLite: as many ids a statement as it binds)."""
    if conn.dialect.name == "postgresql":
        conn.execute(delete(table).where(table.run_id == run_id, table.track_id == any_(
            bindparam("ids", list(ids), type_=ARRAY(BigInteger)))))
        return
    for at in range(0, len(ids), _SQLITE_IDS):
        conn.execute(delete(table).where(table.run_id == run_id, table.track_id.in_(ids[at:at + _SQLITE_IDS])))


class _PackedElsewhereError(Exception):
    """A pack of the same key was written by another upkeep meanwhile: this transaction is rolled back."""


_SQLITE_IDS = 30_000 if sqlite3.sqlite_version_info >= (3, 32) else 900
"""Track ids in one DELETE of a packing on SQLite (which binds at most 32,766 values a statement since 3.32,
999 before)."""


def time_now() -> float:
    return datetime.now(UTC).timestamp()


class AnalyticsStore:
    """Analytics queries over a `Repository`'s engine (PostgreSQL or SQLite)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.engine = repo.engine

    def _write(self) -> AbstractContextManager[Connection]:
        return write_connection(self.engine)

    def _read(self) -> AbstractContextManager[Connection]:
        return read_connection(self.engine)

    # -- runs -------------------------------------------------------------------------------

    def run_spans(self, conn: Connection, until: float | None, camera_id: str | None = None,
                  since: float | None = None) -> list[RunSpan]:
        """Runs that may hold rows in ``[since, until)`` (started before ``until``, not over before ``since``)."""
        query = select(Run.id, Run.camera_id, Run.started_at, Run.finished_at, Run.status, Run.meta)
        if until is not None:
            query = query.where(Run.started_at < from_epoch(until))
        if camera_id is not None:
            query = query.where(Run.camera_id == camera_id)
        spans = []
        for run_id, cam, started, finished, status, raw_meta in conn.execute(query.order_by(Run.started_at, Run.id)):
            meta = raw_meta or {}
            start = epoch(started)
            end: float | None = None
            if finished is not None:
                last = float(meta.get("last_ts", 0.0) or 0.0)
                end = max(epoch(finished), last if last >= EPOCH_MIN else start + last)
            if since is not None and end is not None and end < since:
                continue
            spans.append(RunSpan(run_id, cam, start, end, status, int(meta.get("width", 0) or 0),
                                 int(meta.get("height", 0) or 0)))
        return spans

    # -- packing ---------------------------------------------------------------------------------

    def pack_passages(self, before: float, *, part_tracks: int = packs.PACK_TRACKS) -> dict[str, int]:
        """Pack the passages that ended before ``before`` (absolute time) and carry no name
        (`genesis.adapters.db.packs`): per run and UTC day of their tracks' last sighting, at most
        ``part_tracks`` tracks a pack, each pack written and its rows deleted in a transaction of its own (a
        process killed in between leaves whole packs and whole rows, never both or neither). Returns the packs
        written and the rows they took."""
        counts = {"packs": 0, "tracks": 0, "zone_events": 0, "line_crossings": 0}
        with self._read() as conn:
            spans = [s for s in self.run_spans(conn, before) if s.start < before]
        for span in spans:
            with self._read() as conn:
                days = _packable(conn, span, before)
            for day, tracks in sorted(days.items()):
                for at in range(0, len(tracks), part_tracks):
                    try:
                        with self._write() as conn:
                            done = _pack_part(conn, span, day, tracks[at:at + part_tracks])
                    except _PackedElsewhereError:
                        continue
                    if done is not None:
                        counts["packs"] += 1
                        counts["tracks"] += done[0]
                        counts["zone_events"] += done[1]
                        counts["line_crossings"] += done[2]
        return counts

    # -- rollup input -------------------------------------------------------------------------

    def window_rows(self, since: float, until: float, bucket_s: float, camera_id: str | None = None) -> WindowRows:
        out = WindowRows()
        with self._read() as conn:
            spans = self.run_spans(conn, until, camera_id, since)
            out.runs = {s.run_id: s for s in spans}
            for span in spans:
                # Each trajectory point stands for ``frames`` sightings (itself and those since the
                # track's previous point): counted in the point's bucket.
                # Packed: the rows that overlap [since, until) are chosen in SQL, their points summed here per
                # (track, segment, bucket).
                out.sightings += _point_sightings(conn, span, since, until, bucket_s)
                t = _abs_ts(ZoneEventRow.ts, span)
                rows: Any = conn.execute(
                    select(ZoneEventRow.zone, ZoneEventRow.track_id, ZoneEventRow.seq, ZoneEventRow.kind, t)
                    .where(ZoneEventRow.run_id == span.run_id, t < until)
                )
                out.zone_events += [(span.run_id, z, int(tid), int(seq), k, float(ts)) for z, tid, seq, k, ts in rows]
                t = _abs_ts(LineCrossingRow.ts, span)
                rows = conn.execute(
                    select(LineCrossingRow.line, LineCrossingRow.track_id, LineCrossingRow.direction, t,
                           LineCrossingRow.seq)
                    .where(LineCrossingRow.run_id == span.run_id, t >= since, t < until)
                )
                out.crossings += [(span.run_id, ln, int(tid), d, float(ts), int(seq)) for ln, tid, d, ts, seq in rows]
                t = _abs_ts(Track.first_ts, span)
                rows = conn.execute(
                    select(Track.track_id, Track.first_seq, t, Track.identity_name)
                    .where(Track.run_id == span.run_id)
                    .order_by(Track.track_id, Track.segment)
                )
                for tid, first_seq, first_t, name in rows:
                    out.segments.setdefault((span.run_id, int(tid)), []).append(
                        (int(first_seq), float(first_t), name))
                _add_packed(conn, span, since, until, out)
        return out

    def heat_grid(self, camera_id: str, since: float | None, until: float | None,
                  run_ids: Sequence[str] | None = None) -> HeatGrid | None:
        """The camera's foot-point counts in ``[since, until)``, summed from its hourly grids
        (``heatmap_cells``); ``run_ids`` limits it to those runs. Hours are whole: an hour that starts
        before ``since`` or reaches past ``until`` counts only when more than half of it is inside (a
        bound is rounded to the nearest hour). None when nothing was stored."""
        q = select(HeatmapRow.width, HeatmapRow.height, HeatmapRow.cell_px, HeatmapRow.points,
                   HeatmapRow.cells).where(HeatmapRow.camera_id == camera_id)
        if since is not None:
            q = q.where(HeatmapRow.hour >= from_epoch(round(since / HOUR_S) * HOUR_S))
        if until is not None:
            q = q.where(HeatmapRow.hour < from_epoch(round(until / HOUR_S) * HOUR_S))
        if run_ids is not None:
            q = q.where(HeatmapRow.run_id.in_(list(run_ids)))
        with self._read() as conn:
            rows = list(conn.execute(q.order_by(HeatmapRow.hour.desc())))
        return sum_grids(rows)

    def heat_of_runs(self, camera_id: str, run_ids: Sequence[str], ts_from: float | None,
                     ts_to: float | None) -> HeatGrid | None:
        """The foot-point counts of these runs of the camera, within the media-time range of each run
        (``ts`` as stored: a position in a file, an epoch time for a live source) rounded to whole hours
        as in :meth:`heat_grid`."""
        wanted = set(run_ids)
        rows: list[Sequence[Any]] = []
        with self._read() as conn:
            for span in self.run_spans(conn, None, camera_id):
                if span.run_id not in wanted:
                    continue
                q = select(HeatmapRow.width, HeatmapRow.height, HeatmapRow.cell_px, HeatmapRow.points,
                           HeatmapRow.cells, HeatmapRow.hour).where(HeatmapRow.run_id == span.run_id)
                if ts_from is not None:
                    q = q.where(HeatmapRow.hour >= from_epoch(round(span.absolute(ts_from) / HOUR_S) * HOUR_S))
                if ts_to is not None:
                    q = q.where(HeatmapRow.hour < from_epoch(round(span.absolute(ts_to) / HOUR_S) * HOUR_S))
                rows += list(conn.execute(q))
        rows.sort(key=lambda r: r[5], reverse=True)
        return sum_grids(r[:5] for r in rows)

    def compact_heat(self, before: float) -> int:
        """Merge the per-batch heat rows of every hour that ended before ``before`` into one row per
        (run, hour) with ``first_seq`` -1; returns the rows merged away. One transaction."""
        merged = 0
        with self._write() as conn:
            keys = list(conn.execute(
                select(HeatmapRow.run_id, HeatmapRow.hour).where(
                    HeatmapRow.hour < from_epoch(before - HOUR_S), HeatmapRow.first_seq >= 0)
                .group_by(HeatmapRow.run_id, HeatmapRow.hour)))
            for run_id, hour in keys:
                rows = list(conn.execute(
                    select(HeatmapRow.width, HeatmapRow.height, HeatmapRow.cell_px, HeatmapRow.points,
                           HeatmapRow.cells, HeatmapRow.camera_id, HeatmapRow.first_seq, HeatmapRow.last_seq)
                    .where(HeatmapRow.run_id == run_id, HeatmapRow.hour == hour)))
                for geometry in sorted({(int(w), int(h), int(c)) for w, h, c, *_ in rows}):
                    part = [r for r in rows if (int(r[0]), int(r[1]), int(r[2])) == geometry]
                    if len(part) == 1 and int(part[0][6]) < 0:
                        continue
                    total = sum_grids([r[:5] for r in part])
                    assert total is not None
                    w, h, c = geometry
                    conn.execute(delete(HeatmapRow).where(
                        HeatmapRow.run_id == run_id, HeatmapRow.hour == hour, HeatmapRow.width == w,
                        HeatmapRow.height == h, HeatmapRow.cell_px == c))
                    # One merged row per (run, hour); a second geometry in the same hour (settings
                    # changed mid-run) keeps the next free negative key.
                    conn.execute(dialect_insert(conn, HeatmapRow).values(
                        run_id=run_id, hour=hour, first_seq=-1 - sorted({(int(a), int(b), int(d))
                                                                        for a, b, d, *_ in rows}).index(geometry),
                        day=int(hour.timestamp()) // DAY_S, camera_id=str(part[0][5]), width=w, height=h, cell_px=c,
                        points=total.points, cells=encode_cells(total.grid),
                        # what the rows counted (a row without a last frame: its first, as the writer reads it)
                        last_seq=max(int(r[7] if r[7] is not None else r[6]) for r in part)))
                    merged += len(part) - 1
        return merged

    def time_range(self, camera_id: str | None = None) -> tuple[float, float] | None:
        """(earliest start, latest possible row time) of the stored runs; None without runs."""
        with self._read() as conn:
            spans = self.run_spans(conn, None, camera_id)
        if not spans:
            return None
        ends = [s.end if s.end is not None else time_now() for s in spans]
        return min(s.start for s in spans), max(ends)

    def frame_size(self, camera_id: str) -> tuple[int, int] | None:
        """(width, height) of the camera's latest run that recorded them."""
        with self._read() as conn:
            for span in reversed(self.run_spans(conn, None, camera_id)):
                if span.width and span.height:
                    return span.width, span.height
        return None

    # -- rollup output ------------------------------------------------------------------------

    def replace_rollups(
        self, granularity: str, since: float, until: float, rows: dict[str, list[dict[str, Any]]],
        camera_id: str | None = None,
    ) -> None:
        """Replace every rollup row of ``granularity`` with a bucket in ``[since, until)`` (one transaction)."""
        with self._write() as conn:
            for kind, table in ROLLUP_TABLES.items():
                stmt = delete(table).where(
                    table.granularity == granularity,
                    table.bucket >= from_epoch(since),
                    table.bucket < from_epoch(until),
                )
                if camera_id is not None:
                    stmt = stmt.where(table.camera_id == camera_id)
                conn.execute(stmt)
                if rows.get(kind):
                    # An upsert, not a plain insert: two rollups of the same buckets running at
                    # once (beat and `genesis rollup`) then converge instead of one failing.
                    stmt = dialect_insert(conn, table)
                    keys = list(table.__table__.primary_key.columns)
                    values = {c.name: stmt.excluded[c.name] for c in table.__table__.columns if not c.primary_key}
                    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=values), rows[kind])

    def rollups(self, kind: str, granularity: str, camera_id: str | None = None) -> list[dict[str, Any]]:
        """Stored rollup rows of one kind, ordered by key (for reports and tests)."""
        table = ROLLUP_TABLES[kind]
        cols = list(table.__table__.columns)
        query = select(*cols).where(table.granularity == granularity)
        if camera_id is not None:
            query = query.where(table.camera_id == camera_id)
        keys = list(table.__table__.primary_key.columns)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(*keys))]

    # -- retention ----------------------------------------------------------------------------

    def purge_before(self, cutoffs: dict[str, float], rollup_cutoffs: dict[str, float]) -> dict[str, int]:
        """Delete rows whose absolute time is before their kind's cutoff; returns the counts.

        Kinds: ``sightings`` (trajectory points, and recognition attempts that named someone),
        ``unknown_faces`` (recognition attempts that matched nobody), ``events`` (zone events, line
        crossings, tracks by their last sighting, heatmap grids by hour, alerts by their time), ``occupancy``
        (the anomaly baseline's occupancy samples; the events' cutoff when not given); rollups by bucket start per
        granularity. The counts are rows per table, except ``point_batches``: the trajectory points removed
        (a packed row across the cutoff keeps its newer points).
        """
        counts: dict[str, int] = {}
        with self._write() as conn:
            # PostgreSQL: whole days of the partitioned tables go as partitions (no row deleted);
            # the rows of the cutoff's own day are deleted below like any other.
            dropped = drop_before(conn, {"point_batches": cutoffs["sightings"], "heatmap_cells": cutoffs["events"]})
            oldest = max(cutoffs.values(), default=0.0)
            spans = self.run_spans(conn, oldest)
            counts["point_batches"] = dropped.get("point_batches", 0) + sum(
                _purge_points(conn, span, cutoffs["sightings"]) for span in spans if span.start < cutoffs["sightings"])
            counts["recognition_attempts"] = counts["unknown_faces"] = 0
            for span in spans:
                if span.start < max(cutoffs["sightings"], cutoffs["unknown_faces"]):
                    named, unnamed = attempts.purge(conn, span.run_id, partial(_abs_ts, span=span), span.absolute,
                                                    cutoffs["sightings"], cutoffs["unknown_faces"])
                    counts["recognition_attempts"] += named
                    counts["unknown_faces"] += unnamed
            plan: list[tuple[str, Any, Any, Any]] = [
                ("zone_events", ZoneEventRow, ZoneEventRow.ts, None),
                ("line_crossings", LineCrossingRow, LineCrossingRow.ts, None),
                ("tracks", Track, Track.last_ts, None),
            ]
            kind_of = {"zone_events": "events", "line_crossings": "events", "tracks": "events"}
            for name, table, column, extra in plan:
                cutoff = cutoffs[kind_of[name]]
                n = 0
                for span in spans:
                    if span.start >= cutoff:
                        continue
                    stmt = delete(table).where(table.run_id == span.run_id, _abs_ts(column, span) < cutoff)
                    if extra is not None:
                        stmt = stmt.where(extra)
                    n += conn.execute(stmt).rowcount or 0
                counts[name] = n + dropped.get(name, 0)
            # Packed passages go whole once their newest row is past the events' cutoff (at most a day after
            # their rows would have gone one by one).
            P = PassagePack  # noqa: N806
            old_packs = P.last_ts < cutoffs["events"]
            n_packs, n_segs, n_events, n_cross = conn.execute(select(
                func.count(), func.coalesce(func.sum(P.segments), 0), func.coalesce(func.sum(P.zone_events), 0),
                func.coalesce(func.sum(P.crossings), 0)).where(old_packs)).one()
            conn.execute(delete(P).where(old_packs))
            counts["passage_packs"] = int(n_packs)
            counts["tracks"] += int(n_segs)
            counts["zone_events"] += int(n_events)
            counts["line_crossings"] += int(n_cross)
            # Alerts (their deliveries go with them) are kept as long as the events, by their time; the
            # occupancy samples of the anomaly baseline as long as the events, or the baseline, whichever is longer
            # (``occupancy``). Before, neither was ever purged.
            alerts_cut = from_epoch(cutoffs["events"])
            counts["alerts"] = sum(conn.execute(delete(AlertRow).where(
                AlertRow.camera_id == camera, AlertRow.at < alerts_cut)).rowcount or 0  # the (camera, at) index
                for camera in sorted({s.camera_id for s in spans if s.start < cutoffs["events"]}))
            samples_cut = cutoffs.get("occupancy", cutoffs["events"])
            counts["occupancy_samples"] = sum(conn.execute(delete(OccupancySampleRow).where(
                OccupancySampleRow.run_id == span.run_id, OccupancySampleRow.at < from_epoch(samples_cut))).rowcount
                or 0 for span in spans if span.start < samples_cut)
            # Heatmap grids are a summary (an hour of a run in one row): kept as long as the events.
            counts["heatmap_cells"] = dropped.get("heatmap_cells", 0) + (conn.execute(
                delete(HeatmapRow).where(HeatmapRow.hour < from_epoch(cutoffs["events"] - HOUR_S))
            ).rowcount or 0)
            for granularity, cutoff in rollup_cutoffs.items():
                n = 0
                for table in ROLLUP_TABLES.values():
                    n += conn.execute(
                        delete(table).where(table.granularity == granularity, table.bucket < from_epoch(cutoff))
                    ).rowcount or 0
                counts[f"rollups_{granularity}"] = n
        return counts

    # -- snapshots ------------------------------------------------------------------------------

    def save_snapshot(self, camera_id: str, jpeg: bytes, width: int, height: int, taken_at: datetime,
                      min_interval_s: float = 0.0) -> bool:
        """Keep this frame as the camera's snapshot unless the stored one is newer than
        ``taken_at - min_interval_s``. Returns whether it was written (idempotent)."""
        values = {"camera_id": camera_id, "taken_at": taken_at, "width": int(width), "height": int(height),
                  "jpeg": jpeg}
        with self._write() as conn:
            stmt = dialect_insert(conn, CameraSnapshot).values(values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[CameraSnapshot.camera_id],
                set_={k: stmt.excluded[k] for k in ("taken_at", "width", "height", "jpeg")},
                where=CameraSnapshot.taken_at <= from_epoch(epoch(taken_at) - min_interval_s),
            )
            return bool(conn.execute(stmt).rowcount)

    def snapshot(self, camera_id: str) -> tuple[bytes, int, int, datetime] | None:
        with self._read() as conn:
            row = conn.execute(
                select(CameraSnapshot.jpeg, CameraSnapshot.width, CameraSnapshot.height, CameraSnapshot.taken_at)
                .where(CameraSnapshot.camera_id == camera_id)
            ).one_or_none()
        return None if row is None else (bytes(row[0]), int(row[1]), int(row[2]), row[3])

    def cameras(self) -> list[str]:
        with self._read() as conn:
            return sorted({str(c) for (c,) in conn.execute(select(Run.camera_id).distinct())})
