"""Rollups, retention and the beat schedule on SQLite (the embedded database).

The same checks run on PostgreSQL with a real Celery worker in tests/integration/test_rollups.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from celery import Celery

from genesis.adapters.db import Repository
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.celery import configure
from genesis.config import load_settings
from genesis.services.heatmap import SnapshotKeeper
from genesis.services.rollups import compute_rollups, occupancy_in, rollup, scheduled_window, zone_visits
from genesis.tasks import routing
from genesis.tasks.schedule import beat_schedule
from tests.analytics_data import CAMERA, assert_matches, expected, populate, stored

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp()


@pytest.fixture()
def repo(tmp_path: Path) -> Repository:
    r = Repository(f"sqlite:///{tmp_path / 'g.db'}")
    yield r  # type: ignore[misc]
    r.close()


@pytest.mark.parametrize("granularity", ["minute", "hour", "day"])
def test_rollups_equal_the_raw_rows_and_rerun_gives_the_same_rows(repo: Repository, granularity: str) -> None:
    raw = populate(repo, T0)
    store = AnalyticsStore(repo)
    rollup(repo, granularity, T0, T0 + 4 * 3600, now=T0 + 5 * 3600)  # type: ignore[arg-type]
    want = expected(raw, granularity)
    first = {kind: store.rollups(kind, granularity) for kind in ("camera", "zone", "line", "identity", "identity_zone")}
    for kind, rows in first.items():
        assert rows, kind
        assert_matches(stored(rows, kind), want[kind])
    # totals: sums over the buckets are the raw totals
    assert sum(r["sightings"] for r in first["camera"]) == len(raw.sightings)  # the points stand for them all
    assert sum(r["visits"] for r in first["zone"]) == len(raw.visits)
    assert sum(r["crossings_in"] + r["crossings_out"] for r in first["line"]) == len(raw.crossings)
    assert {r["identity"] for r in first["identity"]} == {"alice", "bob", "carol"}
    assert sum(r["visits"] for r in first["identity_zone"]) == sum(
        1 for run, tid, _, _ in raw.visits if (run, tid) in raw.identity)
    # re-running (also over a wider window) gives exactly the same rows
    rollup(repo, granularity, T0 - 86400, T0 + 2 * 86400, now=T0 + 5 * 3600)  # type: ignore[arg-type]
    again = {kind: store.rollups(kind, granularity) for kind in first}
    assert again == first


def test_a_rollup_replaces_only_its_own_buckets(repo: Repository) -> None:
    raw = populate(repo, T0)
    store = AnalyticsStore(repo)
    rollup(repo, "minute", T0, T0 + 4 * 3600, now=T0 + 5 * 3600)
    before = store.rollups("camera", "minute")
    rollup(repo, "minute", T0 + 3600, T0 + 3660, now=T0 + 5 * 3600)  # one bucket again
    assert store.rollups("camera", "minute") == before
    assert sum(r["sightings"] for r in before) == len(raw.sightings)
    assert store.rollups("camera", "hour") == []


def test_occupancy_and_visits_of_a_track_that_leaves_and_comes_back() -> None:
    events = [("r", "z", 1, 1, "enter", 10.0), ("r", "z", 1, 5, "exit", 30.0),
              ("r", "z", 1, 9, "enter", 50.0), ("r", "z", 1, 12, "exit", 70.0),
              ("r", "z", 2, 3, "enter", 20.0), ("r", "z", 3, 4, "enter", 65.0)]
    visits = zone_visits(events, {"r": 100.0})
    assert [(v.track_id, v.start, v.end, v.closed) for v in visits] == [
        (1, 10.0, 30.0, True), (1, 50.0, 70.0, True), (2, 20.0, 100.0, False), (3, 65.0, 100.0, False)]
    assert zone_visits(events, {}) == visits[:2]  # a finished run: an unclosed visit is not invented
    spans = [(v.start, v.end) for v in visits]
    assert occupancy_in(spans, 0, 60) == (2, 20 + 40 + 10)
    assert occupancy_in(spans, 60, 120) == (3, 10 + 40 + 35)
    assert occupancy_in([(0, 10), (10, 20)], 0, 60) == (1, 20)  # one leaves as the other arrives


def test_compute_rollups_of_an_empty_window_is_empty(repo: Repository) -> None:
    populate(repo, T0)
    raw = AnalyticsStore(repo).window_rows(T0 - 7200, T0 - 3600, 60, None)
    assert compute_rollups(raw, "minute", T0 - 7200, T0 - 3600, T0) == {
        "camera": [], "zone": [], "line": [], "identity": [], "identity_zone": []}


def test_retention_purge_deletes_exactly_what_is_older_than_the_limit(repo: Repository) -> None:
    from genesis.services.rollups import purge

    now = time.time()
    t0 = (now - 30 * 86400 - 5400) // 60 * 60  # the rows (3 h from t0) straddle the 30-day limit
    raw = populate(repo, t0)
    rollup(repo, "minute", t0, t0 + 4 * 3600)
    settings = load_settings(environ={"GENESIS_RETENTION__SIGHTINGS_DAYS": "30", "GENESIS_RETENTION__EVENTS_DAYS": "30",
                                      "GENESIS_RETENTION__UNKNOWN_FACES_DAYS": "30",
                                      "GENESIS_ROLLUPS__KEEP_MINUTE_DAYS": "30"})
    cutoff = now - 30 * 86400
    counts = purge(repo, settings, now=now)
    old = sum(1 for _, _, t, _ in raw.points if t < cutoff)
    assert 0 < old < len(raw.points)
    assert counts["point_batches"] == old  # the points removed
    assert counts["zone_events"] == sum(1 for e in raw.events if e[4] < cutoff)
    assert counts["line_crossings"] == sum(1 for c in raw.crossings if c[4] < cutoff)
    assert counts["unknown_faces"] == sum(1 for a in raw.attempts if a[3] is None and a[2] < cutoff)
    assert counts["recognition_attempts"] == sum(1 for a in raw.attempts if a[3] is not None and a[2] < cutoff)
    left = [s.ts for run in ("live", "file") for s in repo.points(run)]
    assert len(left) == len(raw.points) - old
    minutes = AnalyticsStore(repo).rollups("camera", "minute")
    assert minutes and all(r["bucket"].timestamp() >= cutoff - 0 for r in minutes)
    assert counts["rollups_minute"] > 0
    assert purge(repo, settings, now=now) == dict.fromkeys(counts, 0)  # nothing more to purge



def test_retention_purge_deletes_alerts_and_baseline_samples_past_their_retention(repo: Repository) -> None:
    """Alerts go with the events (by their time, their deliveries with them); the anomaly baseline's occupancy
    samples with the events too, but never before the longest baseline has read them (56 days by default). Before,
    neither was ever purged."""
    from sqlalchemy import text

    from genesis.adapters.db.alerts import AlertStore
    from genesis.adapters.db.storage import set_run_span
    from genesis.domain.alerts import NO_TRACK, Alert, AlertKind, OccupancySample
    from genesis.services.rollups import purge

    now = time.time()
    store = AlertStore(repo.engine)
    for run_id, days in (("old", 100), ("mid", 45), ("recent", 10)):
        start = now - days * 86400
        repo.start_run(run_id, "cam", "x", {})
        set_run_span(repo.engine, run_id, start, start + 60)
        store.save(run_id, [Alert("cam", AlertKind.CROWDING, "hall", NO_TRACK, 5, 0.5, 4.0, 2.0, "hall", None,
                                  "4 people in hall")],
                   [OccupancySample("cam", "hall", 0, 1.0, 25, 10, start + 1, False)], start)
    cameras = '[{"id": "cam", "alerts": {"anomaly": {"baseline_days": 120}}}]'
    longer = load_settings(environ={"GENESIS_RETENTION__EVENTS_DAYS": "30", "GENESIS_CAMERAS": cameras})
    counts = purge(repo, longer, now=now)  # a camera's baseline of 120 days keeps every sample
    assert (counts["alerts"], counts["occupancy_samples"]) == (2, 0), counts
    counts = purge(repo, load_settings(environ={"GENESIS_RETENTION__EVENTS_DAYS": "30"}), now=now)
    assert (counts["alerts"], counts["occupancy_samples"]) == (0, 1), counts  # samples: the 56-day baseline
    with repo.engine.connect() as conn:
        assert [r for (r,) in conn.execute(text("SELECT run_id FROM alerts"))] == ["recent"]
        assert sorted(r for (r,) in conn.execute(text("SELECT run_id FROM occupancy_samples"))) == ["mid", "recent"]
    assert purge(repo, load_settings(environ={"GENESIS_RETENTION__EVENTS_DAYS": "40"}),
                 now=now + 20 * 86400)["occupancy_samples"] == 1  # "mid" is 65 days old then

def test_beat_schedule_comes_from_the_settings() -> None:
    s = load_settings(environ={"GENESIS_ROLLUPS__GRANULARITIES": "[minute, hour]",
                               "GENESIS_ROLLUPS__MINUTE_EVERY_S": "30"})
    sched = beat_schedule(s)
    assert set(sched) == {"rollup-minute", "rollup-hour", "retention-purge", "storage-upkeep"}
    assert sched["storage-upkeep"]["task"] == routing.STORAGE and sched["storage-upkeep"]["schedule"] == 3600.0
    assert sched["rollup-minute"]["task"] == routing.ROLLUP and sched["rollup-minute"]["schedule"] == 30.0
    assert sched["rollup-minute"]["args"] == ("minute",)
    assert {e["options"]["queue"] for e in sched.values()} == {"analytics"}
    assert sched["retention-purge"]["task"] == routing.PURGE
    app = Celery("t", set_as_current=False)
    configure(app, s)
    assert app.conf.beat_schedule == sched
    assert app.conf.task_routes[routing.ROLLUP] == {"queue": "analytics"}
    assert beat_schedule(load_settings(environ={"GENESIS_ROLLUPS__ENABLED": "false"})) == {}


def test_bad_rollups_settings_are_refused() -> None:
    from genesis.config import ConfigError

    with pytest.raises(ConfigError, match=r"rollups\.granularities"):
        load_settings(environ={"GENESIS_ROLLUPS__GRANULARITIES": "[week]"})
    with pytest.raises(ConfigError, match=r"rollups\.lag_s"):
        load_settings(environ={"GENESIS_ROLLUPS__LAG_S": "-1"})


def test_scheduled_window_leaves_the_lag_and_recomputes_recent_buckets() -> None:
    s = load_settings(environ={"GENESIS_ROLLUPS__LAG_S": "90", "GENESIS_ROLLUPS__RECOMPUTE_BUCKETS": "2"})
    now = datetime(2026, 11, 20, 10, 5, 30, tzinfo=UTC).timestamp()
    lo, hi = scheduled_window(s, "minute", now)
    assert datetime.fromtimestamp(lo, UTC) == datetime(2026, 11, 20, 10, 2, tzinfo=UTC)
    assert datetime.fromtimestamp(hi, UTC) == datetime(2026, 11, 20, 10, 6, tzinfo=UTC)


def test_snapshots_are_kept_at_most_every_n_seconds(repo: Repository) -> None:
    clock = [0.0]
    store = AnalyticsStore(repo)
    keeper = SnapshotKeeper(store, CAMERA, 60.0, clock=lambda: clock[0])
    assert keeper.offer(b"jpeg-1", 640, 360)
    clock[0] = 30.0
    assert not keeper.offer(b"jpeg-2", 640, 360)
    assert store.snapshot(CAMERA)[0] == b"jpeg-1"  # type: ignore[index]
    assert keeper.offer(b"jpeg-3", 640, 360, force=True)
    snap = store.snapshot(CAMERA)
    assert snap is not None and snap[:3] == (b"jpeg-3", 640, 360)
    assert store.snapshot("other") is None
