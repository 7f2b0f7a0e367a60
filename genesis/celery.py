"""The Celery application: ``celery -A genesis worker -Q detect`` (or recognize, analytics, store, gpu).

Configured from the Genesis settings at import (``$GENESIS_CONFIG`` or configs/settings.yaml,
plus GENESIS_* overrides): JSON messages only, late acknowledgement, one message at a time
on the model queues, and a Redis visibility timeout longer than the longest task.
"""

from __future__ import annotations

from celery import Celery

from genesis.config import Settings, default_settings
from genesis.services.schedule import beat_schedule
from genesis.tasks.routing import QUEUES, celery_routes


def configure(app: Celery, settings: Settings) -> None:
    d = settings.distributed
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="detect",
        task_create_missing_queues=True,
        task_routes=celery_routes(settings),
        broker_transport_options={"visibility_timeout": d.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=d.task_events,
        task_send_sent_event=d.task_events,
        worker_hijack_root_logger=False,
        # Message bodies that are not even JSON go to the dead letters too.
        worker_consumer="genesis.tasks.base:DeadLetterConsumer",
        timezone="UTC",
        beat_schedule=beat_schedule(settings),
    )
    app.conf.genesis_settings = settings


app = Celery("genesis", include=[
    "genesis.tasks.detect",
    "genesis.tasks.sequence",
    "genesis.tasks.store",
    "genesis.tasks.alerts",
    "genesis.tasks.identities",
    "genesis.tasks.analytics",
])
configure(app, default_settings())

from genesis.ops import celery_hooks  # noqa: E402,F401  (the ops endpoint and the task metrics)
from genesis.tasks import heartbeat  # noqa: E402,F401  (worker heartbeats: dead workers' messages come back)

__all__ = ["QUEUES", "app", "configure"]
