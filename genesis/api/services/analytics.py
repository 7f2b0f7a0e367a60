"""Occupancy series, line crossings and dwell statistics of one run, from the stored events."""

from __future__ import annotations

import statistics
from typing import Any

from genesis.adapters.db import Repository
from genesis.config import Settings
from genesis.domain import Direction, ZoneEventKind
from genesis.domain.stats import nearest_rank
from genesis.pipeline.report import visits


def occupancy(repo: Repository, run_id: str, zone: str | None, bucket_s: float | None) -> dict[str, Any]:
    """Per zone: the occupancy after each event (``points``), or the peak per ``bucket_s`` bucket."""
    events = [e for e in repo.zone_events(run_id) if zone is None or e.zone == zone]
    series: dict[str, list[tuple[float, int]]] = {}
    level: dict[str, int] = {}
    for e in sorted(events, key=lambda e: (e.ts, e.seq, e.kind.value != ZoneEventKind.EXIT.value)):
        n = level.get(e.zone, 0) + (1 if e.kind == ZoneEventKind.ENTER else -1)
        level[e.zone] = max(n, 0)
        series.setdefault(e.zone, []).append((e.ts, level[e.zone]))
    zones = []
    for name in sorted(series):
        points = series[name]
        if bucket_s:
            buckets: dict[int, int] = {}
            for ts, n in points:
                b = int(ts // bucket_s)
                buckets[b] = max(buckets.get(b, 0), n)
            out = [{"ts": b * bucket_s, "occupancy": n} for b, n in sorted(buckets.items())]
        else:
            out = [{"ts": ts, "occupancy": n} for ts, n in points]
        zones.append({"zone": name, "peak": max(n for _, n in points), "points": out})
    return {"run_id": run_id, "bucket_s": bucket_s, "zones": zones}


def crossings(repo: Repository, settings: Settings, run_id: str, camera_id: str, line: str | None) -> dict[str, Any]:
    cam = settings.camera(camera_id)
    names = {ln.name: (ln.in_name, ln.out_name) for ln in cam.lines}
    counts: dict[str, dict[str, int]] = {}
    for c in repo.line_crossings(run_id):
        if line is not None and c.line != line:
            continue
        per = counts.setdefault(c.line, {"in": 0, "out": 0})
        per["in" if c.direction == Direction.IN else "out"] += 1
    lines = []
    for name in sorted(counts):
        in_name, out_name = names.get(name, ("in", "out"))
        lines.append({"line": name, "in": counts[name]["in"], "out": counts[name]["out"],
                      "in_name": in_name, "out_name": out_name})
    return {"run_id": run_id, "lines": lines}


def dwell(repo: Repository, run_id: str, zone: str | None) -> dict[str, Any]:
    closed = [v for v in visits(repo.zone_events(run_id)) if zone is None or v[0] == zone]
    per: dict[str, list[float]] = {}
    for z, _tid, a, b in closed:
        per.setdefault(z, []).append(b - a)
    zones = []
    for name in sorted(per):
        d = sorted(per[name])
        zones.append({"zone": name, "visits": len(d), "mean_s": round(statistics.fmean(d), 3),
                      "median_s": round(statistics.median(d), 3), "p95_s": round(nearest_rank(d, 95), 3),
                      "max_s": round(d[-1], 3)})
    return {"run_id": run_id, "zones": zones}
