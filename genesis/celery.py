"""The Celery application: ``celery -A genesis worker -Q detect`` (or recognize, analytics, store, gpu).

Configured from the Genesis settings at import (``$GENESIS_CONFIG`` or configs/settings.yaml,
plus GENESIS_* overrides): JSON messages only, late acknowledgement, one message at a time
on the model queues, and a Redis visibility timeout longer than the longest task.
"""

from __future__ import annotations

from celery import Celery

from genesis.config import default_settings
from genesis.tasks.celery_config import configure
from genesis.tasks.routing import QUEUES

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
