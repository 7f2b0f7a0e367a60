"""How a Celery app of Genesis is configured from the settings: JSON messages only, late
acknowledgement, one message at a time on the model queues, a Redis visibility timeout longer than
the longest task, the routing table and the beat schedule.

Used by the worker app (:mod:`genesis.celery`) and by every process that only sends messages
(capture, the API, the CLI): :func:`make_app` builds such an app without importing any task.
"""

from __future__ import annotations

from celery import Celery

from genesis.config import Settings
from genesis.tasks.routing import celery_routes, task_queues
from genesis.tasks.schedule import beat_schedule

CHILD_START_TIMEOUT_S = 300.0
"""How long a new pool child may take to start, its model load included, before Celery kills it as hung."""


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
        # A prefork child loads its model before it says it is up (genesis.tasks.detect): a slow load on a busy
        # machine is not taken for a hung child (Celery's default is 4 s).
        worker_proc_alive_timeout=CHILD_START_TIMEOUT_S,
        task_default_queue="detect",
        task_create_missing_queues=True,
        task_routes=celery_routes(settings),
        task_annotations=time_limits(settings),
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


def time_limits(settings: Settings) -> dict[str, dict[str, float]]:
    """Celery task annotations: each task's hard time limit, the one of its queue
    (``distributed.task_time_limit_s``; genesis.tasks.base retries a task stopped by it)."""
    limits = settings.distributed.task_time_limit_s
    return {name: {"time_limit": limits[queue]} for name, queue in task_queues(settings).items() if queue in limits}


def make_app(settings: Settings) -> Celery:
    """A Celery app configured from these settings (only to send messages: no tasks needed)."""
    app = Celery("genesis", set_as_current=False)
    configure(app, settings)
    return app
