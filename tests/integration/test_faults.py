"""Faults in the distributed pipeline: a worker killed mid-run, the database gone for a while,
a corrupt frame and an undecodable message. Nothing is lost, nothing duplicated: the stored
results equal the embedded run's, and what failed for good is in the dead-letter store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text

from genesis.adapters.dlq import DeadLetters
from tests.integration.workers import TcpProxy, capture, embedded, genesis_cli, pipeline_env, workers
from tests.services import redis_url
from tests.stored import stored_sightings
from tests.waiting import wait_for

BROKER = redis_url(4)
FRAMES = redis_url(5)
SPECS = [("detect", "detect", 1, "prefork"), ("recognize", "recognize", 1, "solo"), ("store", "store", 1, "solo")]


@pytest.fixture()
def env(models_dir: Path, tmp_path: Path, data_dir: Path) -> Iterator[dict[str, str]]:
    # The default gap and visibility timeouts: a dead worker's messages come back through the
    # living workers' heartbeats (genesis.pipeline.liveness). Only the retries are quick, for the
    # database outage test.
    distributed = {"max_retries": 3, "retry_backoff_max_s": 1}
    with pipeline_env(tmp_path, models_dir, data_dir, BROKER, FRAMES, distributed) as e:
        yield e


def report(env: dict[str, str], run_id: str) -> dict[str, Any]:
    out = Path(env["TEST_OUT_DIR"]) / f"report-{run_id}"
    genesis_cli(env, "report", "--run", run_id, "--out", str(out))
    data: dict[str, Any] = json.loads((out / "report.json").read_text())
    return data


def count_rows(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def test_workers_killed_mid_run_lose_and_duplicate_nothing(env: dict[str, str], data_dir: Path) -> None:
    want = embedded(env, data_dir)
    logs = Path(env["TEST_OUT_DIR"])
    run_id = capture(env, data_dir)
    # The sequencer is ready before the first frame is detected, so detection (one frame at a time) paces the
    # run and the kill lands while frames are still to be detected and sequenced. (Started together, the
    # sequencer could come up after most frames were detected and store the whole run in one turn before
    # the kill: 435 of 435 sightings stored, a run of 6 Dec.)
    with workers(SPECS[1], env=env, log_dir=logs) as (sequencer,), \
            workers(SPECS[0], SPECS[2], env=env, log_dir=logs) as (detector, _store):
        wait_for(lambda: stored_sightings(env["GENESIS_DATABASE_URL"]) > 0, 120, "the first stored rows",
                 interval=0.05)
        for w in (detector, sequencer):  # mid-run, without warning
            w.kill()
        assert stored_sightings(env["GENESIS_DATABASE_URL"]) < sum(t["frames"] for t in want["tracks"])
    # Restarted: the dead workers' unacknowledged messages are put back by the new workers'
    # heartbeats, the sequencer resumes from its last saved state once the dead holder's lock expired.
    with workers(*SPECS, env=env, log_dir=logs):
        genesis_cli(env, "drain", "--timeout", "300")
    got = report(env, run_id)
    assert got["run"]["status"] == "finished"
    assert got["results"] == want
    assert stored_sightings(env["GENESIS_DATABASE_URL"], finished=True) == sum(t["frames"] for t in want["tracks"])


def test_database_outage_retries_then_dead_letters_then_replay(env: dict[str, str], data_dir: Path) -> None:
    want = embedded(env, data_dir)
    logs = Path(env["TEST_OUT_DIR"])
    proxy = TcpProxy(("127.0.0.1", 5432))
    direct = env["GENESIS_DATABASE_URL"]
    via_proxy = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    run_id = capture(env, data_dir)  # the run row is written while the database is up
    proxy.down()
    store_env = dict(env, GENESIS_DATABASE_URL=via_proxy)
    dlq = DeadLetters(redis.Redis.from_url(FRAMES, decode_responses=True))
    with workers(("detect", "detect", 1, "prefork"), ("recognize", "recognize", 1, "solo"), env=env, log_dir=logs), \
            workers(("store", "store", 1, "solo"), env=store_env, log_dir=logs):
        # Every store task retries (3 times, backoff up to 1 s) and then goes to the dead letters.
        wait_for(lambda: dlq.size() > 0 and redis.Redis.from_url(BROKER).llen("store") == 0
                 and not redis.Redis.from_url(BROKER).hlen("unacked"), 180, "store tasks in the dead letters")
        time.sleep(3)
        letters = dlq.list(limit=1000)
        assert letters and all(x.task_name.startswith("genesis.store.") for x in letters)
        assert all(x.retries == 3 for x in letters), [x.retries for x in letters]
        assert "OperationalError" in letters[0].exc_type, letters[0].exc_type
        assert stored_sightings(direct) == 0
        # drain does not wait for --timeout on a run whose messages are dead letters: it names them.
        stuck = subprocess.run([sys.executable, "-m", "genesis.cli.main", "drain", "--timeout", "600"], env=env,
                               capture_output=True, text=True, timeout=120, check=False)
        assert stuck.returncode != 0, stuck.stdout
        said = " ".join((stuck.stdout + stuck.stderr).split())
        assert run_id in said and "dead letters" in said and "genesis dlq replay --all" in said, said
        proxy.up()
        out = genesis_cli(env, "dlq", "replay", "--all")
        assert str(len(letters)) in out
        genesis_cli(env, "drain", "--timeout", "120")
    assert dlq.size() == 0
    got = report(env, run_id)
    assert got["run"]["status"] == "finished"
    assert got["results"] == want
    assert stored_sightings(direct, finished=True) == sum(t["frames"] for t in want["tracks"])
    proxy.down()


def test_corrupt_frame_and_bad_message_go_to_dead_letters(env: dict[str, str], data_dir: Path) -> None:
    from celery import Celery

    from genesis.celery import configure
    from genesis.config import load_settings

    logs = Path(env["TEST_OUT_DIR"])
    run_id = capture(env, data_dir)
    frames = redis.Redis.from_url(FRAMES)
    keys = sorted(k.decode() for k in frames.scan_iter(match=f"genesis:frame:entrance:{run_id}:*"))
    assert len(keys) == 40
    corrupt = next(k for k in keys if k.endswith(":9"))
    frames.set(corrupt, b"\xff\xd8 this is not a JPEG", keepttl=True)
    app = Celery("sender", set_as_current=False)
    configure(app, load_settings(env["GENESIS_CONFIG"], env))
    app.send_task("genesis.detect", args=[{"camera_id": "entrance", "bogus": 1}, run_id, 0], queue="detect")
    with workers(*SPECS, env=env, log_dir=logs):
        genesis_cli(env, "drain", "--timeout", "300")
    got = report(env, run_id)
    assert got["run"]["status"] == "finished"
    assert got["results"]["frames"] == 39 and got["run"]["skipped_frames"] == 1
    letters = DeadLetters(redis.Redis.from_url(FRAMES, decode_responses=True)).list(limit=10)
    errors = sorted(f"{x.exc_type}: {x.exc_message}" for x in letters)
    assert len(letters) == 2, errors
    assert any("not a decodable image" in e for e in errors)
    assert any("undecodable frame message" in e for e in errors)
    listing = genesis_cli(env, "dlq", "list")
    assert "genesis.detect" in listing
