"""Rollups and retention on PostgreSQL, run by a real Celery worker on the ``analytics`` queue.

Redis DB 6 of the test server (tests/services.py) is the broker. The raw rows are synthetic
(tests/analytics_data.py) and the expected rollups are computed from them independently.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import yaml
from celery import Celery

from genesis.adapters.db import Repository
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.celery import configure
from genesis.config import load_settings
from genesis.tasks import routing
from tests.analytics_data import assert_matches, expected, populate, stored
from tests.integration.workers import Worker, fresh_postgres_database, genesis_cli, workers
from tests.services import redis_url

BROKER = redis_url(6)
RETENTION_DAYS = 8
KINDS = ("camera", "zone", "line", "identity", "identity_zone")


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({
        "retention": {"sightings_days": RETENTION_DAYS, "events_days": RETENTION_DAYS,
                      "unknown_faces_days": RETENTION_DAYS},
        "rollups": {"keep_minute_days": RETENTION_DAYS},
    }))
    redis.Redis.from_url(BROKER).flushdb()
    try:
        with fresh_postgres_database() as pg:
            e = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
            e.update(GENESIS_CONFIG=str(config), GENESIS_DATABASE_URL=pg, GENESIS_BROKER_URL=BROKER,
                     GENESIS_REDIS_URL=redis_url(7), COLUMNS="200")
            yield e
    finally:
        redis.Redis.from_url(BROKER).flushdb()


def client(env: dict[str, str]) -> Celery:
    app = Celery("test-client", set_as_current=False)
    configure(app, load_settings(environ=env))
    return app


def run_task(app: Celery, worker: Worker, name: str, *args: object, timeout: float = 120.0,
             outcome: str = "succeeded") -> str:
    """Send a task by name (routed by genesis.tasks.routing) and wait until the worker logs its outcome."""
    task_id = app.send_task(name, args=list(args)).id
    pattern = re.compile(rf"Task {re.escape(name)}\[{task_id}\] (succeeded|raised|retry)[^\n]*")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = pattern.search(worker.log.read_text())
        if m:
            assert m.group(1) == outcome, m.group(0)
            return m.group(0)
        time.sleep(0.2)
    raise AssertionError(f"{name}[{task_id}] did not finish in {timeout} s:\n{worker.log.read_text()[-3000:]}")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def test_rollups_and_purge_by_a_celery_worker_on_postgres(env: dict[str, str], tmp_path: Path) -> None:
    now = time.time()
    # three hours of rows that straddle the retention limit (RETENTION_DAYS ago)
    t0 = (now - RETENTION_DAYS * 86400 - 5400) // 60 * 60
    with Repository(env["GENESIS_DATABASE_URL"]) as repo:
        raw = populate(repo, t0)
        store = AnalyticsStore(repo)
        app = client(env)
        assert app.conf.task_routes[routing.ROLLUP] == {"queue": "analytics"}
        with workers(("analytics", "analytics", 1, "prefork"), env=env, log_dir=tmp_path) as (worker,):
            for granularity in ("minute", "hour", "day"):
                run_task(app, worker, routing.ROLLUP, granularity, iso(t0), iso(t0 + 4 * 3600))
                rows = {kind: store.rollups(kind, granularity) for kind in KINDS}
                want = expected(raw, granularity)
                for kind in KINDS:
                    assert rows[kind], (granularity, kind)
                    assert_matches(stored(rows[kind], kind), want[kind])
                assert sum(r["sightings"] for r in rows["camera"]) == len(raw.sightings)
                # the same task again (a retry, a redelivery, beat running it twice): the same rows
                run_task(app, worker, routing.ROLLUP, granularity, iso(t0), iso(t0 + 4 * 3600))
                assert {kind: store.rollups(kind, granularity) for kind in KINDS} == rows
            # the scheduled form (no window: the last buckets and the current one) runs too
            run_task(app, worker, routing.ROLLUP, "minute")
            # bad arguments fail at once, without retries (PermanentError: dead-lettered)
            failed = run_task(app, worker, routing.ROLLUP, "week", outcome="raised")
            assert "PermanentError" in failed and "week" in failed

            before = time.time()
            line = run_task(app, worker, routing.PURGE)
            after = time.time()
        limit = RETENTION_DAYS * 86400
        run_start = {r.run_id: r.started_at.timestamp() for r in repo.runs()}

        def absolute(run: str, ts: float) -> float:
            return ts if ts >= 1e9 else run_start[run] + ts

        def check(kept: list[float], rows: list[float], reported: int) -> None:
            """Everything older than the limit went, everything younger stayed (the worker's
            clock read lies between ``before`` and ``after``)."""
            assert all(t >= before - limit for t in kept)
            assert Counter(t for t in rows if t >= after - limit) <= Counter(kept) <= Counter(rows)
            assert 0 < len(kept) < len(rows)
            assert reported == len(rows) - len(kept)

        counts = {k: int(v) for k, v in re.findall(r"'(\w+)': (\d+)", line)}
        check([absolute(run, s.ts) for run in ("live", "file") for s in repo.points(run)],
              [t for _, _, t, _ in raw.points], counts["point_batches"])  # the points removed
        check([absolute(run, e.ts) for run in ("live", "file") for e in repo.zone_events(run)],
              [e[4] for e in raw.events], counts["zone_events"])
        check([absolute(run, c.ts) for run in ("live", "file") for c in repo.line_crossings(run)],
              [c[4] for c in raw.crossings], counts["line_crossings"])
        minutes = store.rollups("camera", "minute")
        assert minutes and all(r["bucket"].timestamp() >= before - limit - 60 for r in minutes)
        assert store.rollups("camera", "day")  # day rollups are kept five years by default


def test_rollup_cli_on_postgres_matches_the_task(env: dict[str, str]) -> None:
    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp()
    with Repository(env["GENESIS_DATABASE_URL"]) as repo:
        raw = populate(repo, t0)
        out = genesis_cli(env, "rollup", "--granularity", "hour", "--since", "2026-11-20T09:00",
                          "--until", "2026-11-20T14:00")
        assert "hour" in out
        rows = AnalyticsStore(repo).rollups("zone", "hour")
        assert_matches(stored(rows, "zone"), expected(raw, "hour")["zone"])


def test_celery_beat_runs_the_configured_schedule(env: dict[str, str], tmp_path: Path) -> None:
    """`celery -A genesis beat` sends the rollups and the purge at the configured intervals;
    the analytics worker (workers/analytics.py) runs them and recent rows show up rolled up."""
    from genesis.adapters.db.partitions import day_of, partitions
    from genesis.domain import PathPoint, Sighting

    now = time.time()
    with Repository(env["GENESIS_DATABASE_URL"]) as repo:
        repo.start_run("recent", "door", "rtsp://camera", {"width": 640, "height": 360, "fps": 2.0})
        sightings = [Sighting("door", 1 + i % 3, i, now - 100 + i / 2.0, (10.0, 10.0, 50.0, 90.0), 0.9)
                     for i in range(120)]  # live timestamps over the last 100 s
        points = [PathPoint(s.camera_id, s.track_id, s.seq, s.ts, s.box, s.score, 1) for s in sightings]
        repo.save_outcome("recent", sightings, [], [], [], points)
        e = dict(env, GENESIS_ROLLUPS__MINUTE_EVERY_S="1", GENESIS_ROLLUPS__HOUR_EVERY_S="1",
                 GENESIS_ROLLUPS__GRANULARITIES="[minute, hour]", GENESIS_ROLLUPS__LAG_S="0",
                 GENESIS_ROLLUPS__PURGE_EVERY_S="2", GENESIS_ROLLUPS__STORAGE_EVERY_S="1")
        beat = Worker("beat", "", e, tmp_path, command=[
            sys.executable, "-m", "celery", "-A", "genesis", "beat", "-s", str(tmp_path / "beat-schedule"),
            "--loglevel", "INFO"])
        root = Path(__file__).resolve().parents[2]
        analytics = Worker("analytics", "", e, tmp_path,
                           command=[sys.executable, str(root / "workers" / "analytics.py"), "--workers", "1"])
        try:
            analytics.wait_ready()
            store = AnalyticsStore(repo)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                minutes = store.rollups("camera", "minute", "door")
                hours = store.rollups("camera", "hour", "door")
                log = analytics.log.read_text()
                if (sum(r["sightings"] for r in minutes) == 120 and sum(r["sightings"] for r in hours) == 120
                        and f"Task {routing.PURGE}" in log and f"Task {routing.STORAGE}" in log):
                    break
                time.sleep(0.5)
            else:
                raise AssertionError(f"beat did not get the rollups done:\n{beat.log.read_text()[-2000:]}\n"
                                     f"{analytics.log.read_text()[-3000:]}")
        finally:
            beat.stop()
            analytics.stop()
        beat_log = beat.log.read_text()
        for name in ("rollup-minute", "rollup-hour", "retention-purge", "storage-upkeep"):
            assert f"Sending due task {name}" in beat_log, beat_log[-2000:]
        # beat's storage upkeep made the day partitions of the next days (defaults: 3 ahead)
        with repo.engine.connect() as conn:
            days = {d for _, d in partitions(conn, "point_batches")}
        today = day_of(time.time())
        assert set(range(today - 1, today + 4)) <= days, days
        assert "rollup-day" not in beat_log  # not configured
        assert store.rollups("camera", "day", "door") == []
        assert {r["tracks"] for r in store.rollups("camera", "hour", "door")} <= {1, 2, 3}


def test_concurrent_rollups_of_the_same_buckets_converge_on_postgres(env: dict[str, str]) -> None:
    """Beat and `genesis rollup` (or two redelivered tasks) may rebuild the same buckets at once."""
    from concurrent.futures import ThreadPoolExecutor

    from genesis.services.rollups import rollup

    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp()
    with Repository(env["GENESIS_DATABASE_URL"]) as repo:
        raw = populate(repo, t0)
        with ThreadPoolExecutor(4) as pool:
            done = list(pool.map(lambda _: rollup(repo, "minute", t0, t0 + 4 * 3600), range(8)))
        assert len({tuple(sorted(r.rows.items())) for r in done}) == 1
        rows = AnalyticsStore(repo).rollups("zone", "minute")
        assert_matches(stored(rows, "zone"), expected(raw, "minute")["zone"])
