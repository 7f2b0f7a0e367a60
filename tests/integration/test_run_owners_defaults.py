"""Who a run belongs to, with the SHIPPED DEFAULTS (issue 23, items 3, 4 and 8), on real processes:

- ``genesis drain`` fails, naming the letters, while a write of a run is in the dead letters
  (the run itself finished: its end was stored, some of its rows were not). ~1 min.
- an embedded ``genesis run`` killed with SIGKILL midway: the next ``genesis run`` on the host
  marks it failed (abandoned, why) and removes its rows. ~30 s.
- two sites (a redis-server each) sharing one PostgreSQL database: site A's stale-run check
  marks its own dead run failed and leaves site B's healthy run alone. ~1.5 min: it waits the
  default ``run_stale_after_s`` (60 s), as the runs must be that old to be judged at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from genesis.adapters.dlq import DeadLetters
from genesis.config import DistributedConfig
from tests.integration.test_faults_defaults import SPECS, RedisServer, env, rows, run_status, server  # noqa: F401
from tests.integration.workers import capture, clip, genesis_cli, pipeline_env, workers
from tests.stored import stored_sightings
from tests.waiting import wait_for

DEFAULTS = DistributedConfig()


def run_row(url: str, run_id: str) -> tuple[str, dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            status, meta = conn.execute(text("SELECT status, meta FROM runs WHERE id = :r"), {"r": run_id}).one()
    finally:
        engine.dispose()
    return str(status), meta if isinstance(meta, dict) else json.loads(meta)


def count(url: str, sql: str, **params: object) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar_one())
    finally:
        engine.dispose()


def drain(environ: dict[str, str], timeout: str = "300") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genesis.cli.main", "drain", "--timeout", timeout], env=environ,
                          capture_output=True, text=True, timeout=float(timeout) + 120, check=False)


def test_drain_fails_while_a_write_of_a_run_is_a_dead_letter(env: dict[str, str],  # noqa: F811
                                                             server: RedisServer, data_dir: Path) -> None:  # noqa: F811
    """A run that finished (its end stored) with one of its writes in the dead letters (here a
    batch the store worker could not decode: it fails for good at once; a database away for
    longer than the retries does the same after 91 s to 3 min): drain used to say "drained"."""
    logs = Path(env["TEST_OUT_DIR"])
    run_id = capture(env, data_dir)
    letters = DeadLetters(redis.Redis.from_url(server.url(1), decode_responses=True))
    with workers(*SPECS, env=env, log_dir=logs):
        sender = Celery("sender", broker=server.url(0), set_as_current=False)
        try:
            sent = sender.send_task("genesis.store.save_outcome", args=[run_id, {"sightings": [{"bad": 1}]}],
                                    queue="store")
        finally:
            sender.close()
        wait_for(lambda: letters.size() == 1 and run_status(env, run_id) == "finished", 180,
                 "the run finished and its bad write in the dead letters", interval=0.5)
        stuck = drain(env)
        said = " ".join(stuck.stderr.split())
        assert stuck.returncode == 1 and "drained" not in stuck.stdout, stuck.stdout + stuck.stderr
        assert f"{sent.id} save_outcome (run {run_id})" in said, said
        assert "not fully stored" in said and "genesis dlq replay" in said, said
        genesis_cli(env, "dlq", "purge", "--yes")  # given up: nothing of a run waits any more
        assert "drained" in genesis_cli(env, "drain", "--timeout", "300")


def test_a_killed_embedded_run_is_failed_and_its_rows_removed_at_the_next_run(
        env: dict[str, str], data_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'embedded.db'}"
    e = dict(env, GENESIS_DATABASE_URL=db)
    log = (tmp_path / "run.log").open("w")
    victim = subprocess.Popen([sys.executable, "-m", "genesis.cli.main", "run", "--source", clip(data_dir),
                               "--camera", "entrance"], env=e, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:

        def stored() -> bool:
            try:
                return count(db, "SELECT count(*) FROM point_batches") > 0
            except OperationalError:  # the run has not created the tables yet
                return False

        wait_for(stored, 180, "the run's first rows", interval=0.2)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
        log.close()
    assert count(db, "SELECT count(*) FROM runs WHERE status = 'running'") == 1
    engine = create_engine(db)
    with engine.connect() as conn:
        run_id = str(conn.execute(text("SELECT id FROM runs WHERE status = 'running'")).scalar_one())
    engine.dispose()
    # The next run on the host: it marks the dead one first, and says so.
    nxt = subprocess.run([sys.executable, "-m", "genesis.cli.main", "run", "--source", clip(data_dir), "--camera",
                          "entrance", "--max-frames", "3"], env=e, capture_output=True, text=True, timeout=300,
                         check=False)
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    said = " ".join(nxt.stderr.split())
    assert f"run {run_id} (camera entrance) abandoned" in said and f"pid {victim.pid}" in said, said
    status, meta = run_row(db, run_id)
    assert status == "failed" and "is gone (killed, or it crashed)" in meta["abandoned"] and meta["rows_removed"]
    for table in ("point_batches", "heatmap_cells", "tracks", "zone_events", "line_crossings", "attempt_packs"):
        assert count(db, f"SELECT count(*) FROM {table} WHERE run_id = :r", r=run_id) == 0, table
    assert count(db, "SELECT count(*) FROM runs WHERE status = 'finished'") == 1


def test_a_sites_stale_check_leaves_the_runs_of_another_site_alone(models_dir: Path, data_dir: Path,
                                                                   tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    site_a, site_b = RedisServer(tmp_path / "a"), RedisServer(tmp_path / "b")
    try:
        with pipeline_env(tmp_path, models_dir, data_dir, site_a.url(0), site_a.url(1), {}) as env_a:
            env_b = dict(env_a, GENESIS_BROKER_URL=site_b.url(0), GENESIS_REDIS_URL=site_b.url(1))
            # Site B: a healthy run whose detect messages wait for B's workers (none started yet).
            healthy = capture(env_b, data_dir)
            # Site A: a run whose Redis lost everything (restarted without persistence): dead.
            dead = capture(env_a, data_dir)
            started = time.monotonic()  # both runs started before this
            for url in (site_a.url(0), site_a.url(1)):
                redis.Redis.from_url(url).flushdb()
            # Only runs older than run_stale_after_s are judged at all: wait until both are.
            time.sleep(max(0.0, DEFAULTS.run_stale_after_s + 1 - (time.monotonic() - started)))
            out = drain(env_a, "120")  # site A's check (genesis drain marks abandoned runs first)
            assert out.returncode == 0, out.stdout + out.stderr
            assert f"run {dead}" in out.stderr and f"run {healthy}" not in out.stderr, out.stderr
            assert run_status(env_a, dead) == "failed"
            assert run_status(env_a, healthy) == "running"
            assert "abandoned" not in run_row(env_a["GENESIS_DATABASE_URL"], healthy)[1]
            # ...and site B's own check, with its workers, finishes it.
            with workers(*SPECS, env=env_b, log_dir=tmp_path):
                assert "drained" in genesis_cli(env_b, "drain", "--timeout", "300")
            assert run_status(env_a, healthy) == "finished"
            assert stored_sightings(env_a["GENESIS_DATABASE_URL"]) > 0
    finally:
        site_a.stop()
        site_b.stop()
