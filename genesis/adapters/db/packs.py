"""Passages of past days packed (``passage_packs``, :class:`~genesis.adapters.db.tables.PassagePack`).

A busy camera stores about one track segment and one zone event a frame (docs/benchmarks.md): at a row each, with
its header and primary-key entry, they were 78 of the 91 GB a camera keeps in a year. Once a track is old enough
that its trajectory points, recognition attempts and unknown faces are gone (their retention is 30 days, the
events' 365), and it carries no name, nothing reads its rows but the run's report and lists and the rollups of
its hours. The storage upkeep then packs the rows of such tracks, per run and UTC day of their last sighting,
into one row: the segments, zone events and line crossings as columns, each column's values delta-coded (the
integers) or byte-shuffled (the doubles), all compressed with zlib. Every value comes back exactly as stored
(doubles bit for bit, None as None): a run's report, its lists and its rollups are the same before and after.

The readers of those rows (``Repository.tracks`` / ``zone_events`` / ``line_crossings``, ``segment_spans``,
the API's track list, the rollups' ``window_rows``) add the packed rows of the run to what they read in SQL
(:func:`run_packs`, :func:`listing_rows`). Named tracks and tracks with a stored face stay rows: the identity
pages, the review, search and clustering read those only, by index.

This module is the codec and the reads of ``passage_packs`` (SQL, as every module of this package).
"""

from __future__ import annotations

import heapq
import json
import struct
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, select

from genesis.adapters.db.names_column import SEP, holding, joined
from genesis.adapters.db.shuffle import shuffled, unshuffled
from genesis.adapters.db.tables import PassagePack
from genesis.domain import Direction, LineCrossing, TrackRecord, ZoneEvent, ZoneEventKind
from genesis.domain.stats import pair_visits

VERSION = 1
_HEAD = struct.Struct("<4sI")
_MAGIC = b"GPP1"

SEGMENT_INTS = ("camera", "track_id", "segment", "first_seq", "last_seq", "frames", "identity", "votes", "attempts",
                "end_reason")
SEGMENT_FLOATS = ("first_ts", "last_ts", "best_distance", "named_ts")
EVENT_INTS = ("camera", "zone", "track_id", "seq", "kind")
CROSSING_INTS = ("camera", "line", "track_id", "seq", "direction")
TIMES = ("ts",)
_KINDS = {k.value: k for k in ZoneEventKind}
_DIRECTIONS = {d.value: d for d in Direction}

PACK_TRACKS = 50_000
"""Tracks in one pack at most: a busy day's tracks go in a few parts, each packed in a transaction of its own."""


@dataclass(slots=True)
class Columns:
    """Rows of one kind as columns: integer columns (strings as codes into the pack's strings, -1 for None) and
    double columns (NaN with a null mask for None)."""

    ints: dict[str, npt.NDArray[np.int64]]
    floats: dict[str, npt.NDArray[np.float64]]
    nulls: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)

    def __len__(self) -> int:
        first = next(iter(self.ints.values()))
        return len(first)

    def take(self, index: npt.NDArray[np.intp]) -> Columns:
        return Columns({k: v[index] for k, v in self.ints.items()}, {k: v[index] for k, v in self.floats.items()},
                       {k: v[index] for k, v in self.nulls.items()})


@dataclass(slots=True)
class Passages:
    """What one pack holds: the strings its codes point at and its three kinds of rows, each sorted as the
    run's readers list them (segments by (track, segment); events and crossings by (seq, name, track))."""

    strings: list[str]
    segments: Columns
    events: Columns
    crossings: Columns


class _Strings:
    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def code(self, value: str | None) -> int:
        if value is None:
            return -1
        return self.codes.setdefault(value, len(self.codes))

    def table(self) -> list[str]:
        return list(self.codes)


def _ints(values: Iterable[int]) -> npt.NDArray[np.int64]:
    return np.fromiter(values, dtype=np.int64)


def _floats(values: Sequence[float | None]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    null = np.fromiter((v is None for v in values), dtype=np.bool_, count=len(values))
    return np.fromiter((0.0 if v is None else v for v in values), dtype=np.float64, count=len(values)), null


def columns_of(segments: Sequence[TrackRecord], events: Sequence[ZoneEvent], crossings: Sequence[LineCrossing]
               ) -> Passages:
    """The rows as a pack's columns (segments sorted by (track, segment), events and crossings in the readers'
    orders)."""
    s = _Strings()
    segs = sorted(segments, key=lambda t: (t.track_id, t.segment))
    seg_floats: dict[str, npt.NDArray[np.float64]] = {}
    seg_nulls: dict[str, npt.NDArray[np.bool_]] = {}
    for name in SEGMENT_FLOATS:
        seg_floats[name], seg_nulls[name] = _floats([getattr(t, name) for t in segs])
    seg_cols = Columns({
        "camera": _ints(s.code(t.camera_id) for t in segs),
        "track_id": _ints(t.track_id for t in segs),
        "segment": _ints(t.segment for t in segs),
        "first_seq": _ints(t.first_seq for t in segs),
        "last_seq": _ints(t.last_seq for t in segs),
        "frames": _ints(t.frames for t in segs),
        "identity": _ints(s.code(t.identity) for t in segs),
        "votes": _ints(t.votes for t in segs),
        "attempts": _ints(t.attempts for t in segs),
        "end_reason": _ints(s.code(t.end_reason) for t in segs),
    }, seg_floats, seg_nulls)
    evs = sorted(events, key=lambda e: (e.seq, e.zone, e.track_id, e.kind.value))
    ev_cols = Columns({
        "camera": _ints(s.code(e.camera_id) for e in evs), "zone": _ints(s.code(e.zone) for e in evs),
        "track_id": _ints(e.track_id for e in evs), "seq": _ints(e.seq for e in evs),
        "kind": _ints(s.code(e.kind.value) for e in evs),
    }, {"ts": np.fromiter((e.ts for e in evs), dtype=np.float64, count=len(evs))})
    crs = sorted(crossings, key=lambda c: (c.seq, c.line, c.track_id))
    cr_cols = Columns({
        "camera": _ints(s.code(c.camera_id) for c in crs), "line": _ints(s.code(c.line) for c in crs),
        "track_id": _ints(c.track_id for c in crs), "seq": _ints(c.seq for c in crs),
        "direction": _ints(s.code(c.direction.value) for c in crs),
    }, {"ts": np.fromiter((c.ts for c in crs), dtype=np.float64, count=len(crs))})
    return Passages(s.table(), seg_cols, ev_cols, cr_cols)


def open_visits(events: Iterable[ZoneEvent]) -> int:
    """The visits the events leave open (an entry without its exit), paired per (zone, track) in ``seq`` order,
    as the rollups pair them (``genesis.services.rollups.zone_visits``)."""
    ordered = sorted(events, key=lambda e: (e.zone, e.track_id, e.seq, e.kind.value == "exit"))
    return len(pair_visits(((e.zone, e.track_id), e.kind.value == "enter", e.ts) for e in ordered)[1])


def pack_row(segments: Sequence[TrackRecord], events: Sequence[ZoneEvent], crossings: Sequence[LineCrossing],
             absolute: Callable[[float], float]) -> dict[str, Any]:
    """The columns of a ``passage_packs`` row holding these rows (at least one segment), but its key (run, day,
    first track): ``absolute`` turns a row's time into epoch seconds (the run's start added for a file's run)."""
    times = [absolute(v) for t in segments for v in (t.first_ts, t.last_ts)]
    times += [absolute(e.ts) for e in events] + [absolute(x.ts) for x in crossings]
    passages = columns_of(segments, events, crossings)
    ids = sorted({t.track_id for t in segments})
    return {"last_track": ids[-1], "first_ts": min(times), "last_ts": max(times), "tracks": len(ids),
            "segments": len(segments), "zone_events": len(events), "crossings": len(crossings),
            "open_visits": open_visits(events), "data": encode(passages), "zones": zones_of(passages)}


def _shuffled(a: npt.NDArray[Any]) -> bytes:
    """A column's 8-byte values grouped by byte position (`genesis.adapters.db.shuffle`): values of one day share
    their high bytes, which zlib then takes for almost nothing."""
    return shuffled(a.astype("<u8" if a.dtype.kind in "iu" else "<f8"))


def _unshuffled(raw: bytes, n: int, dtype: str) -> npt.NDArray[Any]:
    out = unshuffled(raw, np.dtype(dtype))
    if len(out) != n:
        raise ValueError(f"a packed column of {len(out)} values, expected {n}")
    return out


def encode(p: Passages) -> bytes:
    """The pack's ``data``: a header (magic, header length, JSON: version, strings, counts) and zlib of every
    column in a fixed order, integers delta-coded, each column's bytes shuffled."""
    body: list[bytes] = []
    for cols, ints, floats in ((p.segments, SEGMENT_INTS, SEGMENT_FLOATS), (p.events, EVENT_INTS, TIMES),
                               (p.crossings, CROSSING_INTS, TIMES)):
        for name in ints:
            a = cols.ints[name]
            body.append(_shuffled(np.diff(a, prepend=np.int64(0)) if len(a) else a))
        for name in floats:
            body.append(_shuffled(cols.floats[name]))
            if name in cols.nulls:
                body.append(np.packbits(cols.nulls[name]).tobytes())
    head = json.dumps({"v": VERSION, "strings": p.strings,
                       "n": [len(p.segments), len(p.events), len(p.crossings)]}).encode()
    return _HEAD.pack(_MAGIC, len(head)) + head + zlib.compress(b"".join(body), 6)


def decode(data: bytes) -> Passages:
    magic, length = _HEAD.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not a passage pack")
    head = json.loads(data[_HEAD.size:_HEAD.size + length])
    if head["v"] != VERSION:
        raise ValueError(f"passage pack version {head['v']} is not known to this Genesis")
    raw = zlib.decompress(data[_HEAD.size + length:])
    at = 0

    def take(size: int) -> bytes:
        nonlocal at
        at += size
        return raw[at - size:at]

    out: list[Columns] = []
    for n, ints, floats, nullable in ((head["n"][0], SEGMENT_INTS, SEGMENT_FLOATS, True),
                                      (head["n"][1], EVENT_INTS, TIMES, False),
                                      (head["n"][2], CROSSING_INTS, TIMES, False)):
        cols = Columns({}, {}, {})
        for name in ints:
            cols.ints[name] = np.cumsum(_unshuffled(take(8 * n), n, "<i8")).astype(np.int64)
        for name in floats:
            cols.floats[name] = _unshuffled(take(8 * n), n, "<f8")
            if nullable:
                cols.nulls[name] = np.unpackbits(np.frombuffer(take((n + 7) // 8), dtype=np.uint8),
                                                 count=n).astype(np.bool_)
        out.append(cols)
    return Passages(list(head["strings"]), *out)


def _text(strings: list[str], code: int) -> str | None:
    return None if code < 0 else strings[code]


def track_records(p: Passages, index: npt.NDArray[np.intp] | None = None) -> list[TrackRecord]:
    c = p.segments if index is None else p.segments.take(index)
    st = p.strings
    f, nl = c.floats, c.nulls
    return [
        TrackRecord(camera_id=st[cam], track_id=tid, first_seq=fs, last_seq=ls, first_ts=ft, last_ts=lt, frames=fr,
                    identity=_text(st, ide), votes=vo, attempts=at, best_distance=None if bn else bd,
                    segment=seg, named_ts=None if nn else nt, end_reason=_text(st, er))
        for cam, tid, seg, fs, ls, fr, ide, vo, at, er, ft, lt, bd, bn, nt, nn in zip(
            *(c.ints[k].tolist() for k in SEGMENT_INTS), f["first_ts"].tolist(), f["last_ts"].tolist(),
            f["best_distance"].tolist(), nl["best_distance"].tolist(), f["named_ts"].tolist(),
            nl["named_ts"].tolist(), strict=True)
    ]


def zone_events(p: Passages, track_ids: Collection[int] | None = None) -> list[ZoneEvent]:
    c = p.events if track_ids is None else p.events.take(_of(p.events, track_ids))
    st = p.strings
    return [ZoneEvent(camera_id=st[cam], zone=st[z], track_id=tid, kind=_KINDS[st[k]], seq=seq, ts=ts)
            for cam, z, tid, seq, k, ts in zip(*(c.ints[k].tolist() for k in EVENT_INTS), c.floats["ts"].tolist(),
                                               strict=True)]


def crossings(p: Passages, track_ids: Collection[int] | None = None) -> list[LineCrossing]:
    c = p.crossings if track_ids is None else p.crossings.take(_of(p.crossings, track_ids))
    st = p.strings
    return [LineCrossing(camera_id=st[cam], line=st[ln], track_id=tid, direction=_DIRECTIONS[st[d]], seq=seq, ts=ts)
            for cam, ln, tid, seq, d, ts in zip(*(c.ints[k].tolist() for k in CROSSING_INTS),
                                                c.floats["ts"].tolist(), strict=True)]


def _of(cols: Columns, track_ids: Collection[int]) -> npt.NDArray[np.intp]:
    return np.flatnonzero(np.isin(cols.ints["track_id"], np.fromiter(track_ids, dtype=np.int64)))


def segments_of(p: Passages, track_ids: Collection[int] | None = None) -> list[TrackRecord]:
    return track_records(p, None if track_ids is None else _of(p.segments, track_ids))


# -- reads ------------------------------------------------------------------------------------------------------


Decoded = dict[tuple[str, int, int], Passages]
"""Packs decoded by one reader, by (run, day, first track): a page that counts then lists decodes each once."""


ZONE_SEP = SEP
"""Separates the zone names of ``passage_packs.zones`` (a names column: `genesis.adapters.db.names_column`)."""


def zones_of(p: Passages) -> str:
    """``passage_packs.zones`` of a pack: the names of its events' zones (:func:`joined`)."""
    return joined([p.strings[c] for c in sorted(set(p.events.ints["zone"].tolist()))])


def holding_zone(zone: str) -> Any:
    """SQL: the packs with events of ``zone``."""
    return holding(PassagePack.zones, zone)


def _packs_query(run_id: str, track_ids: Collection[int] | None = None, since: float | None = None,
                 zone: str | None = None, from_day: int | None = None) -> Any:
    """SELECT (first track, day, data) of the run's packs in track order: those that may hold ``track_ids`` (not
    empty), those with a row at or after the absolute time ``since``, those with events of ``zone``, those of UTC
    day ``from_day`` or later, for each one given."""
    q = select(PassagePack.first_track, PassagePack.day, PassagePack.data).where(PassagePack.run_id == run_id)
    if track_ids is not None:
        q = q.where(PassagePack.last_track >= min(track_ids), PassagePack.first_track <= max(track_ids))
    if since is not None:
        q = q.where(PassagePack.last_ts >= since)
    if zone is not None:  # a track's events are in its segments' pack
        q = q.where(holding_zone(zone))
    if from_day is not None:
        q = q.where(PassagePack.day >= from_day)
    return q.order_by(PassagePack.first_track, PassagePack.day)


def run_packs(conn: Connection, run_id: str, track_ids: Collection[int] | None = None,
              since: float | None = None, cache: Decoded | None = None, zone: str | None = None
              ) -> Iterator[Passages]:
    """The run's packs in track order (those that may hold ``track_ids``, when given; those with a row at or after
    the absolute time ``since``, when given; those with events of ``zone``, when given), decoded one at a time
    (once per ``cache``)."""
    if track_ids is not None and not track_ids:
        return
    q = _packs_query(run_id, track_ids, since, zone)
    if cache is None:
        for data in conn.execute(q.with_only_columns(PassagePack.data)).scalars():
            yield decode(bytes(data))
        return
    # the keys first: a pack this reader decoded already is not read again
    for first, day in conn.execute(q.with_only_columns(PassagePack.first_track, PassagePack.day)).all():
        yield pack_at(conn, run_id, int(day), int(first), cache)


def keyed_packs(conn: Connection, run_id: str, track_ids: Collection[int], from_day: int
                ) -> list[tuple[int, int, Passages]]:
    """(day, first track, pack) of the run's packs of UTC day ``from_day`` or later that may hold ``track_ids``."""
    if not track_ids:
        return []
    return [(int(day), int(first), decode(bytes(data)))
            for first, day, data in conn.execute(_packs_query(run_id, track_ids, from_day=from_day))]


def pack_at(conn: Connection, run_id: str, day: int, first: int, cache: Decoded | None) -> Passages:
    """The pack of that key, read and decoded (once per ``cache``, when given)."""
    key = (run_id, day, first)
    if cache is None or key not in cache:
        p = decode(bytes(conn.execute(select(PassagePack.data).where(
            PassagePack.run_id == run_id, PassagePack.day == day, PassagePack.first_track == first)).scalar_one()))
        if cache is None:
            return p
        cache[key] = p
    return cache[key]


def zone_tracks(p: Passages, zone: str) -> set[int]:
    """The tracks of the pack that entered or left ``zone``."""
    if zone not in p.strings:
        return set()
    ev = p.events.ints
    return set(ev["track_id"][ev["zone"] == p.strings.index(zone)].tolist())


def packed_runs(conn: Connection, run_ids: Collection[str]) -> set[str]:
    """Those of ``run_ids`` that have packed passages."""
    if not run_ids:
        return set()
    return {str(r) for r in conn.execute(select(PassagePack.run_id).where(
        PassagePack.run_id.in_(sorted(run_ids))).distinct()).scalars()}


@dataclass(frozen=True, slots=True)
class SegmentFilter:
    """What the API's track list asks of a segment besides its run (``genesis.adapters.db.events.EventFilter``):
    a name, a track, a zone entered or left, media times (``last_ts >= ts_from``, ``first_ts <= ts_to``)."""

    identity: str | None = None
    track: int | None = None
    zone: str | None = None
    ts_from: float | None = None
    ts_to: float | None = None
    since: float | None = None
    """An absolute time no kept segment ended before (``ts_from`` when it is an epoch time): packs that ended
    before it are not read."""


def matching(p: Passages, f: SegmentFilter) -> npt.NDArray[np.intp]:
    """The pack's segments (indices, in (track, segment) order) that ``f`` keeps."""
    c = p.segments
    keep = np.ones(len(c), dtype=np.bool_)
    if f.identity is not None:
        code = p.strings.index(f.identity) if f.identity in p.strings else None
        keep &= c.ints["identity"] == (-2 if code is None else code)
    if f.track is not None:
        keep &= c.ints["track_id"] == f.track
    if f.zone is not None:
        code = p.strings.index(f.zone) if f.zone in p.strings else None
        tracks = p.events.ints["track_id"][p.events.ints["zone"] == code] if code is not None else np.empty(0, np.int64)
        keep &= np.isin(c.ints["track_id"], tracks)
    if f.ts_from is not None:
        keep &= c.floats["last_ts"] >= f.ts_from
    if f.ts_to is not None:
        keep &= c.floats["first_ts"] <= f.ts_to
    return np.flatnonzero(keep)


def listing_count(conn: Connection, run_id: str, f: SegmentFilter, cap: int, cache: Decoded | None = None) -> int:
    """How many packed segments of the run ``f`` keeps, counted up to ``cap`` (a filter on nothing but the run is
    summed from the packs' counts, without unpacking them)."""
    if f == SegmentFilter():
        total = sum(int(n) for n in conn.execute(select(PassagePack.segments).where(
            PassagePack.run_id == run_id)).scalars())
        return min(total, cap)
    n = 0
    for p in run_packs(conn, run_id, None if f.track is None else [f.track], f.since, cache, zone=f.zone):
        n += len(matching(p, f))
        if n >= cap:
            return cap
    return n


def listing_rows(conn: Connection, run_id: str, f: SegmentFilter, cache: Decoded | None = None
                 ) -> Iterator[TrackRecord]:
    """The packed segments of the run that ``f`` keeps, in (track, segment) order: the packs (whose tracks may
    overlap: a day's faced tracks are packed later, in a part of their own) are decoded lazily, in order of their
    first track, and merged; rows are made a few at a time, as the page takes them."""
    q = _packs_query(run_id, None if f.track is None else [f.track], f.since, f.zone)
    # the keys only: each pack is read when the merge reaches it (a first page reads the first packs)
    packs = [(int(first), int(day)) for first, day in conn.execute(
        q.with_only_columns(PassagePack.first_track, PassagePack.day))]
    heap: list[tuple[int, int, int, TrackRecord, Iterator[TrackRecord]]] = []

    def push(j: int, rows: Iterator[TrackRecord]) -> None:
        row = next(rows, None)
        if row is not None:
            heapq.heappush(heap, (row.track_id, row.segment, j, row, rows))

    i = 0
    while True:
        # a pack not yet decoded holds no track below its first: the heap's least row comes first unless it does
        while i < len(packs) and (not heap or packs[i][0] <= heap[0][0]):
            p = pack_at(conn, run_id, packs[i][1], packs[i][0], cache)
            push(i, _lazy_records(p, matching(p, f)))
            i += 1
        if not heap:
            return
        _, _, j, row, rows = heapq.heappop(heap)
        yield row
        push(j, rows)


def _lazy_records(p: Passages, index: npt.NDArray[np.intp], chunk: int = 256) -> Iterator[TrackRecord]:
    for at in range(0, len(index), chunk):
        yield from track_records(p, index[at:at + chunk])
