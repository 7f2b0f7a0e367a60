"""The queries behind the API's browsing of stored results: runs, tracks and sightings with filters
and offset pagination, the camera overview, heatmap boxes, the camera tile's boxes and live counts.

Portable SQL (both backends). `EventRows` holds one connection (:func:`read_events`); each method is
one question of the API's services (`genesis.api.services.events`, `frames`, `pipeline`), answered
with plain dataclasses in a deterministic order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, func, or_, select

from genesis.adapters.db.repository import RUN_COLUMNS, RunRecord, real_out, run_record
from genesis.adapters.db.tables import Camera, Run, Track, TrackPointRow, ZoneEventRow


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What the caller asks for; every field is optional."""

    camera: str | None = None
    run: str | None = None
    identity: str | None = None
    zone: str | None = None
    track: int | None = None
    since: datetime | None = None
    """Runs that were still going at or after this time (wall clock, UTC)."""
    until: datetime | None = None
    """Runs that started at or before this time."""
    ts_from: float | None = None
    """Media time within a run, seconds (the ``ts`` of sightings)."""
    ts_to: float | None = None


@dataclass(frozen=True, slots=True)
class TrackListing:
    run_id: str
    track_id: int
    camera_id: str
    first_seq: int
    last_seq: int
    first_ts: float
    last_ts: float
    frames: int
    identity_name: str | None
    votes: int
    attempts: int
    best_distance: float | None
    segment: int
    started_at: datetime


@dataclass(frozen=True, slots=True)
class SightingListing:
    run_id: str
    track_id: int
    seq: int
    ts: float
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    camera_id: str
    identity_name: str | None
    frames: int = 1
    """The sightings of the track this point stands for (itself and those since its previous point)."""


@dataclass(frozen=True, slots=True)
class RunFrame:
    """A run of a camera: its id and meta (frame size ...)."""

    id: str
    meta: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class LabelledBox:
    """A stored sighting of one frame with the name of its track segment."""

    track_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    identity_name: str | None


@dataclass(frozen=True, slots=True)
class CameraRuns:
    """What the database knows of the cameras: stored names, runs per camera, newest run per camera."""

    names: dict[str, str]
    runs: dict[str, int]
    latest: dict[str, RunRecord]


def _run_window(query: Any, f: EventFilter) -> Any:
    if f.camera is not None:
        query = query.where(Run.camera_id == f.camera)
    if f.run is not None:
        query = query.where(Run.id == f.run)
    if f.until is not None:
        query = query.where(Run.started_at <= f.until)
    if f.since is not None:
        query = query.where(or_(Run.finished_at.is_(None), Run.finished_at >= f.since))
    return query


def _in_zone(run_col: Any, track_col: Any, zone: str) -> Any:
    return exists().where(
        and_(ZoneEventRow.run_id == run_col, ZoneEventRow.track_id == track_col, ZoneEventRow.zone == zone)
    )


def _filtered(base: Any, f: EventFilter, run_col: Any, track_col: Any, ts_from_col: Any, ts_to_col: Any) -> Any:
    """``base`` within the filter: the run window, identity, track, zone and media time (``ts_from``
    against ``ts_from_col``, ``ts_to`` against ``ts_to_col``)."""
    base = _run_window(base, f)
    if f.identity is not None:
        base = base.where(Track.identity_name == f.identity)
    if f.track is not None:
        base = base.where(track_col == f.track)
    if f.zone is not None:
        base = base.where(_in_zone(run_col, track_col, f.zone))
    if f.ts_from is not None:
        base = base.where(ts_from_col >= f.ts_from)
    if f.ts_to is not None:
        base = base.where(ts_to_col <= f.ts_to)
    return base


TRACK_LISTING = (Track.run_id, Track.track_id, Track.camera_id, Track.first_seq, Track.last_seq, Track.first_ts,
                 Track.last_ts, Track.frames, Track.identity_name, Track.votes, Track.attempts, Track.best_distance,
                 Track.segment, Run.started_at)
"""The columns of a `TrackListing`."""
TRACK_ORDER = (Run.started_at.desc(), Track.run_id, Track.track_id, Track.segment)
"""The track listing's order: newest run first, then run, track and segment."""


def _tracks_within(query: Any, f: EventFilter) -> Any:
    """``query`` over track segments joined with their runs, within the filter."""
    return _filtered(query.join(Run, Run.id == Track.run_id), f, Track.run_id, Track.track_id, Track.last_ts,
                     Track.first_ts)


P = TrackPointRow
_SIGHTING_TRACK = and_(Track.run_id == P.run_id, Track.track_id == P.track_id,
                       Track.first_seq <= P.seq, Track.last_seq >= P.seq)
"""Join condition: the track segment a trajectory point belongs to."""

POINTS_TOTAL_CAP = 100_000
"""``/api/sightings`` counts at most this many matching points for its ``total`` (a camera's months of points
would otherwise be counted on every page)."""

RECENT_S = 2.0
"""A camera tile draws the tracks with a stored point within this many seconds before the frame."""


def page_runs(counts: list[tuple[str, int]], limit: int, offset: int) -> tuple[list[str], int]:
    """The runs that hold rows ``offset`` .. ``offset + limit`` of a listing ordered by run first, from each
    run's row count in that order, and how many rows of the first of them to skip."""
    runs: list[str] = []
    skip = offset
    end = offset + limit
    seen = 0
    for run_id, n in counts:
        if limit <= 0 or seen >= end:
            break
        if seen + n > offset:
            if not runs:
                skip = offset - seen
            runs.append(run_id)
        seen += n
    return runs, skip


@contextmanager
def read_events(engine: Engine) -> Iterator[EventRows]:
    with engine.connect() as conn:
        yield EventRows(conn)


class EventRows:
    """The API's reads of stored results on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _page(self, base: Any, order: tuple[Any, ...], limit: int, offset: int, count_cap: int | None = None
              ) -> tuple[list[Any], int]:
        """(the rows of one page of ``base`` in ``order``, how many rows match in all: at most ``count_cap``)."""
        counted = base if count_cap is None else base.limit(count_cap)
        total = int(self.conn.execute(select(func.count()).select_from(counted.subquery())).scalar_one())
        return list(self.conn.execute(base.order_by(*order).limit(limit).offset(offset)).all()), total

    def runs(self, camera: str | None, limit: int, offset: int) -> tuple[list[RunRecord], int]:
        """Runs newest first (ties: run id, descending), with the total that match."""
        query = RUN_COLUMNS
        count = select(func.count()).select_from(Run)
        if camera is not None:
            query = query.where(Run.camera_id == camera)
            count = count.where(Run.camera_id == camera)
        query = query.order_by(Run.started_at.desc(), Run.id.desc()).limit(limit).offset(offset)
        total = int(self.conn.execute(count).scalar_one())
        return [run_record(r) for r in self.conn.execute(query).all()], total

    def tracks(self, f: EventFilter, limit: int, offset: int) -> tuple[list[TrackListing], int]:
        """Track segments newest run first (then run, track, segment), with the total that match.

        The page is read from the runs that hold it: one grouped count gives each run's matching segments
        (their sum is the total, and they say in which runs the page lies); the rows then come from those
        runs only, through the primary key. Sorting every matching segment for the first 50 (``tracks_sorted``)
        was most of the time of a camera's page once it had months of segments (docs/benchmarks.md)."""
        per_run = self.conn.execute(
            _tracks_within(select(Track.run_id, Run.started_at, func.count()), f)
            .group_by(Track.run_id, Run.started_at).order_by(Run.started_at.desc(), Track.run_id)).all()
        total = sum(int(n) for _, _, n in per_run)
        runs, skip = page_runs([(str(r), int(n)) for r, _, n in per_run], limit, offset)
        if not runs:
            return [], total
        rows = self.conn.execute(_tracks_within(select(*TRACK_LISTING), f).where(Track.run_id.in_(runs))
                                 .order_by(*TRACK_ORDER).limit(limit).offset(skip)).all()
        return [TrackListing(*r) for r in rows], total

    def tracks_sorted(self, f: EventFilter, limit: int, offset: int) -> tuple[list[TrackListing], int]:
        """What ``tracks`` gives, read the former way: every matching segment ordered by one query and counted
        by another. The storage bench times it beside ``tracks``; the tests check that both give the same pages."""
        rows, total = self._page(_tracks_within(select(*TRACK_LISTING), f), TRACK_ORDER, limit, offset)
        return [TrackListing(*r) for r in rows], total

    def sightings(self, f: EventFilter, limit: int, offset: int) -> tuple[list[SightingListing], int]:
        """Trajectory points (what ``/api/sightings`` lists) by run, seq and track, with the total.

        The total is counted without the segment each point belongs to (a point lies in one segment of its track or
        none, so the outer join adds no row) unless the filter names an identity: counting up to
        ``POINTS_TOTAL_CAP`` points then reads their key alone instead of looking up each one's segment."""
        def within(query: Any, segment: bool) -> Any:
            query = query.join(Run, Run.id == P.run_id)
            if segment:
                query = query.outerjoin(Track, _SIGHTING_TRACK)
            return _filtered(query, f, P.run_id, P.track_id, P.ts, P.ts)

        base = within(select(P.run_id, P.track_id, P.seq, P.ts, P.x1, P.y1, P.x2, P.y2, P.score, Run.camera_id,
                             Track.identity_name, P.frames), True)
        counted = within(select(P.run_id), f.identity is not None).limit(POINTS_TOTAL_CAP)
        total = int(self.conn.execute(select(func.count()).select_from(counted.subquery())).scalar_one())
        rows = list(self.conn.execute(base.order_by(P.run_id, P.seq, P.track_id).limit(limit).offset(offset)).all())
        return [SightingListing(r[0], r[1], r[2], r[3], real_out(r[4]), real_out(r[5]), real_out(r[6]), real_out(r[7]),
                                real_out(r[8]), r[9], r[10], r[11]) for r in rows], total

    def identity_runs(self, name: str) -> list[str]:
        """The runs where a track segment carries ``name``, newest first (ties: run id), in one grouped read."""
        query = (select(Track.run_id).join(Run, Run.id == Track.run_id).where(Track.identity_name == name)
                 .group_by(Track.run_id, Run.started_at).order_by(Run.started_at.desc(), Track.run_id))
        return [str(r) for (r,) in self.conn.execute(query)]

    def latest_run(self, camera: str) -> str | None:
        """The newest run of a camera."""
        run_id: str | None = self.conn.execute(
            select(Run.id).where(Run.camera_id == camera).order_by(Run.started_at.desc(), Run.id.desc()).limit(1)
        ).scalar_one_or_none()
        return run_id

    def camera_runs(self, camera: str, f: EventFilter) -> list[RunFrame]:
        """The camera's runs in the filter's window, newest first."""
        query = _run_window(select(Run.id, Run.meta, Run.started_at).where(Run.camera_id == camera), f)
        return [RunFrame(r.id, r.meta) for r in self.conn.execute(
            query.order_by(Run.started_at.desc(), Run.id.desc())).all()]

    def sightings_at(self, run_id: str, seq: int) -> list[LabelledBox]:
        """The tracks around one frame with their segment's name, by track: each track's latest stored
        point at or before ``seq`` within ``RECENT_S`` seconds of the newest such point (the database keeps
        sampled trajectories, not every frame)."""
        newest = self.conn.execute(select(func.max(P.ts)).where(P.run_id == run_id, P.seq <= seq)).scalar()
        if newest is None:
            return []
        rows = self.conn.execute(
            select(P.track_id, P.seq, P.x1, P.y1, P.x2, P.y2, Track.identity_name)
            .outerjoin(Track, _SIGHTING_TRACK)
            .where(P.run_id == run_id, P.seq <= seq, P.ts >= float(newest) - RECENT_S)
            .order_by(P.track_id, P.seq)
        ).all()
        latest = {int(r.track_id): LabelledBox(int(r.track_id), real_out(r.x1), real_out(r.y1), real_out(r.x2),
                                               real_out(r.y2), r.identity_name)
                  for r in rows}
        return [latest[k] for k in sorted(latest)]

    def run_meta(self, run_id: str) -> dict[str, Any] | None:
        meta: dict[str, Any] | None = self.conn.execute(
            select(Run.meta).where(Run.id == run_id)).scalar_one_or_none()
        return meta

    def last_seq(self, run_id: str) -> int | None:
        """The newest frame of the run that has a stored trajectory point."""
        seq = self.conn.execute(select(func.max(P.seq)).where(P.run_id == run_id)).scalar()
        return None if seq is None else int(seq)

    def run_status(self, run_id: str) -> tuple[str, int]:
        """(status, frames) of a run that exists."""
        row = self.conn.execute(select(Run.status, Run.frames).where(Run.id == run_id)).one()
        return row.status, row.frames

    def in_frame(self, run_id: str, seq: int) -> int:
        """How many tracks are around one frame (:meth:`sightings_at`)."""
        return len(self.sightings_at(run_id, seq))

    def track_count(self, run_id: str) -> int:
        return int(self.conn.execute(
            select(func.count()).select_from(Track).where(Track.run_id == run_id)).scalar_one())

    def identities_seen(self, run_id: str) -> list[str]:
        """The names given to the run's tracks (distinct, unordered)."""
        return [str(n) for n in self.conn.execute(
            select(Track.identity_name).where(Track.run_id == run_id, Track.identity_name.is_not(None)).distinct()
        ).scalars().all()]

    def camera_runs_overview(self) -> CameraRuns:
        stored = {r.id: r.name for r in self.conn.execute(select(Camera.id, Camera.name))}
        counts = {cam: int(n) for cam, n in self.conn.execute(
            select(Run.camera_id, func.count()).group_by(Run.camera_id)).all()}
        latest: dict[str, RunRecord] = {}
        for r in map(run_record, self.conn.execute(RUN_COLUMNS)):
            cur = latest.get(r.camera_id)
            if cur is None or (r.started_at, r.run_id) > (cur.started_at, cur.run_id):
                latest[r.camera_id] = r
        return CameraRuns(stored, counts, latest)

    def running_runs(self) -> int:
        return int(self.conn.execute(
            select(func.count()).select_from(Run).where(Run.status == "running")).scalar_one())


__all__ = [
    "Box",
    "CameraRuns",
    "EventFilter",
    "EventRows",
    "LabelledBox",
    "RunFrame",
    "SightingListing",
    "TrackListing",
    "read_events",
]
