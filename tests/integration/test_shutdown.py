"""Graceful shutdown of a worker: SIGTERM is Celery's warm shutdown. The task in flight runs to
its end (and is acknowledged), the messages the worker had not started stay on the queue (late
acks: nothing is lost) and another worker runs them."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.integration import ops_tasks
from tests.integration.workers import Worker
from tests.services import redis_url

URL = redis_url(10)


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    client = redis.Redis.from_url(URL)
    client.flushdb()
    e = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    e.update(GENESIS_BROKER_URL=URL, GENESIS_REDIS_URL=URL, GENESIS_DATABASE_URL=f"sqlite:///{tmp_path / 'g.db'}",
             PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    yield e
    client.flushdb()


def start_worker(env: dict[str, str], log_dir: Path, name: str) -> Worker:
    w = Worker(name, ops_tasks.QUEUE, env, log_dir, command=[
        sys.executable, "-m", "celery", "-A", "tests.integration.ops_tasks", "worker", "-Q", ops_tasks.QUEUE,
        "-n", f"{name}@localhost", "-c", "1", "-P", "prefork", "--without-mingle", "--without-gossip",
        "--loglevel", "INFO",
    ])
    w.wait_ready()
    return w


def wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigterm_finishes_the_task_in_flight_and_leaves_the_rest_queued(env: dict[str, str], tmp_path: Path) -> None:
    rds = redis.Redis.from_url(URL, decode_responses=True)
    sender = Celery("sender", broker=URL, set_as_current=False)
    first = start_worker(env, tmp_path, "first")
    try:
        for i in range(3):
            sender.send_task(ops_tasks.SLOW, args=[f"t{i}", 2.0], queue=ops_tasks.QUEUE)
        wait(lambda: rds.get("t0:started"), 30, "the first task to start")
        assert rds.get("t0:done") is None
        os.kill(first.proc.pid, signal.SIGTERM)  # what `docker stop` sends (to the main process only)
        assert first.proc.wait(30) == 0
    finally:
        first.stop()
    log = first.log.read_text()
    assert "Warm shutdown" in log or "warm shutdown" in log.lower(), log
    # The task in flight ran to its end; the two others were not started and are still queued.
    assert rds.get("t0:done") == "first@localhost"
    assert rds.get("t1:started") is None and rds.get("t2:started") is None
    second = start_worker(env, tmp_path, "second")
    try:
        wait(lambda: rds.get("t1:done") and rds.get("t2:done"), 30, "the queued tasks on the next worker")
    finally:
        second.stop()
    assert rds.get("t1:done") == rds.get("t2:done") == "second@localhost"
    assert rds.get("t0:done") == "first@localhost"  # not run twice
