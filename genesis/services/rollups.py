"""Minute, hour and day rollups of the raw rows, and the retention purge.

A rollup of ``[since, until)`` at one granularity recomputes every bucket in that range from
the raw rows (sightings, zone events, line crossings, tracks) and replaces the stored rows of
those buckets in one transaction: running it again gives the same rows, and rows that arrived
late are picked up by the next run over their bucket. Buckets are UTC-aligned.

What a bucket holds (``t`` is an absolute time, see `genesis.adapters.db.analytics`):

* camera: sightings, distinct tracks, recognised tracks, distinct identities seen, zone entries
  and exits (all zones), line crossings in and out (all lines);
* zone: entries, exits, visits (closed visits whose exit falls in the bucket) and their dwell
  sum, peak occupancy and mean occupancy (occupied person-seconds / bucket length);
* line: crossings in and out;
* identity: sightings, tracks, visits and dwell (all zones), crossings in and out (all lines);
* identity x zone: entries, visits and dwell of one person in one zone.

Sums over buckets of the additive fields equal the totals of the raw rows; distinct counts
and occupancy are computed per bucket from the raw rows, never from finer rollups.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from genesis.adapters.db.analytics import AnalyticsStore, WindowRows, from_epoch
from genesis.adapters.db.partitions import ensure_ahead
from genesis.adapters.db.repository import Repository
from genesis.config import Settings
from genesis.config.alerts import AnomalyConfig
from genesis.config.rollups import Granularity
from genesis.domain.stats import pair_visits
from genesis.identities.crypto import BiometricCipher
from genesis.identities.store import IdentityStore
from genesis.identities.tracks import purge as purge_unknown_faces

BUCKET_S: dict[str, float] = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}
DAY_S = 86400.0


def align_down(t: float, granularity: str) -> float:
    size = BUCKET_S[granularity]
    return math.floor(t / size) * size


def align_up(t: float, granularity: str) -> float:
    size = BUCKET_S[granularity]
    return math.ceil(t / size) * size


@dataclass(frozen=True, slots=True)
class Visit:
    run_id: str
    zone: str
    track_id: int
    start: float
    end: float
    closed: bool


def zone_visits(events: Iterable[tuple[str, str, int, int, str, float]], open_until: dict[str, float]) -> list[Visit]:
    """Pair the enter/exit events of each (run, zone, track) in ``seq`` order into visits.

    A visit still open is kept up to ``open_until[run]`` (runs that are still going) with
    ``closed=False``; an open visit of a run without an entry there is dropped.
    """
    ordered = sorted(events, key=lambda e: (e[0], e[1], e[2], e[3], e[4] == "exit"))
    closed, opened = pair_visits(((run, zone, tid), kind == "enter", t) for run, zone, tid, _seq, kind, t in ordered)
    out = [Visit(run, zone, tid, a, b, True) for (run, zone, tid), a, b in closed]
    for (run, zone, tid), t in opened.items():
        if run in open_until and open_until[run] > t:
            out.append(Visit(run, zone, tid, t, open_until[run], False))
    return out


def occupancy_in(intervals: list[tuple[float, float]], lo: float, hi: float) -> tuple[int, float]:
    """(peak, occupied seconds) of the intervals clipped to ``[lo, hi)``."""
    edges: list[tuple[float, int]] = []
    seconds = 0.0
    for start, end in intervals:
        a, b = max(start, lo), min(end, hi)
        if b <= a:
            continue
        seconds += b - a
        edges += [(a, 1), (b, -1)]
    edges.sort()  # half-open intervals: at one instant a departure goes before an arrival
    peak = cur = 0
    for _, d in edges:
        cur += d
        peak = max(peak, cur)
    return peak, seconds


def compute_rollups(
    rows: WindowRows, granularity: str, since: float, until: float, now: float
) -> dict[str, list[dict[str, Any]]]:
    """Rollup rows (per kind) of every bucket in ``[since, until)`` from the raw rows."""
    size = BUCKET_S[granularity]

    def bucket_of(t: float) -> float:
        return math.floor(t / size) * size

    def key(t: float) -> datetime:
        return from_epoch(t)

    camera_of = {r: s.camera_id for r, s in rows.runs.items()}
    cam: dict[tuple[float, str], dict[str, Any]] = {}
    zone: dict[tuple[float, str, str], dict[str, Any]] = {}
    line: dict[tuple[float, str, str], dict[str, Any]] = {}
    ident: dict[tuple[float, str, str], dict[str, Any]] = {}
    ident_zone: dict[tuple[float, str, str, str], dict[str, Any]] = {}
    cam_tracks: dict[tuple[float, str], set[tuple[str, int]]] = defaultdict(set)
    ident_tracks: dict[tuple[float, str, str], set[tuple[str, int]]] = defaultdict(set)

    def cam_row(b: float, c: str) -> dict[str, Any]:
        return cam.setdefault((b, c), {"sightings": 0, "entries": 0, "exits": 0, "crossings_in": 0,
                                       "crossings_out": 0})

    def ident_row(b: float, c: str, name: str) -> dict[str, Any]:
        return ident.setdefault((b, c, name), {"sightings": 0, "visits": 0, "dwell_s": 0.0, "crossings_in": 0,
                                               "crossings_out": 0})

    for run, tid, b, count, name in rows.sightings:
        c = camera_of[run]
        cam_row(b, c)["sightings"] += count
        cam_tracks[(b, c)].add((run, tid))
        if name is not None:
            ident_row(b, c, name)["sightings"] += count
            ident_tracks[(b, c, name)].add((run, tid))

    for run, ln, tid, direction, t, seq in rows.crossings:
        c, b = camera_of[run], bucket_of(t)
        field = f"crossings_{direction}"
        cam_row(b, c)[field] += 1
        line.setdefault((b, c, ln), {"crossings_in": 0, "crossings_out": 0})[field] += 1
        name = rows.identity_at(run, tid, seq)
        if name is not None:
            ident_row(b, c, name)[field] += 1

    def zone_row(b: float, c: str, z: str) -> dict[str, Any]:
        return zone.setdefault((b, c, z), {"entries": 0, "exits": 0, "visits": 0, "dwell_s": 0.0,
                                           "peak_occupancy": 0, "mean_occupancy": 0.0})

    def ident_zone_row(b: float, c: str, name: str, z: str) -> dict[str, Any]:
        return ident_zone.setdefault((b, c, name, z), {"entries": 0, "visits": 0, "dwell_s": 0.0})

    for run, z, tid, seq, kind, t in rows.zone_events:
        if not since <= t < until:
            continue
        c, b = camera_of[run], bucket_of(t)
        field = "entries" if kind == "enter" else "exits"
        cam_row(b, c)[field] += 1
        zone_row(b, c, z)[field] += 1
        name = rows.identity_at(run, tid, seq)
        if name is not None and kind == "enter":
            ident_zone_row(b, c, name, z)["entries"] += 1

    open_until = {r: min(until, now) for r, s in rows.runs.items() if s.end is None}
    intervals: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for v in zone_visits(rows.zone_events, open_until):
        c = camera_of[v.run_id]
        if v.closed and since <= v.end < until:
            b = bucket_of(v.end)
            zone_row(b, c, v.zone)["visits"] += 1
            zone_row(b, c, v.zone)["dwell_s"] += v.end - v.start
            # A visit whose track changed hands counts, per identity, for the part that identity had.
            for name, a, e in rows.identity_pieces(v.run_id, v.track_id, v.start, v.end):
                ident_row(b, c, name)["visits"] += 1
                ident_row(b, c, name)["dwell_s"] += e - a
                ident_zone_row(b, c, name, v.zone)["visits"] += 1
                ident_zone_row(b, c, name, v.zone)["dwell_s"] += e - a
        if v.end >= since and v.start < until:
            intervals[(c, v.zone)].append((v.start, v.end))
    for (c, z), spans in intervals.items():
        lo = max(bucket_of(min(a for a, _ in spans)), since)
        hi = min(max(b for _, b in spans), until - 1e-9)
        b = lo
        while b <= hi:
            peak, seconds = occupancy_in(spans, b, b + size)
            if peak or seconds:
                row = zone_row(b, c, z)
                row["peak_occupancy"] = peak
                row["mean_occupancy"] = seconds / size
            b += size

    out: dict[str, list[dict[str, Any]]] = {"camera": [], "zone": [], "line": [], "identity": [], "identity_zone": []}
    for (b, c), r in sorted(cam.items()):
        names = {nm for (bb, cc, nm) in ident_tracks if bb == b and cc == c}
        out["camera"].append({"granularity": granularity, "bucket": key(b), "camera_id": c, **r,
                              "tracks": len(cam_tracks[(b, c)]),
                              "recognised_tracks": sum(len(ident_tracks[(b, c, nm)]) for nm in names),
                              "identities": len(names)})
    for (b, c, z), r in sorted(zone.items()):
        out["zone"].append({"granularity": granularity, "bucket": key(b), "camera_id": c, "zone": z, **r,
                            "dwell_s": round(r["dwell_s"], 6), "mean_occupancy": round(r["mean_occupancy"], 6)})
    for (b, c, ln), r in sorted(line.items()):
        out["line"].append({"granularity": granularity, "bucket": key(b), "camera_id": c, "line": ln, **r})
    for (b, c, nm), r in sorted(ident.items()):
        out["identity"].append({"granularity": granularity, "bucket": key(b), "camera_id": c, "identity": nm, **r,
                                "tracks": len(ident_tracks[(b, c, nm)]), "dwell_s": round(r["dwell_s"], 6)})
    for (b, c, nm, z), r in sorted(ident_zone.items()):
        out["identity_zone"].append({"granularity": granularity, "bucket": key(b), "camera_id": c, "identity": nm,
                                     "zone": z, **r, "dwell_s": round(r["dwell_s"], 6)})
    return out


@dataclass(frozen=True, slots=True)
class RollupResult:
    granularity: str
    since: datetime
    until: datetime
    rows: dict[str, int]


def rollup(
    repo: Repository, granularity: Granularity, since: float, until: float, camera_id: str | None = None,
    now: float | None = None,
) -> RollupResult:
    """(Re)build the rollups of every ``granularity`` bucket that starts in ``[since, until)``."""
    if granularity not in BUCKET_S:
        raise ValueError(f"unknown granularity {granularity!r}: use minute, hour or day")
    lo, hi = align_down(since, granularity), align_up(until, granularity)
    if hi <= lo:
        hi = lo + BUCKET_S[granularity]
    store = AnalyticsStore(repo)
    raw = store.window_rows(lo, hi, BUCKET_S[granularity], camera_id)
    rows = compute_rollups(raw, granularity, lo, hi, time.time() if now is None else now)
    store.replace_rollups(granularity, lo, hi, rows, camera_id)
    return RollupResult(granularity, from_epoch(lo), from_epoch(hi), {k: len(v) for k, v in rows.items()})


def scheduled_window(settings: Settings, granularity: Granularity, now: float) -> tuple[float, float]:
    """The buckets a scheduled rollup recomputes: the last ``recompute_buckets`` that ended
    at least ``lag_s`` ago, plus the one in progress (so dashboards see the current one)."""
    cfg = settings.rollups
    size = BUCKET_S[granularity]
    settled = align_down(now - cfg.lag_s, granularity)
    return settled - cfg.recompute_buckets * size, align_up(now, granularity)


def kept_days(settings: Settings) -> dict[str, int]:
    """Days the retention purge keeps each high-volume table's rows (`genesis.adapters.db.storage.DAY_TABLES`):
    trajectory points ``sightings_days``; recognition attempts the longer of ``sightings_days`` (those that named
    someone) and ``unknown_faces_days``; track faces ``unknown_faces_days`` (the faces of named segments stay as
    long as the name: more, where many are named); segments, zone events, crossings, their packs and alerts
    ``events_days``."""
    r = settings.retention
    return {"point_batches": r.sightings_days, "attempt_packs": max(r.sightings_days, r.unknown_faces_days),
            "track_faces": r.unknown_faces_days, "tracks": r.events_days, "zone_events": r.events_days,
            "line_crossings": r.events_days, "alerts": r.events_days, "passage_packs": r.events_days}


RETENTION_ACTOR = "retention"
"""Who the audit log names for the faces beat's retention purge deletes."""


def purge(repo: Repository, settings: Settings, now: float | None = None) -> dict[str, int]:
    """Delete what is older than its retention (settings.retention and settings.rollups): the analytics rows
    (`AnalyticsStore.purge_before`), then the faces of unrecognised track segments stored more than
    ``retention.unknown_faces_days`` ago and the unknown clusters not seen since (``genesis identities purge``'s
    work, audited when it deleted something): before, those were kept until someone ran that command, and they
    are a busy camera's largest table (an embedding and a face crop per passage) and biometric data."""
    now = time.time() if now is None else now
    r = settings.retention
    cutoffs = {
        "sightings": now - r.sightings_days * DAY_S,
        "events": now - r.events_days * DAY_S,
        "unknown_faces": now - r.unknown_faces_days * DAY_S,
        # the occupancy samples: as long as the events, and at least the longest anomaly baseline reads them
        "occupancy": now - max([r.events_days, *(c.alerts.anomaly.baseline_days for c in settings.cameras),
                                AnomalyConfig().baseline_days]) * DAY_S,
    }
    rollup_cutoffs = {g: now - settings.rollups.keep_days(g) * DAY_S for g in ("minute", "hour", "day")}  # type: ignore[arg-type]
    counts = AnalyticsStore(repo).purge_before(cutoffs, rollup_cutoffs)
    # Deleting needs no key: the store is given none, whatever GENESIS_EMBEDDING_KEY says.
    store = IdentityStore(repo, BiometricCipher([]))
    counts.update(purge_unknown_faces(store, r.unknown_faces_days, RETENTION_ACTOR, from_epoch(now),
                                      audit_nothing=False))
    return counts


def storage_upkeep(repo: Repository, settings: Settings, now: float | None = None) -> dict[str, Any]:
    """Beat's storage upkeep: the PostgreSQL day partitions of yesterday, today and the next
    ``rollups.partition_days_ahead`` days (created when missing), the heatmap grids of every hour
    that ended ``rollups.heat_merge_after_s`` ago merged into one row per run and hour, and the passages that
    ended ``retention.pack_after_days`` days ago packed (`AnalyticsStore.pack_passages`; a UTC day's tracks
    together, from the start of the UTC day ``pack_after_days`` after theirs: `RetentionConfig.pack_cutoff`)."""
    now = time.time() if now is None else now
    cfg = settings.rollups
    created = ensure_ahead(repo.engine, now, cfg.partition_days_ahead)
    store = AnalyticsStore(repo)
    merged = store.compact_heat(now - cfg.heat_merge_after_s)
    cutoff = settings.retention.pack_cutoff(now)
    packed = {} if cutoff is None else store.pack_passages(cutoff)
    return {"partitions_created": created, "heat_rows_merged": merged, "passages_packed": packed}
