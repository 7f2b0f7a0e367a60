"""Test-only Celery app for tests/integration/test_dlq.py, run by real worker processes:

    celery -A tests.integration.dlq_tasks worker -Q dlqtest --pool solo -c 1

Settings come from the environment (GENESIS_BROKER_URL, GENESIS_REDIS_URL,
GENESIS_DISTRIBUTED__MAX_RETRIES, ...), as for the real app. Each task counts its attempts in
Redis under ``<key>:attempts`` (and their times under ``<key>:times``) and marks success with
``<key>:done`` = the number of retries it took.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from genesis.celery import configure
from genesis.config import default_settings
from genesis.tasks.base import PipelineTask, bad_input

QUEUE = "dlqtest"
PREFORK_QUEUE = "dlqtest_prefork"

FLAKY = "test.dlq.flaky"
DOWN = "test.dlq.down"
CORRUPT = "test.dlq.corrupt"
CRASH = "test.dlq.crash"
SLOW = "test.dlq.slow"
CRASH_RETRIES = 1

settings = default_settings()
app = Celery("genesis_dlq_test")
configure(app, settings)
app.conf.worker_consumer = "genesis.tasks.base:DeadLetterConsumer"

_redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)


def _attempt(key: str) -> int:
    with _redis.pipeline() as pipe:
        pipe.incr(f"{key}:attempts")
        pipe.rpush(f"{key}:times", time.time())
        n, _ = pipe.execute()
    return int(n)


@app.task(base=PipelineTask, name=FLAKY, bind=True)
def flaky(self: PipelineTask, key: str, failures: int) -> None:
    """A Redis outage for the first ``failures`` attempts, then success."""
    n = _attempt(key)
    if n <= failures:
        raise redis.exceptions.ConnectionError(f"simulated Redis outage (attempt {n})")
    _redis.set(f"{key}:done", self.request.retries)


@app.task(base=PipelineTask, name=DOWN, bind=True)
def down(self: PipelineTask, key: str) -> None:
    """A database that stays down until ``<key>:healed`` is set."""
    _attempt(key)
    if not _redis.get(f"{key}:healed"):
        raise ConnectionError("database is down")
    _redis.set(f"{key}:done", self.request.retries)


@app.task(base=PipelineTask, name=CORRUPT, bind=True)
def corrupt(self: PipelineTask, key: str, frame_hex: str) -> None:
    """Bad input: a frame that does not decode is a PermanentError (no retry)."""
    _attempt(key)
    with bad_input("frame"):
        data = bytes.fromhex(frame_hex)
    _redis.set(f"{key}:done", len(data))


@app.task(base=PipelineTask, name=CRASH, bind=True, max_retries=CRASH_RETRIES)
def crash(self: PipelineTask, key: str) -> None:
    """A poison message: the pool child dies on it every time. (One retry only: billiard takes
    seconds to notice a dead child, and the decorator's max_retries must win over the settings.)"""
    _attempt(key)
    os._exit(3)


@app.task(base=PipelineTask, name=SLOW, bind=True)
def slow(self: PipelineTask, key: str, seconds: float) -> None:
    """A task that works for ``seconds`` (long enough for its broker to restart meanwhile)."""
    _attempt(key)
    time.sleep(seconds)
    _redis.set(f"{key}:done", self.request.retries)
