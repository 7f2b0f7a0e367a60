"""Test-only Celery app for tests/integration/test_shutdown.py, run by real worker processes:

    celery -A tests.integration.ops_tasks worker -Q opstest -c 1

Configured like the pipeline's app (``genesis.celery.configure``: late acks, prefetch 1) with
a task of the pipeline's base class that takes a while, so a worker can be stopped mid-task.
"""

from __future__ import annotations

import time

import redis
from celery import Celery

from genesis.celery import configure
from genesis.config import default_settings
from genesis.tasks.base import PipelineTask

QUEUE = "opstest"
SLOW = "test.ops.slow"

settings = default_settings()
app = Celery("genesis_ops_test")
configure(app, settings)

_redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)


@app.task(base=PipelineTask, name=SLOW, bind=True)
def slow(self: PipelineTask, key: str, seconds: float) -> None:
    """Marks ``<key>:started``, works ``seconds``, then marks ``<key>:done``."""
    _redis.set(f"{key}:started", self.request.hostname or "?")
    time.sleep(seconds)
    _redis.set(f"{key}:done", self.request.hostname or "?")
