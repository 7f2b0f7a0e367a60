"""Passages, not frames (issue 21): the trajectory sampler, the hourly heatmap grids, the day partitions
of PostgreSQL and migration 0010 from a database made by the per-frame code, on both databases."""

from __future__ import annotations

import itertools
import json
import logging
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from genesis.adapters.db import Repository
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.db.partitions import day_of, partition_name, partitions
from genesis.config import load_settings
from genesis.config.pipeline import PathConfig
from genesis.domain import PathPoint, Sighting
from genesis.domain.heat import count_feet
from genesis.services.heatmap import grid_image, heatmap_image
from genesis.services.rollups import purge, storage_upkeep
from genesis.stages.path import FORGET_S, PathSampler
from tests.analytics_data import backdate
from tests.unit.adapters.test_repository import db_url  # noqa: F401  (the sqlite + postgresql fixture)

W, H = 640, 360


def walk(n_tracks: int, frames: int, fps: float = 5.0, seed: int = 3) -> list[list[Sighting]]:
    """Frames of people walking with a turn half way and some jitter; tracks start and end at different
    frames."""
    rng = np.random.default_rng(seed)
    out: list[list[Sighting]] = []
    starts = rng.integers(0, frames // 2, n_tracks)
    lives = rng.integers(frames // 4, frames, n_tracks)
    for f in range(frames):
        here = []
        for tid in range(n_tracks):
            age = f - int(starts[tid])
            if age < 0 or age >= int(lives[tid]):
                continue
            x = 40 + 6 * min(age, 30) + rng.normal(0, 1.0)
            y = 300 - 4 * max(0, age - 30) + rng.normal(0, 1.0)
            here.append(Sighting("cam", tid + 1, f, f / fps, (x - 15, y - 90, x + 15, y), 0.8))
        out.append(here)
    return out


def sample_all(frames: list[list[Sighting]], config: PathConfig | None = None,
               marks: dict[int, set[int]] | None = None) -> list[PathPoint]:
    sampler = PathSampler(config or PathConfig())
    points: list[PathPoint] = []
    for i, here in enumerate(frames):
        ts = here[0].ts if here else i / 5.0
        points += sampler.sample(ts, here, (marks or {}).get(i, set()), {})
    return points + sampler.tail()


def test_sampler_keeps_first_last_events_turns_and_at_most_one_point_a_second() -> None:
    frames = walk(6, 150)
    sightings = [s for f in frames for s in f]
    marks = {70: {2}}  # a zone event of track 2 at frame 70
    points = sample_all(frames, marks=marks)
    by_track: dict[int, list[PathPoint]] = {}
    for p in points:
        by_track.setdefault(p.track_id, []).append(p)
    for tid, pts in by_track.items():
        seen = [s for s in sightings if s.track_id == tid]
        assert pts[0].seq == seen[0].seq and pts[-1].seq == seen[-1].seq  # entry and exit
        assert sum(p.frames for p in pts) == len(seen)  # every sighting stood for, once
        assert len(pts) < len(seen) / 2
    assert any(p.track_id == 2 and p.seq == 70 for p in points)
    # time-sampled points: never two closer than a second unless an event, a turn or the exit made them
    no_turns = sample_all(frames, PathConfig(turn_deg=180))
    for pts in [[p for p in no_turns if p.track_id == t] for t in by_track]:
        gaps = [b.ts - a.ts for a, b in itertools.pairwise(pts[:-1])]
        assert all(g >= 1.0 - 1e-9 for g in gaps)


def test_sampler_keeps_a_point_where_the_direction_changes() -> None:
    """Right for 20 frames, then up: with time sampling out of the way (10 s), the points are the entry, one
    just after the turn (once the new leg is 16 px long) and the exit; a jitter of 1 px keeps nothing."""
    rng = np.random.default_rng(1)
    frames = []
    for f in range(40):
        x, y = (100 + 8 * min(f, 20), 300 - 8 * max(0, f - 20))
        x, y = x + rng.normal(0, 1.0), y + rng.normal(0, 1.0)
        frames.append([Sighting("cam", 1, f, f / 5.0, (x - 10, y - 60, x + 10, y), 0.9)])
    points = sample_all(frames, PathConfig(interval_s=10.0))
    assert points[0].seq == 0 and points[-1].seq == 39
    turns = [p.seq for p in points[1:-1]]
    assert turns and 21 <= turns[0] <= 23 and len(turns) <= 2, turns
    assert sum(p.frames for p in points) == 40


def test_sampler_state_survives_export_and_forgets_gone_tracks() -> None:
    frames = walk(4, 80)
    a, b = PathSampler(PathConfig()), PathSampler(PathConfig())
    got_a: list[PathPoint] = []
    got_b: list[PathPoint] = []
    for i, here in enumerate(frames):
        got_a += a.sample(i / 5.0, here, set(), {})
        b.import_state(json.loads(json.dumps(b.export_state())))  # as the distributed sequencer does per pass
        got_b += b.sample(i / 5.0, here, set(), {})
    assert got_a == got_b
    later = a.sample(80 / 5.0 + FORGET_S + 1, [], set(), {})  # nobody for longer than FORGET_S
    assert {p.track_id for p in later} <= {s.track_id for f in frames for s in f} and a.tracks == {}
    assert a.tail() == []


def test_heatmap_from_stored_grids_is_the_image_of_every_foot_point(tmp_path: Path) -> None:
    """Batches across an hour boundary, a retried batch, grids merged by the upkeep: the image drawn
    from the stored grids against the one drawn from every box (per-pixel correlation >= 0.99)."""
    frames = walk(12, 300)
    t0 = datetime(2026, 3, 2, 9, 59, 30, tzinfo=UTC).timestamp()  # a live camera: epoch times
    frames = [[Sighting(s.camera_id, s.track_id, s.seq, t0 + s.ts, s.box, s.score) for s in f] for f in frames]
    with Repository(f"sqlite:///{tmp_path / 'g.db'}") as repo:
        repo.start_run("r", "cam", "rtsp://x", {"width": W, "height": H})
        for i in range(0, len(frames), 25):
            batch = [s for f in frames[i:i + 25] for s in f]
            repo.save_outcome("r", batch, [], [], [], cell_px=8)
            if i == 50:
                repo.save_outcome("r", batch, [], [], [], cell_px=8)  # redelivered: adds nothing
        store = AnalyticsStore(repo)
        boxes = [s.box for f in frames for s in f]
        want, n = heatmap_image(boxes, None, W, H, 8)
        heat = store.heat_grid("cam", None, None)
        assert heat is not None and heat.points == n == len(boxes)
        assert np.array_equal(heat.grid, count_feet(boxes, W, H, 8))
        got = grid_image(heat, None)
        corr = np.corrcoef(want.astype(float).ravel(), got.astype(float).ravel())[0, 1]
        assert corr >= 0.99 and np.array_equal(got, want)
        with repo.engine.connect() as conn:
            rows_before = conn.execute(text("SELECT count(*) FROM heatmap_cells")).scalar_one()
        merged = storage_upkeep(repo, load_settings(environ={}), now=t0 + 3 * 3600)["heat_rows_merged"]
        with repo.engine.connect() as conn:
            after = conn.execute(text("SELECT count(*) FROM heatmap_cells")).scalar_one()
        assert merged == rows_before - after > 0 and after == 2  # one row per hour
        again = store.heat_grid("cam", None, None)
        assert again is not None and np.array_equal(again.grid, heat.grid)
        # a day's heatmap reads the hours of that day; coarser cells are sums of the stored ones
        day = store.heat_grid("cam", t0 - 3570, t0 + 86400 - 3570)
        assert day is not None and day.points == n
        assert store.heat_grid("cam", t0 + 7200, t0 + 9000) is None


def _old_schema_run(repo: Repository, frames: list[list[Sighting]], start: datetime) -> None:
    """What the per-frame code stored: a run with sightings, a zone event and its tracks (migration 0009)."""
    with repo.engine.begin() as conn:
        conn.execute(text("INSERT INTO cameras (id, name, created_at) VALUES ('cam', 'cam', :at)"), {"at": start})
        conn.execute(text("INSERT INTO runs (id, camera_id, source, status, started_at, frames, meta)"
                          " VALUES ('old', 'cam', 'v.mp4', 'finished', :at, :n, :meta)"),
                     {"at": start, "n": len(frames), "meta": json.dumps({"width": W, "height": H, "frames": len(frames),
                                                                         "first_ts": 0.0, "last_ts": 29.8})})
        conn.execute(text("INSERT INTO sightings (run_id, track_id, seq, ts, x1, y1, x2, y2, score) VALUES "
                          "('old', :t, :q, :ts, :x1, :y1, :x2, :y2, :sc)"),
                     [{"t": s.track_id, "q": s.seq, "ts": s.ts, "x1": s.box[0], "y1": s.box[1], "x2": s.box[2],
                       "y2": s.box[3], "sc": s.score} for f in frames for s in f])
        conn.execute(text("INSERT INTO zone_events (run_id, zone, track_id, seq, kind, camera_id, ts) VALUES "
                          "('old', 'hall', 2, 70, 'enter', 'cam', 14.0)"))
        tracks: dict[int, list[Sighting]] = {}
        for f in frames:
            for s in f:
                tracks.setdefault(s.track_id, []).append(s)
        conn.execute(text("INSERT INTO tracks (run_id, track_id, camera_id, first_seq, last_seq, first_ts, last_ts,"
                          " frames, votes, attempts, segment)"
                          " VALUES ('old', :t, 'cam', :a, :b, :ta, :tb, :n, 0, 0, 0)"),
                     [{"t": t, "a": v[0].seq, "b": v[-1].seq, "ta": v[0].ts, "tb": v[-1].ts, "n": len(v)}
                      for t, v in tracks.items()])


def test_migration_0010_turns_sightings_into_points_and_grids(db_url: str,  # noqa: F811
                                                               caplog: pytest.LogCaptureFixture) -> None:
    frames = walk(8, 150)
    start = datetime(2026, 3, 2, 23, 59, 50, tzinfo=UTC)  # the run crosses midnight: two days, two partitions
    with Repository(db_url, migrate=False) as repo:
        repo.upgrade("0009")
        _old_schema_run(repo, frames, start)
        with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
            repo.upgrade()  # 0010, then 0011 packs the points
        said = [r.getMessage() for r in caplog.records]  # each long migration says how far it is
        assert any(m.startswith("0010: turned the sightings of run old into trajectory points and heat rows (1 of 1 "
                                "runs, ") for m in said), said
        assert [m for m in said if m.startswith("0011: packed the trajectory points of run old, day ")], said
        points = repo.points("old")
        want = sorted((dataclass_f32(p) for p in sample_all(frames, marks={70: {2}})),
                      key=lambda p: (p.seq, p.track_id))
        assert points == want
        assert sum(p.frames for p in points) == sum(len(f) for f in frames)
        run = repo.run("old")
        assert run is not None and run.meta["peak_in_frame"] == max(len(f) for f in frames)
        heat = AnalyticsStore(repo).heat_grid("cam", None, None, ["old"])
        assert heat is not None and np.array_equal(heat.grid, count_feet([s.box for f in frames for s in f], W, H, 8))
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM point_batches WHERE day = :d"),
                                {"d": day_of(start.timestamp()) + 1}).scalar_one() > 0
            if repo.dialect == "postgresql":
                days = [d for _, d in partitions(conn, "point_batches")]
                assert days == [day_of(start.timestamp()), day_of(start.timestamp()) + 1]
        repo.downgrade("0009")  # the points come back as sightings (what was sampled away stays away)
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sightings")).scalar_one() == len(points)
        repo.upgrade()


def dataclass_f32(p: PathPoint) -> PathPoint:
    def f(x: float) -> float:
        return float(str(np.float32(x)))

    return PathPoint(p.camera_id, p.track_id, p.seq, p.ts, (f(p.box[0]), f(p.box[1]), f(p.box[2]), f(p.box[3])),
                     f(p.score), p.frames)


def test_beat_upkeep_creates_day_partitions_ahead_and_retention_drops_them(db_url: str) -> None:  # noqa: F811
    """PostgreSQL: the upkeep beat runs creates the next days; the purge drops whole old days (no DELETE
    of their rows) and deletes the rest of the cutoff's day. SQLite: plain tables, the same rows go."""
    now = datetime(2026, 6, 10, 12, 0, tzinfo=UTC).timestamp()
    settings = load_settings(environ={"GENESIS_RETENTION__SIGHTINGS_DAYS": "2", "GENESIS_RETENTION__EVENTS_DAYS": "2"})
    with Repository(db_url) as repo:
        created = storage_upkeep(repo, settings, now=now)["partitions_created"]
        today = day_of(now)
        if repo.dialect == "postgresql":
            assert set(created) == {partition_name(t, d) for t in ("point_batches", "heatmap_cells")
                                    for d in range(today - 1, today + 4)}
            assert storage_upkeep(repo, settings, now=now)["partitions_created"] == []  # idempotent
        else:
            assert created == []
        # a live camera's points over five days (epoch times): written through the pipeline's writer
        repo.start_run("live", "cam", "rtsp://x", {"width": W, "height": H})
        for k in range(5):
            t = now - (4 - k) * 86400 - 3600
            s = Sighting("cam", k + 1, k, t, (10.0, 10.0, 40.0, 100.0), 0.9)
            repo.save_outcome("live", [s], [], [], [], [PathPoint("cam", k + 1, k, t, s.box, 0.9)])
        backdate(repo, "live", now - 5 * 86400, None)
        if repo.dialect == "postgresql":
            with repo.engine.begin() as conn:
                conn.execute(text("ANALYZE point_batches"))  # the partitions' row estimates the purge reports
        counts = purge(repo, settings, now=now)
        assert counts["point_batches"] == 3  # days -4 and -3 whole, and the old part of day -2 (points)
        assert [p.seq for p in repo.points("live")] == [3, 4]
        if repo.dialect == "postgresql":
            with repo.engine.connect() as conn:
                days = [d for _, d in partitions(conn, "point_batches")]
            assert min(days) == today - 2  # the older days' partitions are gone
            assert math.isfinite(counts["heatmap_cells"])
