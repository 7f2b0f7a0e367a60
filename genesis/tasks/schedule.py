"""The beat schedule, built in one place from the settings (``celery -A genesis beat``)."""

from __future__ import annotations

from typing import Any

from genesis.config import Settings
from genesis.tasks import routing


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """One entry per configured rollup granularity, one for the retention purge, one for storage upkeep
    (day partitions ahead, heatmap grids merged).

    Each entry names the task, its queue (from `genesis.tasks.routing`) and its interval in
    seconds; nothing when ``rollups.enabled`` is false.
    """
    cfg = settings.rollups
    if not cfg.enabled:
        return {}
    queue = routing.queue_of(settings, routing.ROLLUP)
    schedule: dict[str, dict[str, Any]] = {}
    for granularity in cfg.granularities:
        schedule[f"rollup-{granularity}"] = {
            "task": routing.ROLLUP,
            "schedule": cfg.every_s(granularity),
            "args": (granularity,),
            "options": {"queue": queue, "expires": cfg.every_s(granularity)},
        }
    schedule["retention-purge"] = {
        "task": routing.PURGE,
        "schedule": cfg.purge_every_s,
        "args": (),
        "options": {"queue": routing.queue_of(settings, routing.PURGE), "expires": cfg.purge_every_s},
    }
    schedule["storage-upkeep"] = {
        "task": routing.STORAGE,
        "schedule": cfg.storage_every_s,
        "args": (),
        "options": {"queue": routing.queue_of(settings, routing.STORAGE), "expires": cfg.storage_every_s},
    }
    return schedule
