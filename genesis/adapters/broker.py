"""The Redis broker of Celery, read directly: the lists behind a queue and how many messages wait
on it (capture backpressure, ``/metrics`` queue depths, ``genesis drain``, the API's status)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel

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
