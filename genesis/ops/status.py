"""What each kind of process shows on its endpoint: workers, the capture, beat.

``/status`` is JSON with at least ``role``, ``pid``, ``uptime_s``, ``queues``, ``concurrency``,
``models``, ``processed`` and ``last_error``; ``/health`` is :mod:`genesis.ops.health`; ``/metrics``
is the registry of :mod:`genesis.ops.metrics` plus the scrape-time collectors.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genesis.config import Settings
from genesis.ops import health as h
from genesis.ops import metrics as m
from genesis.ops.collectors import (
    CaptureCollector,
    CaptureStatuses,
    DeadLetterCollector,
    QueueCollector,
    StorageCollector,
)

if TYPE_CHECKING:
    from celery import Celery

LAST_ERROR_FILE = "last_error.json"
_last_error_lock = threading.Lock()
_last_error: dict[str, dict[str, Any]] = {}


def record_last_error(task: str, task_id: str, error: str) -> None:
    """Remember the last task failure of this process group (shared by the pool children through
    the multiprocess folder, else kept in memory)."""
    entry = {"at": time.time(), "task": task, "task_id": task_id, "error": error}
    folder = m.multiprocess_dir()
    with _last_error_lock:
        _last_error["last"] = entry
        if folder is not None:
            tmp = Path(folder) / f".{LAST_ERROR_FILE}.{os.getpid()}"
            tmp.write_text(json.dumps(entry))
            tmp.replace(Path(folder) / LAST_ERROR_FILE)


def last_error() -> dict[str, Any] | None:
    folder = m.multiprocess_dir()
    if folder is not None:
        try:
            data: dict[str, Any] = json.loads((Path(folder) / LAST_ERROR_FILE).read_text())
            return data
        except (OSError, ValueError):
            return None
    with _last_error_lock:
        last = _last_error.get("last")
        return dict(last) if last else None


class BaseProbe:
    """Health checks, status and metrics common to every process."""

    def __init__(self, settings: Settings, role: str, app: Celery | None = None) -> None:
        from prometheus_client import CollectorRegistry

        from genesis.tasks.routing import QUEUES

        self.settings = settings
        self.role = role
        self.started = time.time()
        self._mono = time.monotonic()
        self.timeout = settings.ops.check_timeout_s
        if app is None:
            from genesis.tasks.celery_config import make_app

            app = make_app(settings)
        self.app = app
        self.extra = CollectorRegistry(auto_describe=False)
        self.extra.register(QueueCollector(app, QUEUES))
        self.extra.register(DeadLetterCollector(settings))

    # -- health -------------------------------------------------------------------------------

    def checks(self) -> list[h.Check]:
        return [h.check_broker(self.settings.broker_url, self.timeout), h.check_eviction(self.settings)]

    def health(self) -> tuple[int, dict[str, Any]]:
        result = h.combine(self.checks())
        body = {"role": self.role, **result.to_dict()}
        return result.http_status, body

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "pid": os.getpid(),
            "started_at": self.started,
            "uptime_s": round(time.monotonic() - self._mono, 3),
            "queues": [],
            "concurrency": None,
            "models": {},
            "processed": {},
            "last_error": None,
        }

    # -- metrics ------------------------------------------------------------------------------

    def metrics(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(m.registry())) + bytes(generate_latest(self.extra))


class WorkerProbe(BaseProbe):
    """A Celery worker (a launcher or ``celery -A genesis worker``): the main process serves it and
    adds up what its pool children recorded."""

    def __init__(self, settings: Settings, role: str, controller: Any) -> None:
        super().__init__(settings, role, controller.app)
        self.controller = controller

    @property
    def queues(self) -> list[str]:
        try:
            return sorted(self.controller.app.amqp.queues.consume_from)
        except Exception:
            return []

    def stages(self) -> list[str]:
        d = self.settings.distributed
        queues = set(self.queues)
        return [s for s, q in (("detect", d.detect_queue), ("recognize", d.recognize_queue)) if q in queues]

    def models(self) -> dict[str, str]:
        return h.model_files(self.settings, self.stages())

    def loaded_models(self) -> set[str]:
        values = m.sample_values("genesis_model_loaded")
        return {dict(labels)["model"] for labels, v in values.items() if v >= 1}

    def checks(self) -> list[h.Check]:
        queues = set(self.queues)
        db_severity: h.Level = "failing" if queues & {"store", self.settings.distributed.recognize_queue} \
            else "degraded"
        return [
            *super().checks(),
            h.check_database(self.settings.database_url, self.timeout, db_severity),
            h.check_models(self.models(), self.loaded_models),
        ]

    def status(self) -> dict[str, Any]:
        processed: dict[str, dict[str, int]] = {}
        for labels, value in m.sample_values("genesis_tasks_total").items():
            lab = dict(labels)
            processed.setdefault(lab["task"], {})[lab["state"]] = int(value)
        loaded = self.loaded_models()
        pool = getattr(self.controller, "pool_cls", None)
        return {
            **super().status(),
            "hostname": getattr(self.controller, "hostname", None),
            "queues": self.queues,
            "concurrency": getattr(self.controller, "concurrency", None),
            "pool": getattr(pool, "__module__", str(pool)).rsplit(".", 1)[-1] if pool is not None else None,
            # the onnxruntime threads of each detector of this worker (0: onnxruntime's default, one per core)
            "detector_threads": self.settings.detector.threads if "detect" in self.stages() else None,
            "models": {name: {"file": where, "loaded": name in loaded} for name, where in self.models().items()},
            "processed": processed,
            "last_error": last_error(),
        }


class CaptureProbe(BaseProbe):
    """The capture process: one loop per camera."""

    def __init__(self, settings: Settings, statuses: CaptureStatuses) -> None:
        super().__init__(settings, "capture")
        self.statuses = statuses
        self.extra.register(CaptureCollector(statuses))

    def checks(self) -> list[h.Check]:
        return [
            *super().checks(),
            h.check_database(self.settings.database_url, self.timeout, "failing"),
            *h.check_cameras(self.statuses()),
        ]

    def status(self) -> dict[str, Any]:
        from genesis.tasks.routing import DETECT, queue_of

        cameras = self.statuses()
        errors = [c["last_error"] for c in cameras if c.get("last_error")]
        return {
            **super().status(),
            "queues": [queue_of(self.settings, DETECT)],
            "concurrency": len(cameras),
            "cameras": cameras,
            "processed": {
                "read": sum(c["read"] for c in cameras),
                "published": sum(c["published"] for c in cameras),
                "dropped": sum(c["dropped"] for c in cameras),
            },
            "last_error": errors[-1] if errors else None,
        }


class ApiProbe(BaseProbe):
    """``genesis serve``: the REST API and dashboard (which read the database and the broker)."""

    def __init__(self, settings: Settings, listen: str | None = None) -> None:
        super().__init__(settings, "api")
        self.extra.register(StorageCollector(settings))
        self.listen = listen or f"{settings.api.host}:{settings.api.port}"
        """Where the API really listens (``genesis serve``'s --host/--port override the settings)."""

    def checks(self) -> list[h.Check]:
        return [*super().checks(), h.check_database(self.settings.database_url, self.timeout, "failing")]

    def status(self) -> dict[str, Any]:
        return {**super().status(), "listen": self.listen}


class BeatProbe(BaseProbe):
    """``celery -A genesis beat``: the periodic task scheduler."""

    def __init__(self, settings: Settings, app: Celery, schedule: Callable[[], list[str]]) -> None:
        super().__init__(settings, "beat", app)
        self.extra.register(StorageCollector(settings))
        self.schedule = schedule

    def status(self) -> dict[str, Any]:
        return {**super().status(), "schedule": self.schedule(), "concurrency": 1}
