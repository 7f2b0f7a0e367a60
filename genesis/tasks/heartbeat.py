"""Worker hooks of :mod:`genesis.pipeline.liveness`, connected when :mod:`genesis.celery` is imported.

- ``worker_ready`` (the worker's main process): start its heartbeat thread, which also puts
  dead workers' messages back on their queues and marks abandoned runs.
- ``task_received`` (main process, for every message taken, countdowns included): record
  this worker as the message's holder.
- ``worker_shutdown``: stop the thread and delete the heartbeat (a clean stop is not a death:
  Celery gives back the messages it still holds itself).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import redis
from celery import signals

from genesis.adapters.db import Repository
from genesis.config import Settings
from genesis.pipeline.liveness import WorkerHeartbeat, note_holder

log = logging.getLogger(__name__)

_state: dict[str, WorkerHeartbeat] = {}


def _settings_of(app: Any) -> Settings | None:
    s = app.conf.get("genesis_settings") if app is not None else None
    return s if isinstance(s, Settings) else None


@lru_cache(maxsize=4)
def _broker(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


@lru_cache(maxsize=4)
def _repository(url: str) -> Repository:
    return Repository(url)


def in_hand() -> set[str] | None:
    """Delivery tags of the messages this worker process has in memory: running, prefetched, or
    waiting for their countdown (Celery's worker state, read from the heartbeat thread: None
    when it changed while being read)."""
    from celery.worker import state

    for _ in range(3):
        try:
            requests = [*state.requests.values(), *getattr(state, "scheduled_requests", ())]
        except RuntimeError:  # changed size during iteration
            continue
        tags = set()
        for request in requests:
            tag = getattr(getattr(request, "message", None), "delivery_tag", None)
            if tag:
                tags.add(str(tag))
        return tags
    return None


def _reap_runs(app: Any, settings: Settings) -> None:
    from genesis.pipeline.liveness import reap_stale_runs

    # Its own clients (those of genesis.tasks.runtime are the tasks'; this runs in the main process).
    reap_stale_runs(settings, _broker(settings.redis_url), app, _repository(settings.database_url))


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    settings = _settings_of(app)
    hostname = getattr(sender, "hostname", None)
    url = str(getattr(getattr(app, "conf", None), "broker_url", "") or "")
    if settings is None or not hostname or not url.startswith(("redis://", "rediss://")):
        return
    d = settings.distributed
    beat = WorkerHeartbeat(app, _broker(url), hostname, d.worker_heartbeat_s, d.worker_dead_after_s,
                           reap_runs=lambda: _reap_runs(app, settings), runs_every_s=d.run_stale_after_s / 4,
                           in_hand=in_hand)
    _state["heartbeat"] = beat
    beat.start()


def _on_task_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    settings = _settings_of(app)
    message = getattr(request, "message", None)
    tag = getattr(message, "delivery_tag", None)
    hostname = getattr(sender, "hostname", None)
    url = str(getattr(getattr(app, "conf", None), "broker_url", "") or "")
    if settings is None or not tag or not hostname or not url.startswith(("redis://", "rediss://")):
        return
    try:
        note_holder(_broker(url), str(tag), hostname, settings.distributed.visibility_timeout_s)
    except redis.RedisError as exc:  # the message then counts as unclaimed: restored a bit later if we die
        log.warning("holder of message %s not recorded: %s", tag, exc)


def _on_worker_shutdown(**_: Any) -> None:
    beat = _state.pop("heartbeat", None)
    if beat is not None:
        beat.stop()
        beat.join(timeout=5)


signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="genesis.heartbeat.ready")
signals.task_received.connect(_on_task_received, weak=False, dispatch_uid="genesis.heartbeat.received")
signals.worker_shutdown.connect(_on_worker_shutdown, weak=False, dispatch_uid="genesis.heartbeat.shutdown")
