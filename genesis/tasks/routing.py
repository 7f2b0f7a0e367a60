"""The one place that says which task runs on which queue."""

from __future__ import annotations

from genesis.config import Settings

QUEUES = ("detect", "recognize", "analytics", "store", "gpu")

DETECT = "genesis.detect"
SEQUENCE = "genesis.sequence"
SAVE_OUTCOME = "genesis.store.save_outcome"
SAVE_TRACKS = "genesis.store.save_tracks"
FINISH_RUN = "genesis.store.finish_run"
SAVE_ALERTS = "genesis.store.save_alerts"
DELIVER_ALERT = "genesis.services.alerts.deliver"
SAVE_TRACK_FACES = "genesis.identities.save_track_faces"
ROLLUP = "genesis.analytics.rollup"
PURGE = "genesis.analytics.purge"
STORAGE = "genesis.analytics.storage"


def task_queues(settings: Settings) -> dict[str, str]:
    """Task name -> queue. The model-heavy stages can be sent to ``gpu`` by configuration."""
    d = settings.distributed
    return {
        DETECT: d.detect_queue,
        SEQUENCE: d.recognize_queue,
        SAVE_OUTCOME: "store",
        SAVE_TRACKS: "store",
        FINISH_RUN: "store",
        SAVE_ALERTS: "store",
        DELIVER_ALERT: "analytics",
        SAVE_TRACK_FACES: "store",
        ROLLUP: "analytics",
        PURGE: "analytics",
        STORAGE: "analytics",
    }


def celery_routes(settings: Settings) -> dict[str, dict[str, str]]:
    return {name: {"queue": queue} for name, queue in task_queues(settings).items()}


def queue_of(settings: Settings, task_name: str) -> str:
    return task_queues(settings)[task_name]
