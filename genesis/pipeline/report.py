"""``report.json``: what a run saw (``results``, built from the stored rows only) and how it ran (``run``).

``results`` is a pure function of the stored tracks and events, so the embedded run, the
distributed pipeline and ``genesis report`` all give the same dictionary for the same rows.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from genesis.adapters.db import IdentityPassages, Repository, RunRecord, TrackRecord
from genesis.adapters.db.alerts import AlertStore, alert_results
from genesis.adapters.db.repository import segment_at, segment_index
from genesis.config import CameraConfig
from genesis.domain import UNKNOWN, Direction, LineCrossing, ZoneEvent, ZoneEventKind
from genesis.domain.stats import nearest_rank, pair_visits


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def visits(events: list[ZoneEvent]) -> list[tuple[str, int, float, float]]:
    """(zone, track, enter_ts, exit_ts) for each closed visit, in event order."""
    closed, _ = pair_visits(((e.zone, e.track_id), e.kind == ZoneEventKind.ENTER, e.ts) for e in events)
    return [(zone, tid, a, b) for (zone, tid), a, b in closed]


SegmentIndex = dict[int, list[TrackRecord]]


def identity_pieces(index: SegmentIndex, track_id: int, a: float, b: float) -> list[tuple[str, float]]:
    """The named parts of ``track_id``'s stay from ``a`` to ``b``: (identity, seconds) per segment it
    overlaps (a segment holds the time from its first sighting to the next segment's first)."""
    segments = index.get(int(track_id), [])
    out = []
    for i, t in enumerate(segments):
        start = t.first_ts if i > 0 else float("-inf")
        end = segments[i + 1].first_ts if i + 1 < len(segments) else float("inf")
        if t.identity is None:
            continue
        if a == b:
            if start <= a < end:
                out.append((t.identity, 0.0))
        elif min(b, end) > max(a, start):
            out.append((t.identity, min(b, end) - max(a, start)))
    return out


def _zone_results(
    camera: CameraConfig, events: list[ZoneEvent], index: SegmentIndex, duration: float
) -> list[dict[str, Any]]:
    by_zone: dict[str, list[ZoneEvent]] = defaultdict(list)
    for e in events:
        by_zone[e.zone].append(e)
    closed: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for z, tid, a, b in visits(events):
        closed[z].append((tid, a, b))
    zones: list[dict[str, Any]] = []
    for zone in camera.zones:
        zev = by_zone.get(zone.name, [])
        occupancy = peak = 0
        for e in zev:
            occupancy += 1 if e.kind == ZoneEventKind.ENTER else -1
            peak = max(peak, occupancy)
        dwell = [b - a for _, a, b in closed.get(zone.name, [])]
        per_identity: dict[str, list[float]] = defaultdict(list)
        for tid, a, b in closed.get(zone.name, []):
            for name, seconds in identity_pieces(index, tid, a, b):
                per_identity[name].append(seconds)
        by_identity = {
            name: {
                "visits": len(d),
                "dwell_s": _r(sum(d)),
                "mean_dwell_s": _r(sum(d) / len(d)),
                "max_dwell_s": _r(max(d)),
            }
            for name, d in per_identity.items()
        }
        zones.append(
            {
                "name": zone.name,
                "restricted": zone.restricted,
                "max_occupancy": zone.max_occupancy,
                "entries": sum(1 for e in zev if e.kind == ZoneEventKind.ENTER),
                "exits": sum(1 for e in zev if e.kind == ZoneEventKind.EXIT),
                "peak_occupancy": peak,
                "mean_occupancy": _r(sum(dwell) / duration if duration > 0 else 0.0),
                "dwell_s": {
                    "visits": len(dwell),
                    "mean": _r(sum(dwell) / len(dwell)) if dwell else 0.0,
                    "p95": _r(nearest_rank(dwell, 95)),
                    "max": _r(max(dwell)) if dwell else 0.0,
                },
                "by_identity": dict(sorted(by_identity.items())),
            }
        )
    return zones


def _line_results(camera: CameraConfig, crossings: list[LineCrossing], index: SegmentIndex) -> list[dict[str, Any]]:
    by_line: dict[str, list[LineCrossing]] = defaultdict(list)
    for c in crossings:
        by_line[c.line].append(c)
    lines: list[dict[str, Any]] = []
    for line in camera.lines:
        lc = by_line.get(line.name, [])
        by_identity: dict[str, dict[str, int]] = {}
        for c in lc:
            seg = segment_at(index, c.track_id, c.seq)
            name = seg.identity if seg is not None else None
            if name is not None:
                entry = by_identity.setdefault(name, {"in": 0, "out": 0})
                entry[c.direction.value] += 1
        lines.append(
            {
                "name": line.name,
                "in_name": line.in_name,
                "out_name": line.out_name,
                "in": sum(1 for c in lc if c.direction == Direction.IN),
                "out": sum(1 for c in lc if c.direction == Direction.OUT),
                "by_identity": dict(sorted(by_identity.items())),
            }
        )
    return lines


def _track_results(tracks: list[TrackRecord]) -> list[dict[str, Any]]:
    """One entry per identity segment (``segment`` 0, 1, ... of a track; ``end``: why it ended)."""
    return [
        {
            "track_id": t.track_id,
            "segment": t.segment,
            "first_seen": _r(t.first_ts),
            "last_seen": _r(t.last_ts),
            "frames": t.frames,
            "identity": t.identity or UNKNOWN,
            "votes": t.votes,
            "attempts": t.attempts,
            "distance": None if t.best_distance is None else _r(t.best_distance, 4),
            "named_at": None if t.named_ts is None else _r(t.named_ts),
            "end": t.end_reason,
        }
        for t in tracks
    ]


TIMELINE_MAX = 200
"""Events kept in an identity's ``timeline`` (the first ones; ``timeline_truncated`` says so)."""


def _timelines(
    camera: CameraConfig, index: SegmentIndex, events: list[ZoneEvent], crossings: list[LineCrossing]
) -> dict[str, list[dict[str, Any]]]:
    """Where each person went, in time order: the zone entries and exits and the line crossings (by direction
    name) of the track segments that carry a name, by name. One pass over the events, whatever the number of
    identities (a pass per identity made a busy day's report with hundreds of names quadratic)."""
    names = {ln.name: (ln.in_name, ln.out_name) for ln in camera.lines}
    items: dict[str, list[tuple[float, int, int, dict[str, Any]]]] = defaultdict(list)
    for e in events:
        seg = segment_at(index, e.track_id, e.seq)
        if seg is not None and seg.identity:
            items[seg.identity].append((e.ts, e.seq, e.track_id, {
                "t": _r(e.ts), "track": e.track_id, "zone": e.zone, "event": e.kind.value}))
    for c in crossings:
        seg = segment_at(index, c.track_id, c.seq)
        if seg is not None and seg.identity:
            in_name, out_name = names.get(c.line, ("in", "out"))
            items[seg.identity].append((c.ts, c.seq, c.track_id, {
                "t": _r(c.ts), "track": c.track_id, "line": c.line, "event": "cross",
                "direction": c.direction.value, "direction_name": in_name if c.direction == Direction.IN else out_name,
            }))
    return {name: [x[3] for x in sorted(found, key=lambda x: (x[0], x[1], x[2]))] for name, found in items.items()}


def _identity_results(
    camera: CameraConfig,
    tracks: list[TrackRecord],
    zones: list[dict[str, Any]],
    lines: list[dict[str, Any]],
    events: list[ZoneEvent],
    crossings: list[LineCrossing],
    index: SegmentIndex,
) -> list[dict[str, Any]]:
    """Per recognised identity (over the track segments that carry its name): presence, visits and
    dwell per zone, crossings per line, and a timeline."""
    per: dict[str, list[TrackRecord]] = defaultdict(list)
    for t in tracks:
        if t.identity:
            per[t.identity].append(t)
    timelines = _timelines(camera, index, events, crossings)
    out = []
    for name in sorted(per):
        ts = per[name]
        zone_stats = {z["name"]: z["by_identity"][name] for z in zones if name in z["by_identity"]}
        line_stats = {ln["name"]: ln["by_identity"][name] for ln in lines if name in ln["by_identity"]}
        timeline = timelines.get(name, [])
        out.append(
            {
                "name": name,
                "tracks": sorted({t.track_id for t in ts}),
                "segments": [[t.track_id, t.segment] for t in ts],
                "first_seen": _r(min(t.first_ts for t in ts)),
                "last_seen": _r(max(t.last_ts for t in ts)),
                "seen_s": _r(sum(t.last_ts - t.first_ts for t in ts)),
                "sightings": sum(t.frames for t in ts),
                "visits": sum(int(z["visits"]) for z in zone_stats.values()),
                "dwell_s": _r(sum(float(z["dwell_s"]) for z in zone_stats.values())),
                "crossings": {
                    "in": sum(int(c["in"]) for c in line_stats.values()),
                    "out": sum(int(c["out"]) for c in line_stats.values()),
                },
                "zones": zone_stats,
                "lines": line_stats,
                "timeline": timeline[:TIMELINE_MAX],
                "timeline_truncated": len(timeline) > TIMELINE_MAX,
            }
        )
    return out


def build_results(repo: Repository, run: RunRecord, camera: CameraConfig) -> dict[str, Any]:
    tracks = repo.tracks(run.run_id)
    events = repo.zone_events(run.run_id)
    crossings = repo.line_crossings(run.run_id)
    meta = run.meta
    frames = int(meta.get("frames", run.frames))
    interval = float(meta.get("frame_interval_s", 0.0))
    duration = float(meta.get("last_ts", 0.0)) - float(meta.get("first_ts", 0.0)) + interval if frames else 0.0
    index = segment_index(tracks)
    zones = _zone_results(camera, events, index, duration)
    lines = _line_results(camera, crossings, index)
    identities = _identity_results(camera, tracks, zones, lines, events, crossings, index)
    return {
        "camera": run.camera_id,
        "frames": frames,
        "duration_s": _r(duration),
        "people": {
            "tracks": len(index),
            "segments": len(tracks),
            "peak_in_frame": int(meta.get("peak_in_frame", 0)),  # counted live: no per-frame row is stored
            "recognised_tracks": len({t.track_id for t in tracks if t.identity}),
            "recognised_segments": sum(1 for t in tracks if t.identity),
            "identities": len(identities),
        },
        "identities": identities,
        "tracks": _track_results(tracks),
        "zones": zones,
        "lines": lines,
        "alerts": alert_results(AlertStore(repo.engine), run.run_id),
    }


def identity_entry(repo: Repository, run: RunRecord, camera: CameraConfig, name: str) -> dict[str, Any] | None:
    """``build_results(...)["identities"]``' entry of ``name`` (None when no segment of the run carries it), read
    from the tracks that carry the name and their events only: an identity's page reads a few rows of each of its
    runs instead of every segment and event of a busy day. The entry depends on those rows alone (a visit is
    paired per track and zone, a crossing and a timeline event are named by their own track's segments)."""
    rows = repo.identity_rows([run.run_id], name).get(run.run_id)
    return None if rows is None else entry_of(camera, name, rows)


def entry_of(camera: CameraConfig, name: str, rows: IdentityPassages) -> dict[str, Any] | None:
    """The identity's entry from its tracks' rows of one run (`Repository.identity_rows`): what
    :func:`identity_entry` gives, for a page that read the rows of all its runs at once."""
    index = segment_index(rows.tracks)
    zones = _zone_results(camera, rows.zone_events, index, 0.0)  # the by-identity figures do not use the duration
    lines = _line_results(camera, rows.crossings, index)
    found = [i for i in _identity_results(camera, rows.tracks, zones, lines, rows.zone_events, rows.crossings, index)
             if i["name"] == name]
    return found[0] if found else None


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file and rename: a reader never sees a half-written file, and a failed
    write (a full disk) leaves neither the file nor its temporary behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, through :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8"))
