"""The queries behind the API's browsing of stored results: runs, tracks and sightings with filters
and offset pagination, the camera overview, heatmap boxes, the camera tile's boxes and live counts.

Portable SQL (both backends). `EventRows` holds one connection (:func:`read_events`); each method is
one question of the API's services (`genesis.api.services.events`, `frames`, `pipeline`), answered
with plain dataclasses in a deterministic order.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Engine, and_, exists, func, literal, or_, select, tuple_, union_all

from genesis.adapters.db import packs
from genesis.adapters.db.points import StoredPoint, stored_points, unpack
from genesis.adapters.db.repository import (
    EPOCH_MIN,
    RUN_COLUMNS,
    RunRecord,
    SegmentSpan,
    read_connection,
    run_record,
    segment_spans,
    span_holding,
)
from genesis.adapters.db.tables import Camera, PassagePack, PointBatchRow, Run, Track, ZoneEventRow


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


def _matching(points: npt.NDArray[Any], f: EventFilter, inside: set[int] | None,
              spans: tuple[dict[int, list[SegmentSpan]], npt.NDArray[np.int64]] | None = None) -> int:
    """How many of the points of a group's rows (:func:`genesis.adapters.db.points.unpack`, concatenated) are within
    ``f``'s track, times and zone (the tracks ``inside`` it) and, with ``spans`` (the run's segments named
    ``f.identity`` and the points' frames), in a segment of the name: what ``sightings``' ``match`` keeps, counted
    in arrays (the name checked in Python for the points of the named tracks only)."""
    keep = np.ones(len(points), dtype=np.bool_)
    if f.track is not None:
        keep &= points["track_id"] == f.track
    if f.ts_from is not None:
        keep &= points["ts"] >= f.ts_from
    if f.ts_to is not None:
        keep &= points["ts"] <= f.ts_to
    if inside is not None:
        keep &= np.isin(points["track_id"], np.fromiter(inside, dtype=np.int64, count=len(inside)))
    if spans is None:
        return int(keep.sum())
    held, seqs = spans
    keep &= np.isin(points["track_id"], np.fromiter(held, dtype=np.int64, count=len(held)))
    at = np.flatnonzero(keep)
    return sum(1 for tid, seq in zip(points["track_id"][at].tolist(), seqs[at].tolist(), strict=True)
               if span_holding(held, tid, seq) is not None)


def _reach(spans: dict[int, list[SegmentSpan]]) -> tuple[list[int], list[int]]:
    """The frames the segments ``spans`` cover, as sorted disjoint ranges (their firsts, their lasts)."""
    firsts: list[int] = []
    lasts: list[int] = []
    for _, first, last, _ in sorted((s for ss in spans.values() for s in ss), key=lambda s: s[1]):
        if lasts and first <= lasts[-1]:
            lasts[-1] = max(lasts[-1], last)
        else:
            firsts.append(first)
            lasts.append(last)
    return firsts, lasts


def _overlaps(reach: tuple[list[int], list[int]], first: int, last: int) -> bool:
    """Whether frames ``first`` .. ``last`` meet one of the ranges of :func:`_reach`."""
    i = bisect.bisect_right(reach[0], last) - 1  # the last range that starts at or before ``last``
    return i >= 0 and reach[1][i] >= first


_ZONE_AHEAD = 4096
"""Track ids past a group's that a sightings page reads the zone's rows for at once."""

P = PointBatchRow
_READ_ROWS = 1000
"""Packed rows (their key, frames, times and count; their points too under a track, zone or identity filter) read at
a time by a sightings page."""


POINTS_TOTAL_CAP = 100_000
"""``/api/sightings`` counts at most this many matching points for its ``total`` (a camera's months of points
would otherwise be counted on every page)."""

FILTERED_TOTAL_CAP = 10_000
"""... and ``/api/sightings`` under a track, zone or identity filter, ``/api/tracks`` under a zone filter, at most this
many: there each item counted is checked one by one (a point unpacked from its row; a segment's zone events looked
up, or its pack decoded): 2,000 rows of points, a third of a second on two cores, for 100,000 points of a busy run in
a zone (docs/benchmarks.md). A larger total reads the cap, as a search engine's "10,000+"; the pages past it are
still served."""

COUNT_GROUP_MAX = 256
"""Runs counted in one statement at most (a UNION ALL of that many bounded counts; SQLite allows 500 terms)."""

TRACKS_TOTAL_CAP = 100_000
"""``/api/tracks`` counts at most this many matching segments for its ``total`` (a camera's months of segments would
otherwise be counted on every page)."""

RECENT_S = 2.0
"""A camera tile draws the tracks with a stored point within this many seconds before the frame."""


def _segment_filter(f: EventFilter) -> packs.SegmentFilter:
    """What ``f`` asks of a packed segment (its run window is the run's)."""
    since = f.ts_from if f.ts_from is not None and f.ts_from >= EPOCH_MIN else None  # a live run's epoch times
    return packs.SegmentFilter(identity=f.identity, track=f.track, zone=f.zone, ts_from=f.ts_from, ts_to=f.ts_to,
                               since=since)


def _listed_packs(conn: Connection, run_ids: Collection[str], f: EventFilter) -> set[str]:
    """Those of ``run_ids`` whose packs the track list under ``f`` reads: none under an identity filter. A pack
    holds no named segment: the upkeep packs only tracks none of whose segments carries a name
    (``genesis.adapters.db.analytics._packable``), and naming a packed segment takes its track out of its pack first
    (``IdentityRows.set_segment_identity``); decoding a run's packs to find nothing in them was most of the time of
    such a page (0.6 s for a day of a busy run)."""
    return set() if f.identity is not None else packs.packed_runs(conn, run_ids)


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
    with read_connection(engine) as conn:  # one snapshot: a page's rows and packs are read together
        yield EventRows(conn)


class EventRows:
    """The API's reads of stored results on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._packs: packs.Decoded = {}
        """Packs this reader decoded (one snapshot: they cannot change under it)."""
        self._zone_row_tracks: dict[tuple[str, str], tuple[list[int], set[int]]] = {}
        """(run, zone) -> ([lowest, highest] track id read, the tracks with rows of the zone's events in it)."""
        self._zone_packs: dict[tuple[str, str], tuple[list[tuple[int, int, int]], set[tuple[int, int]], set[int]]] = {}
        """(run, zone) -> ((day, first track, last track) of the run's packs with the zone's events; the (day, first
        track) of those scanned so far; the tracks they hold in the zone)."""

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
        """Track segments newest run first (then run, track, segment), with the total that match (counted up to
        ``TRACKS_TOTAL_CAP``, ``FILTERED_TOTAL_CAP`` under a zone filter: a larger total reads the cap; the page
        itself lies wherever ``offset`` says).

        The page is read from the runs that hold it: each run's matching segments are counted, newest run first,
        only until the count reaches the end of the page and the cap (:meth:`_run_counts`), which says in which
        runs the page lies; the rows then come from those runs only, through the primary key. Counting every
        matching segment of the camera, a grouped count over months of segments, was most of the time of a page
        (docs/benchmarks.md), and sorting them all for the first 50 (``tracks_sorted``) before that."""
        end = offset + limit
        cap = FILTERED_TOTAL_CAP if f.zone is not None else TRACKS_TOTAL_CAP
        per_run = self._run_counts(f, max(end, cap))
        total = min(sum(n for _, n in per_run), cap)
        runs, skip = page_runs(per_run, limit, offset)
        packed = _listed_packs(self.conn, runs, f)
        rows: list[Any] = []
        for run_id in runs:  # run by run, in the primary key's order: no sort of a run's segments for 50 of them
            first = skip if not rows else 0
            query = (_tracks_within(select(*TRACK_LISTING), f).where(Track.run_id == run_id)
                     .order_by(Track.track_id, Track.segment))
            if run_id not in packed:
                rows += self.conn.execute(query.limit(limit - len(rows)).offset(first)).all()
            else:  # the run's rows and its packed segments, merged in (track, segment) order
                hot = self.conn.execute(query.limit(first + limit - len(rows))).all()
                rows += islice(heapq.merge(hot, self._packed_listing(run_id, f),
                                           key=lambda r: (r[1], r[12])), first, first + limit - len(rows))
            if len(rows) >= limit:
                break
        return [TrackListing(*r) for r in rows], total

    def _packed_listing(self, run_id: str, f: EventFilter) -> Iterator[tuple[Any, ...]]:
        """The run's packed segments that ``f`` keeps, as rows of ``TRACK_LISTING`` (the fields of a
        `TrackListing`), in (track, segment) order."""
        started = self.conn.execute(select(Run.started_at).where(Run.id == run_id)).scalar_one()
        for t in packs.listing_rows(self.conn, run_id, _segment_filter(f), self._packs):
            yield (run_id, t.track_id, t.camera_id, t.first_seq, t.last_seq, t.first_ts, t.last_ts, t.frames,
                   t.identity, t.votes, t.attempts, t.best_distance, t.segment, started)

    def _run_counts(self, f: EventFilter, need: int) -> list[tuple[str, int]]:
        """(run, matching segments) in the listing's run order, until their sum reaches ``need``: the runs in the
        filter's window are counted in growing groups (1, 4, 16, ... up to ``COUNT_GROUP_MAX`` runs a statement),
        each run's count stopped at what is still needed (a bounded count reads at most that many index entries of
        the run). The last run counted may be counted short: the sum has then reached ``need`` and nothing after it
        is listed."""
        order = self.conn.execute(_run_window(select(Run.id), f).order_by(Run.started_at.desc(), Run.id)).scalars()
        runs = [str(r) for r in order]
        out: list[tuple[str, int]] = []
        seen, i, size = 0, 0, 1
        while i < len(runs) and seen < need:
            group = runs[i:i + size]
            left = need - seen

            def bounded(run_id: str, left: int = left) -> Any:
                rows = _tracks_within(select(Track.run_id), f).where(Track.run_id == run_id).limit(left).subquery()
                return select(literal(run_id).label("run_id"), func.count().label("n")).select_from(rows)

            counted = {str(r): int(n) for r, n in self.conn.execute(union_all(*(bounded(r) for r in group)))}
            for run_id in _listed_packs(self.conn, group, f):
                have = counted.get(run_id, 0)
                if have < left:
                    counted[run_id] = have + packs.listing_count(self.conn, run_id, _segment_filter(f), left - have,
                                                                 self._packs)
            for run_id in group:
                n = counted.get(run_id, 0)
                out.append((run_id, n))
                seen += n
                if seen >= need:
                    break
            i += size
            size = min(4 * size, COUNT_GROUP_MAX)
        return out

    def tracks_sorted(self, f: EventFilter, limit: int, offset: int) -> tuple[list[TrackListing], int]:
        """What ``tracks`` gives, read the former way: every matching segment ordered by one query and counted
        by another. The storage bench times it beside ``tracks``; the tests check that both give the same pages."""
        rows, total = self._page(_tracks_within(select(*TRACK_LISTING), f), TRACK_ORDER, limit, offset)
        return [TrackListing(*r) for r in rows], total

    def sightings(self, f: EventFilter, limit: int, offset: int) -> tuple[list[SightingListing], int]:
        """Trajectory points (what ``/api/sightings`` lists) by run, seq and track, with the total that match
        (counted up to ``POINTS_TOTAL_CAP``, or ``FILTERED_TOTAL_CAP`` under a track, zone or identity filter;
        the page itself lies wherever ``offset`` says).

        The points are stored packed per batch (``point_batches``): the rows that may hold matching points are
        chosen in SQL (the runs' window; the runs with a segment named ``identity``; the runs with ``zone``'s events,
        as rows or packed; ``ts`` against the rows' smallest and largest time) and read in key order, a thousand at
        a time; under an identity filter a group of rows whose frames no segment of the name covers is passed over
        (the run's named segments are read once); a row every point of which matches (no track, zone or identity
        filter, its times within the filter's) is counted by its ``n`` alone unless the page lies in it; the others
        are unpacked and filtered: counted in arrays where the page does not lie in them, made into points where it
        does. Under a track, zone or identity filter the rows are read with their points; otherwise a
        row is read again for them. A point matches ``zone`` when its track entered or left the zone (its events
        rows, or in its track's pack) and ``identity`` when the segment of its track that holds its frame carries
        the name."""
        end = offset + limit
        seen = 0
        page: list[tuple[str, str, StoredPoint]] = []
        per_point = f.track is not None or f.zone is not None or f.identity is not None
        cap = FILTERED_TOTAL_CAP if per_point else POINTS_TOTAL_CAP
        named: dict[str, dict[int, list[SegmentSpan]]] = {}

        def keep(run_id: str, inside: set[int] | None) -> Any:
            def match(tid: int, seq: int, ts: float) -> bool:
                if f.track is not None and tid != f.track:
                    return False
                if inside is not None and tid not in inside:
                    return False
                if f.ts_from is not None and ts < f.ts_from:
                    return False
                if f.ts_to is not None and ts > f.ts_to:
                    return False
                return f.identity is None or span_holding(named[run_id], tid, seq) is not None
            return match

        reach: dict[str, tuple[list[int], list[int]]] = {}
        for run_id, camera, group in self._point_groups(f, with_points=per_point):
            if f.identity is not None:
                if run_id not in named:
                    named[run_id] = segment_spans(self.conn, run_id, identity=f.identity)
                    reach[run_id] = _reach(named[run_id])
                if not _overlaps(reach[run_id], int(group[0].first_seq), max(int(r.last_seq) for r in group)):
                    continue  # no segment of the name in its frames: none of its points matches
            whole = not per_point and all(
                (f.ts_from is None or r.first_ts >= f.ts_from) and (f.ts_to is None or r.last_ts <= f.ts_to)
                for r in group)
            n = sum(int(r.n) for r in group)
            if whole and (seen + n <= offset or seen >= end):
                seen += n  # nothing of the page in it: counted, not unpacked
            else:
                blobs = ([(int(r.first_seq), bytes(r.points)) for r in group] if per_point
                         else self._packed(run_id, group))
                rows = [(first, unpack(blob)) for first, blob in blobs]
                arrays = np.concatenate([a for _, a in rows])  # the group's points, counted at once
                inside = None
                if f.zone is not None:
                    inside = self._zone_inside(run_id, f.zone, set(np.unique(arrays["track_id"]).tolist()))
                spans = None
                if f.identity is not None:  # the frames, for the segments that hold them
                    spans = named[run_id], np.concatenate([a["dseq"].astype(np.int64) + first for first, a in rows])
                n = _matching(arrays, f, inside, spans)
                if seen + n <= offset or seen >= end:
                    seen += n  # nothing of the page in it: counted in arrays, no point made
                else:
                    match = keep(run_id, inside)
                    points = [p for first, blob in blobs for p in stored_points(first, blob, match)]
                    points.sort(key=lambda p: (p.seq, p.track_id))
                    for p in points:
                        if offset <= seen < end:
                            page.append((run_id, camera, p))
                        seen += 1
            if seen >= end and seen >= cap:
                break
        total = min(seen, cap)
        segments: dict[str, dict[int, list[SegmentSpan]]] = {}
        for run_id in {r for r, _, _ in page}:
            segments[run_id] = segment_spans(self.conn, run_id, {p.track_id for r, _, p in page if r == run_id})
        out = []
        for run_id, camera, p in page:
            seg = span_holding(segments[run_id], p.track_id, p.seq)
            out.append(SightingListing(run_id, p.track_id, p.seq, p.ts, *p.box, p.score, camera,
                                       None if seg is None else seg[3], p.frames))
        return out, total

    def _zone_rows(self, run_id: str, zone: str, tids: set[int]) -> set[int]:
        """The tracks of the run with rows of ``zone``'s events, read for a range of track ids that covers ``tids``:
        the ranges read so far grow by what a group needs (and :data:`_ZONE_AHEAD` tracks more), so a page that
        counts the points of a few hours does not read the zone's tracks of the whole day."""
        low, high = min(tids), max(tids)
        covered, found = self._zone_row_tracks.setdefault((run_id, zone), ([], set()))
        wanted = []
        if not covered:
            wanted.append((low, high + _ZONE_AHEAD))
        else:
            if low < covered[0]:
                wanted.append((low, covered[0] - 1))
            if high > covered[1]:
                wanted.append((covered[1] + 1, high + _ZONE_AHEAD))
        for a, b in wanted:
            found |= {int(t) for t in self.conn.execute(select(ZoneEventRow.track_id).where(
                ZoneEventRow.run_id == run_id, ZoneEventRow.zone == zone, ZoneEventRow.track_id >= a,
                ZoneEventRow.track_id <= b).distinct()).scalars()}
            covered[:] = [min(a, covered[0]), max(b, covered[1])] if covered else [a, b]
        return found

    def _zone_inside(self, run_id: str, zone: str, tids: set[int]) -> set[int]:
        """Of ``tids``, the tracks that entered or left ``zone``: those whose zone events are rows and those whose
        passages are packed (a day after their day, while their points are kept 30 days)."""
        rows = self._zone_rows(run_id, zone, tids)
        inside = tids & rows
        ask = tids - rows
        if not ask:
            return inside
        if (run_id, zone) not in self._zone_packs:  # the keys and track ranges of the run's packs with the zone
            self._zone_packs[(run_id, zone)] = ([(int(d), int(a), int(b)) for d, a, b in self.conn.execute(
                select(PassagePack.day, PassagePack.first_track, PassagePack.last_track).where(
                    PassagePack.run_id == run_id, packs.holding_zone(zone)))], set(), set())
        keys, scanned, tracks = self._zone_packs[(run_id, zone)]
        low, high = min(ask), max(ask)
        for day, first, last in keys:
            if first <= high and last >= low and (day, first) not in scanned:
                scanned.add((day, first))
                tracks |= packs.zone_tracks(packs.pack_at(self.conn, run_id, day, first, self._packs), zone)
        return inside | (ask & tracks)

    def _packed(self, run_id: str, group: list[Any]) -> list[tuple[int, bytes]]:
        """(first_seq, points) of the rows of a group (one read)."""
        keys = {(int(r.first_seq), int(r.first_track), int(r.day)) for r in group}
        rows = self.conn.execute(select(P.first_seq, P.first_track, P.day, P.points).where(
            P.run_id == run_id, P.first_seq >= min(k[0] for k in keys), P.first_seq <= max(k[0] for k in keys)))
        return [(int(first), bytes(blob)) for first, track, day, blob in rows
                if (int(first), int(track), int(day)) in keys]

    def _point_groups(self, f: EventFilter, with_points: bool = False) -> Iterator[tuple[str, str, list[Any]]]:
        """(run, camera, rows) of the packed rows that may hold points within ``f``, in (run, frame) order, a
        group being rows whose frame ranges overlap (so that sorting each group's points gives the points in
        order); read ``_READ_ROWS`` rows at a time, by key (with their points, when ``with_points``: a filter that
        reads every row's points)."""
        query = select(P.run_id, P.first_seq, P.first_track, P.day, P.last_seq, P.first_ts, P.last_ts, P.n,
                       Run.camera_id, *([P.points] if with_points else [])).join(Run, Run.id == P.run_id)
        query = _run_window(query, f)
        if f.zone is not None:  # the runs with the zone's events, as rows or packed, chosen first (by their keys)
            runs = self.conn.execute(_run_window(select(Run.id), f).where(
                exists().where(ZoneEventRow.run_id == Run.id, ZoneEventRow.zone == f.zone)
                | exists().where(PassagePack.run_id == Run.id, packs.holding_zone(f.zone)))).scalars().all()
            query = query.where(P.run_id.in_(runs))
        if f.identity is not None:  # the runs with a segment of the name (its index); the frames: ``sightings``
            query = query.where(P.run_id.in_(select(Track.run_id).where(Track.identity_name == f.identity)
                                             .distinct().scalar_subquery()))
        if f.ts_from is not None:
            query = query.where(P.last_ts >= f.ts_from)
        if f.ts_to is not None:
            query = query.where(P.first_ts <= f.ts_to)
        after: tuple[str, int, int, int] | None = None
        group: list[Any] = []
        high = 0
        while True:
            key = P.run_id, P.first_seq, P.first_track, P.day
            q = query if after is None else query.where(tuple_(*key) > tuple_(*after))
            rows = self.conn.execute(q.order_by(*key).limit(_READ_ROWS)).all()
            for r in rows:
                if group and (r.run_id != group[0].run_id or r.first_seq > high):
                    yield str(group[0].run_id), str(group[0].camera_id), group
                    group = []
                if not group:
                    high = int(r.last_seq)
                group.append(r)
                high = max(high, int(r.last_seq))
            if len(rows) < _READ_ROWS:
                break
            last = rows[-1]
            after = (str(last.run_id), int(last.first_seq), int(last.first_track), int(last.day))
        if group:
            yield str(group[0].run_id), str(group[0].camera_id), group

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
        before = P.run_id == run_id, P.first_seq <= seq
        newest = self.conn.execute(select(func.max(P.last_ts)).where(*before, P.last_seq <= seq)).scalar()
        for first, blob in self.conn.execute(select(P.first_seq, P.points).where(*before, P.last_seq > seq)):
            for p in stored_points(int(first), bytes(blob), lambda _t, q, _s: q <= seq):
                newest = p.ts if newest is None else max(float(newest), p.ts)
        if newest is None:
            return []
        since = float(newest) - RECENT_S
        latest: dict[int, StoredPoint] = {}
        for first, blob in self.conn.execute(select(P.first_seq, P.points).where(*before, P.last_ts >= since)):
            for p in stored_points(int(first), bytes(blob), lambda _t, q, ts: q <= seq and ts >= since):
                held = latest.get(p.track_id)
                if held is None or p.seq >= held.seq:
                    latest[p.track_id] = p
        segments = segment_spans(self.conn, run_id, set(latest))
        out = []
        for tid in sorted(latest):
            p = latest[tid]
            seg = span_holding(segments, tid, p.seq)
            out.append(LabelledBox(tid, *p.box, None if seg is None else seg[3]))
        return out

    def run_meta(self, run_id: str) -> dict[str, Any] | None:
        meta: dict[str, Any] | None = self.conn.execute(
            select(Run.meta).where(Run.id == run_id)).scalar_one_or_none()
        return meta

    def last_seq(self, run_id: str) -> int | None:
        """The newest frame of the run that has a stored trajectory point."""
        seq = self.conn.execute(select(func.max(P.last_seq)).where(P.run_id == run_id)).scalar()
        return None if seq is None else int(seq)

    def run_status(self, run_id: str) -> tuple[str, int]:
        """(status, frames) of a run that exists."""
        row = self.conn.execute(select(Run.status, Run.frames).where(Run.id == run_id)).one()
        return row.status, row.frames

    def in_frame(self, run_id: str, seq: int) -> int:
        """How many tracks are around one frame (:meth:`sightings_at`)."""
        return len(self.sightings_at(run_id, seq))

    def track_count(self, run_id: str) -> int:
        """The run's track segments, its packed ones included."""
        return int(self.conn.execute(
            select(func.count()).select_from(Track).where(Track.run_id == run_id)).scalar_one()
        ) + packs.listing_count(self.conn, run_id, packs.SegmentFilter(), 2**62)

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
