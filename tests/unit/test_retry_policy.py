"""The retry policy of the pipeline tasks with the shipped defaults: a transient error (the
database or Redis away) is retried long enough to outlast a restart of either."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery import Celery, Task
from celery.exceptions import Retry

from genesis.config import DistributedConfig
from genesis.tasks.base import PipelineTask, half_jitter


def test_default_retries_outlast_a_database_restart() -> None:
    low, high = DistributedConfig().retry_window_s()
    assert low >= 90, low  # a PostgreSQL or Redis restart, a failover
    assert high <= 200, high  # and a dead letter within minutes when it is really down
    assert DistributedConfig(max_retries=0).retry_window_s() == (0.0, 0.0)


def test_half_jitter_keeps_at_least_half_the_backoff() -> None:
    waits = [half_jitter(8.0) for _ in range(2000)]
    assert min(waits) >= 4.0 and max(waits) <= 8.0
    assert max(waits) - min(waits) > 3.0  # spread, not a constant


def test_a_transient_errors_retry_waits_half_to_all_of_its_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Celery("retry-policy", set_as_current=False)

    @app.task(base=PipelineTask, name="test.retry.policy", bind=True)
    def flaky(self: PipelineTask) -> None: ...

    sent: list[float | None] = []

    def celery_retry(self: Task, *args: Any, **kw: Any) -> Retry:
        sent.append(args[5] if len(args) > 5 else kw.get("countdown"))
        raise Retry("retry")

    monkeypatch.setattr(Task, "retry", celery_retry)
    task = app.tasks["test.retry.policy"]
    for _ in range(200):
        with pytest.raises(Retry):
            task.retry(exc=redis.ConnectionError("down"), countdown=16)
    assert all(c is not None and 8 <= c <= 16 for c in sent), sent[:5]
    sent.clear()
    with pytest.raises(Retry):
        task.retry(exc=KeyError("a bug is not backed off"), countdown=16)
    assert sent == [16]


def test_a_retry_the_pooled_connection_cannot_send_goes_on_a_new_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a Redis restart kombu's pooled producer can hold a closed channel (AttributeError on
    send, which Celery turns into a Reject that would drop the message): the retry is sent again
    on a new connection; a second failure that is not the broker's is raised."""
    from celery.exceptions import Reject

    from genesis.tasks import base

    app = Celery("retry-fresh", set_as_current=False, broker="memory://")

    @app.task(base=PipelineTask, name="test.retry.fresh", bind=True)
    def flaky(self: PipelineTask) -> None: ...

    calls: list[dict[str, Any]] = []

    def celery_retry(self: Task, *args: Any, **kw: Any) -> Retry:
        calls.append(kw)
        if len(calls) == 1:
            raise Reject(AttributeError("'NoneType' object has no attribute 'client'"), False)
        raise Retry("sent")

    monkeypatch.setattr(Task, "retry", celery_retry)
    monkeypatch.setattr(base.time, "sleep", lambda s: None)
    task = app.tasks["test.retry.fresh"]
    with pytest.raises(Retry):
        task.retry(exc=redis.ConnectionError("down"), countdown=2)
    assert "connection" not in calls[0] and calls[1]["connection"] is not None

    calls.clear()

    def always_broken(self: Task, *args: Any, **kw: Any) -> Retry:
        calls.append(kw)
        raise Reject(TypeError("not serializable"), False)

    monkeypatch.setattr(Task, "retry", always_broken)
    with pytest.raises(Reject):
        task.retry(exc=redis.ConnectionError("down"), countdown=2)
    assert len(calls) == 2  # once pooled, once on a new connection, then raised
