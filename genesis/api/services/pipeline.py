"""Cameras (configuration + database), pipeline status (queues, workers, DLQ) and DLQ replay."""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any

import redis

from genesis.adapters.db import Repository
from genesis.adapters.db.events import read_events
from genesis.adapters.dlq import DeadLetter, DeadLetters
from genesis.config import Settings
from genesis.domain.redact import redact, redact_opt
from genesis.tasks.dispatch import replay
from genesis.tasks.routing import QUEUES

if TYPE_CHECKING:
    from celery import Celery


def cameras(repo: Repository, settings: Settings) -> list[dict[str, Any]]:
    """Every camera of the configuration or the database, with its runs."""
    with read_events(repo.engine) as db:
        known = db.camera_runs_overview()
    stored, counts, latest = known.names, known.runs, known.latest
    configured = {c.id: c for c in settings.cameras}
    out = []
    for cam_id in sorted(set(stored) | set(configured)):
        cfg = configured.get(cam_id)
        last = latest.get(cam_id)
        out.append({
            "id": cam_id,
            "name": (cfg.name if cfg and cfg.name else None) or stored.get(cam_id) or cam_id,
            "configured": cfg is not None,
            "source": redact_opt(cfg.source) if cfg else None,
            "zones": [z.name for z in cfg.zones] if cfg else [],
            "lines": [ln.name for ln in cfg.lines] if cfg else [],
            "runs": int(counts.get(cam_id, 0)),
            "latest_run": None if last is None else {
                "run_id": last.run_id, "status": last.status, "started_at": last.started_at, "frames": last.frames,
            },
        })
    return out


def storage(repo: Repository, per_day: bool, settings: Settings) -> dict[str, Any]:
    """Rows and bytes per table, per camera and camera-day, and what each camera holds at the configured
    retention (``genesis db stats --json``)."""
    from genesis.adapters.db.storage import storage_stats
    from genesis.services.rollups import kept_days

    return storage_stats(repo.engine, per_day=per_day, keep_days=kept_days(settings),
                         pack_after_days=settings.retention.packed_after_days()).to_dict()


def queue_depths(settings: Settings, app: Celery) -> dict[str, int] | str:
    """Messages waiting per queue, or why they cannot be read."""
    from genesis.adapters.broker import detect_backlog

    try:
        return {q: detect_backlog(app, q) for q in QUEUES}
    except ValueError as exc:
        return redact(str(exc))
    except redis.RedisError as exc:
        return redact(f"cannot reach the broker: {exc}")


def workers(app: Celery, timeout: float) -> list[dict[str, Any]] | str:
    """Workers that answer a ping within ``timeout`` seconds, with the queues they consume."""
    try:
        # One broadcast: every live worker answers with the queues it consumes.
        queues = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:  # kombu raises many kinds; the status reports them
        return redact(f"cannot inspect workers: {exc}")
    return [
        {"name": name, "queues": sorted(q.get("name", "") for q in queues[name] or [])}
        for name in sorted(queues)
    ]


def status(settings: Settings, client: redis.Redis, letters: DeadLetters, app: Celery, timeout: float,
           repo: Repository) -> dict[str, Any]:
    try:
        client.ping()
        redis_ok: bool | str = True
    except redis.RedisError as exc:
        redis_ok = redact(str(exc))
    dlq: int | str
    try:
        dlq = letters.size()
    except redis.RedisError as exc:
        dlq = redact(f"cannot reach Redis: {exc}")
    depths = queue_depths(settings, app)
    found = workers(app, timeout) if isinstance(depths, dict) else "broker unreachable"
    if redis_ok is True and isinstance(depths, dict):
        from genesis.pipeline.liveness import reap_stale_runs

        with suppress(redis.RedisError):  # a run nothing works on any more is abandoned, not running
            reap_stale_runs(settings, client, app, repo)
    from genesis.pipeline.lease import reap_abandoned_embedded

    reap_abandoned_embedded(repo)  # an embedded run whose process on this host is gone is not running
    with read_events(repo.engine) as db:
        running = db.running_runs()
    return {
        "database": {"ok": True, "dialect": repo.dialect, "running_runs": running},
        "redis": {"ok": redis_ok is True, "error": None if redis_ok is True else redis_ok},
        "queues": depths if isinstance(depths, dict) else None,
        "queues_error": None if isinstance(depths, dict) else depths,
        "workers": found if isinstance(found, list) else None,
        "workers_error": None if isinstance(found, list) else found,
        "dlq_size": dlq if isinstance(dlq, int) else None,
        "dlq_error": None if isinstance(dlq, int) else dlq,
    }


def letter_summary(letter: DeadLetter) -> dict[str, Any]:
    return {"id": letter.id, "task_name": letter.task_name, "queue": letter.queue, "error": letter.error,
            "retries": letter.retries, "failed_at": letter.failed_at, "replayable": letter.replayable}


def dlq_list(store: DeadLetters, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    return [letter_summary(x) for x in store.list(limit=limit, offset=offset, newest_first=True)], store.size()


def dlq_replay(settings: Settings, app: Celery, store: DeadLetters, letter: DeadLetter) -> str:
    return replay(app, settings, letter, store)
