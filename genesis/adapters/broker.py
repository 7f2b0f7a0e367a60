"""The Redis broker of Celery, read directly: the lists behind a queue and how many messages wait
on it (capture backpressure, ``/metrics`` queue depths, ``genesis drain``, the API's status), and how fast
the workers drain it (:func:`note_done`, :func:`drain_rate`: the capture's backlog in seconds)."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel

from genesis.adapters.redis_keys import queue_done_key

if TYPE_CHECKING:
    from celery import Celery


@lru_cache(maxsize=16)
def broker_client(url: str) -> redis.Redis:
    """One shared client per broker URL."""
    return redis.Redis.from_url(url)


def broker_queue_keys(app: Celery, queue_name: str) -> list[str]:
    """The Redis lists that hold a queue's messages on kombu's Redis transport.

    kombu keeps one list per priority step: the queue's own name for priority 0 and
    ``<queue><sep><step>`` for the others (steps 0, 3, 6, 9 and sep ``\\x06\\x16`` by
    default; both can be changed in ``broker_transport_options``), all behind the optional
    ``global_keyprefix``.
    """
    options: dict[str, Any] = dict(app.conf.broker_transport_options or {})
    sep = str(options.get("sep", Channel.sep))
    steps = list(options.get("priority_steps", PRIORITY_STEPS))
    prefix = str(options.get("global_keyprefix", ""))
    keys = []
    for step in steps:
        name = f"{queue_name}{sep}{step}" if step else queue_name
        keys.append(prefix + name)
    return list(dict.fromkeys(keys))


def detect_backlog(app: Celery, queue_name: str) -> int:
    """Messages waiting on a queue of the app's Redis broker (all priorities together).

    Messages a worker has taken but not yet acknowledged are no longer in the list and do not
    count: they are bounded by the workers' concurrency and prefetch.
    """
    url = str(app.conf.broker_url or "")
    if not url.startswith(("redis://", "rediss://")):
        scheme = url.partition("://")[0] or "none"
        raise ValueError(f"the capture backlog needs a Redis broker, not {scheme}")
    client = broker_client(url)
    with client.pipeline(transaction=False) as pipe:
        for key in broker_queue_keys(app, queue_name):
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())


DRAIN_WINDOW_S = 60
"""The drain rate of a queue is measured over its tasks finished in the last this many seconds."""
MIN_SPAN_S = 5.0
"""A rate is never taken over less than this (the first tasks of a worker that just started)."""
MIN_DONE = 5
"""Fewer tasks finished in the window say too little: the rate is unknown (a worker that just started, a
queue that barely moves), and only the backlog's count applies."""


def note_done(client: redis.Redis, queue_name: str, now: float | None = None) -> None:
    """Count one task of ``queue_name`` finished now (the workers call it after every task)."""
    key = queue_done_key(queue_name, int(time.time() if now is None else now))
    with client.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, DRAIN_WINDOW_S * 2)
        pipe.execute()


def drain_rate(client: redis.Redis, queue_name: str, now: float | None = None) -> float | None:
    """Tasks of ``queue_name`` finished per second over the last :data:`DRAIN_WINDOW_S` seconds (from the first
    second that had one, :data:`MIN_SPAN_S` at least); None when fewer than :data:`MIN_DONE` finished (no
    worker, one that just started, or nothing sent): unknown, not zero."""
    current = int(time.time() if now is None else now)
    seconds = list(range(current - DRAIN_WINDOW_S, current + 1))
    counts = [int(v or 0) for v in client.mget([queue_done_key(queue_name, s) for s in seconds])]
    first = next((s for s, n in zip(seconds, counts, strict=True) if n), None)
    if first is None or sum(counts) < MIN_DONE:
        return None
    span = max(float(current + 1 - first), MIN_SPAN_S)
    return sum(counts) / span


def backlog_seconds(app: Celery, queue_names: list[str]) -> float | None:
    """How long the workers need to drain what waits on these queues at their measured rates (the longest
    of them); None when no queue with messages waiting has a measured rate."""
    client = broker_client(str(app.conf.broker_url or ""))
    longest: float | None = None
    for name in dict.fromkeys(queue_names):
        waiting = detect_backlog(app, name)
        if not waiting:
            longest = max(longest or 0.0, 0.0)
            continue
        rate = drain_rate(client, name)
        if rate is not None:
            longest = max(longest or 0.0, waiting / rate)
    return longest


def queue_wait_s(app: Celery, queue_name: str, cap_s: float) -> float:
    """How long a message sent to ``queue_name`` now waits before a worker takes it, at most ``cap_s``: what
    waits ahead of it at the workers' measured rate; ``cap_s`` when messages wait and no rate is measured (the
    workers finished fewer than :data:`MIN_DONE` tasks in the window: they are starting, starved, or gone);
    0 for an empty queue."""
    waiting = detect_backlog(app, queue_name)
    if not waiting:
        return 0.0
    rate = drain_rate(broker_client(str(app.conf.broker_url or "")), queue_name)
    return cap_s if rate is None else min(cap_s, waiting / rate)
