"""Synthetic raw rows for the rollup and retention tests, and what their rollups must be,
computed here independently (plain loops over the generated rows, no Genesis code).

Two runs of camera ``gate``: a live run (``ts`` = epoch seconds) over three hours, and a file
run (``ts`` = seconds into the video) started inside that span. Tracks walk in and out of
zone ``hall`` (some visit it twice), cross line ``door`` both ways, and some are recognised.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from genesis.adapters.db import Repository, TrackRecord
from genesis.adapters.db.tables import Run
from genesis.config.pipeline import PathConfig
from genesis.domain import Direction, LineCrossing, PathPoint, RecognitionAttempt, Sighting, ZoneEvent, ZoneEventKind
from genesis.stages.path import PathSampler

CAMERA = "gate"
SIZES = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass
class Raw:
    """Every generated row with its absolute time."""

    sightings: list[tuple[str, int, float]] = field(default_factory=list)  # run, track, t
    points: list[tuple[str, int, float, int]] = field(default_factory=list)  # run, track, t, frames (stored)
    events: list[tuple[str, str, int, str, float]] = field(default_factory=list)  # run, zone, track, kind, t
    crossings: list[tuple[str, str, int, str, float]] = field(default_factory=list)  # run, line, track, dir, t
    identity: dict[tuple[str, int], str] = field(default_factory=dict)
    visits: list[tuple[str, int, float, float]] = field(default_factory=list)  # run, track, enter, exit
    attempts: list[tuple[str, int, float, str | None]] = field(default_factory=list)  # run, track, t, name


def backdate(repo: Repository, run_id: str, started_at: float, finished_at: float | None) -> None:
    """Runs start "now" in the Repository; the tests need them in the past."""
    with repo.engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(
            started_at=datetime.fromtimestamp(started_at, UTC),
            finished_at=None if finished_at is None else datetime.fromtimestamp(finished_at, UTC),
        ))


def _store_run(repo: Repository, raw: Raw, run_id: str, origin: float, start_abs: float, tracks: int,
               span_s: float, rng: random.Random, names: dict[int, str]) -> None:
    """One run: ``origin`` is what is added to ``ts`` to get the absolute time (0 for live)."""
    repo.start_run(run_id, CAMERA, "synthetic", {"width": 640, "height": 360, "fps": 2.0})
    sightings: list[Sighting] = []
    events: list[ZoneEvent] = []
    crossings: list[LineCrossing] = []
    attempts: list[RecognitionAttempt] = []
    records: list[TrackRecord] = []
    for tid in range(1, tracks + 1):
        first = rng.uniform(0, span_s - 400)
        n = rng.randint(20, 700)  # 0.5 s apart: 10 s .. 350 s
        seqs = [int(first * 2) + i for i in range(n)]
        for seq in seqs:
            ts = start_abs - origin + seq / 2.0
            y = 50 + (seq % 200)
            sightings.append(Sighting(CAMERA, tid, seq, ts, (100.0, y, 140.0, y + 80.0), 0.9))
            raw.sightings.append((run_id, tid, ts + origin))
        # zone visits: one or two, inside the track's life; the second one after a gap
        visits = 1 if tid % 3 else 2
        step = max(2, n // (2 * visits + 1))
        for v in range(visits):
            a, b = seqs[min(len(seqs) - 1, (2 * v + 1) * step)], seqs[min(len(seqs) - 1, (2 * v + 2) * step)]
            if b <= a:
                continue
            ta, tb = start_abs - origin + a / 2.0, start_abs - origin + b / 2.0
            events += [ZoneEvent(CAMERA, "hall", tid, ZoneEventKind.ENTER, a, ta),
                       ZoneEvent(CAMERA, "hall", tid, ZoneEventKind.EXIT, b, tb)]
            raw.events += [(run_id, "hall", tid, "enter", ta + origin), (run_id, "hall", tid, "exit", tb + origin)]
            raw.visits.append((run_id, tid, ta + origin, tb + origin))
        for j, direction in enumerate([Direction.IN, Direction.OUT, Direction.IN][: 1 + tid % 3]):
            seq = seqs[min(len(seqs) - 1, (j + 1) * len(seqs) // 4)] + j  # distinct seqs
            ts = start_abs - origin + seq / 2.0
            crossings.append(LineCrossing(CAMERA, "door", tid, direction, seq, ts))
            raw.crossings.append((run_id, "door", tid, direction.value, ts + origin))
        name = names.get(tid)
        for seq in seqs[:: max(1, n // 3)]:
            ts = start_abs - origin + seq / 2.0
            attempts.append(RecognitionAttempt(CAMERA, tid, seq, ts, (100.0, 50.0, 140.0, 90.0), 0.8, name, 0.3))
            raw.attempts.append((run_id, tid, ts + origin, name))
        if name:
            raw.identity[(run_id, tid)] = name
        records.append(TrackRecord(CAMERA, tid, seqs[0], seqs[-1], start_abs - origin + seqs[0] / 2.0,
                                   start_abs - origin + seqs[-1] / 2.0, n, name, 3 if name else 0, 3,
                                   0.3 if name else None))
    # The trajectory points the pipeline's sampler keeps of these sightings (events and crossings mark theirs).
    marks = {(e.seq, e.track_id) for e in events} | {(c.seq, c.track_id) for c in crossings}
    sampler = PathSampler(PathConfig())
    points: list[PathPoint] = []
    for s in sorted(sightings, key=lambda s: (s.seq, s.track_id)):
        points += sampler.sample(s.ts, [s], {s.track_id} if (s.seq, s.track_id) in marks else set(), {})
    points += sampler.tail()
    raw.points += [(run_id, p.track_id, p.ts + origin, p.frames) for p in points]
    assert sum(p.frames for p in points) == len(sightings)
    for i in range(0, len(sightings), 5000):
        repo.save_outcome(run_id, sightings[i:i + 5000], [], [], [], points if i == 0 else [])
    repo.save_outcome(run_id, [], attempts, events, crossings)
    repo.save_tracks(run_id, records)


def populate(repo: Repository, t0: float, seed: int = 7) -> Raw:
    """Rows from ``t0`` (epoch, hour aligned) to about ``t0 + 3 h``."""
    rng = random.Random(seed)
    raw = Raw()
    _store_run(repo, raw, "live", 0.0, t0, 14, 3 * 3600.0, rng, {1: "alice", 2: "bob", 5: "alice"})
    repo.finish_run("live", "finished", 0, {})
    backdate(repo, "live", t0, t0 + 3 * 3600.0)
    file_start = t0 + 5400.0 + 17.0
    _store_run(repo, raw, "file", file_start, file_start, 6, 1800.0, rng, {3: "carol"})
    repo.finish_run("file", "finished", 0, {"first_ts": 0.0, "last_ts": 1800.0})
    backdate(repo, "file", file_start, file_start + 600.0)  # processed faster than real time
    return raw


def expected(raw: Raw, granularity: str) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """The rollup rows the raw rows imply, keyed like the stored ones."""
    size = SIZES[granularity]

    def b(t: float) -> datetime:
        return datetime.fromtimestamp(math.floor(t / size) * size, UTC)

    cam: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    zone: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    line: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    ident: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    ident_zone: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    tracks: dict[tuple[Any, ...], set[tuple[str, int]]] = defaultdict(set)
    for run, tid, t, n in raw.points:  # each stored point stands for ``n`` sightings, counted in its bucket
        cam[(b(t), CAMERA)]["sightings"] += n
        tracks[(b(t), CAMERA)].add((run, tid))
        name = raw.identity.get((run, tid))
        if name:
            ident[(b(t), CAMERA, name)]["sightings"] += n
            tracks[(b(t), CAMERA, name)].add((run, tid))
    for key, ts in tracks.items():
        (cam if len(key) == 2 else ident)[key]["tracks"] = len(ts)
    for key in list(cam):
        names = {k[2] for k in tracks if len(k) == 3 and k[:2] == key}
        cam[key]["identities"] = len(names)
        cam[key]["recognised_tracks"] = sum(len(tracks[(*key, n)]) for n in names)
    for run, zname, tid, kind, t in raw.events:
        field_ = "entries" if kind == "enter" else "exits"
        cam[(b(t), CAMERA)][field_] += 1
        zone[(b(t), CAMERA, zname)][field_] += 1
        name = raw.identity.get((run, tid))
        if name and kind == "enter":
            ident_zone[(b(t), CAMERA, name, zname)]["entries"] += 1
    for run, ln, tid, d, t in raw.crossings:
        cam[(b(t), CAMERA)][f"crossings_{d}"] += 1
        line[(b(t), CAMERA, ln)][f"crossings_{d}"] += 1
        name = raw.identity.get((run, tid))
        if name:
            ident[(b(t), CAMERA, name)][f"crossings_{d}"] += 1
    for run, tid, a, e in raw.visits:
        zone[(b(e), CAMERA, "hall")]["visits"] += 1
        zone[(b(e), CAMERA, "hall")]["dwell_s"] += e - a
        name = raw.identity.get((run, tid))
        if name:
            ident[(b(e), CAMERA, name)]["visits"] += 1
            ident[(b(e), CAMERA, name)]["dwell_s"] += e - a
            ident_zone[(b(e), CAMERA, name, "hall")]["visits"] += 1
            ident_zone[(b(e), CAMERA, name, "hall")]["dwell_s"] += e - a
    # occupancy, by brute force: the count of visits covering each instant where one starts
    first = math.floor(min(a for _, _, a, _ in raw.visits) / size) * size
    last = max(e for _, _, _, e in raw.visits)
    start = first
    while start <= last:
        end = start + size
        inside = [(max(a, start), min(e, end)) for _, _, a, e in raw.visits if a < end and e > start]
        if inside:
            instants = [start] + [a for a, _ in inside]
            zone[(b(start), CAMERA, "hall")]["peak_occupancy"] = max(
                sum(1 for a, e in inside if a <= t < e) for t in instants
            )
            zone[(b(start), CAMERA, "hall")]["mean_occupancy"] = sum(e - a for a, e in inside) / size
        start = end
    return {"camera": cam, "zone": zone, "line": line, "identity": ident, "identity_zone": ident_zone}


KEYS = {"camera": ("bucket", "camera_id"), "zone": ("bucket", "camera_id", "zone"),
        "line": ("bucket", "camera_id", "line"), "identity": ("bucket", "camera_id", "identity"),
        "identity_zone": ("bucket", "camera_id", "identity", "zone")}


def stored(rows: list[dict[str, Any]], kind: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in KEYS[kind]): {k: v for k, v in r.items() if k not in KEYS[kind] and k != "granularity"}
            for r in rows}


def assert_matches(stored_rows: dict[tuple[Any, ...], dict[str, Any]],
                   want: dict[tuple[Any, ...], dict[str, Any]]) -> None:
    """Same keys; each stored field equals the expected one (missing expected fields are 0)."""
    assert set(stored_rows) == set(want), (sorted(set(stored_rows) ^ set(want)))[:5]
    for key, row in stored_rows.items():
        for name, value in row.items():
            exp = want[key].get(name, 0)
            if isinstance(value, float) or isinstance(exp, float):
                assert math.isclose(value, exp, abs_tol=1e-5), (key, name, value, exp)
            else:
                assert value == exp, (key, name, value, exp)
