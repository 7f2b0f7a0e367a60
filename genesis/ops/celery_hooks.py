"""Celery signal hooks: the ops endpoint of workers and beat, and the task metrics.

Connected when :mod:`genesis.celery` is imported. For a worker (a launcher, or a plain
``celery -A genesis worker``):

- ``worker_init`` (main process, before the pool starts): when the worker has an endpoint, give
  its process group an empty prometheus multiprocess folder, so that what the prefork children
  record is added up by the main process. A prefork worker that consumes the detect queue, with
  ``detector.threads`` 0, shares the CPUs among its children: each child's detector gets
  ``CPUs // children`` onnxruntime threads (:func:`genesis.backends.onnx.threads_per_process`).
- ``worker_ready`` (main process): warn (one log line each) when a Redis of the pipeline has an
  eviction policy that deletes keys silently (:mod:`genesis.adapters.redis_memory`); start the
  endpoint (``ops.host``, port below).
- ``task_prerun`` / ``task_postrun`` (where the task runs): ``genesis_tasks_total`` and
  ``genesis_task_duration_seconds`` per task and final state; ``task_failure``: the last error.
- ``worker_process_shutdown`` (a pool child exits): ``mark_process_dead``.
- ``worker_shutdown``: stop the endpoint, remove the multiprocess folder.

The port: ``ops.port`` when set (``GENESIS_OPS__PORT``; 0 = none), else the role's port from
``ops.ports`` when the role is one of them (the launchers set ``ops.role``), else none (a plain
``celery worker`` serves only when given a port). Beat (``beat_init``) serves on ``ops.port`` or
``ops.ports.beat``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from typing import Any

import redis
from celery import signals

from genesis.adapters.broker import broker_client, note_done
from genesis.config import Settings
from genesis.ops import metrics as m

log = logging.getLogger(__name__)

_state: dict[str, Any] = {}
_starts: dict[str, float] = {}
_starts_lock = threading.Lock()


def endpoint_port(settings: Settings, role: str) -> int:
    """The port of this process's endpoint (0: none)."""
    ops = settings.ops
    if ops.port is not None:
        return ops.port
    return int(getattr(ops.ports, role, 0)) if role in type(ops.ports).model_fields else 0


def _settings_of(app: Any) -> Settings | None:
    s = app.conf.get("genesis_settings") if app is not None else None
    return s if isinstance(s, Settings) else None


def prefork_children(worker: Any) -> int | None:
    """The number of children of a prefork worker (a ``WorkController`` at ``worker_init``); None for another pool
    or a concurrency not known yet (celery's ``auto``)."""
    pool = getattr(worker, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    children = getattr(worker, "concurrency", None)
    if "prefork" not in str(name) or not isinstance(children, int) or children < 1:
        return None
    return children


def _share_detector_cpus(worker: Any, settings: Settings) -> None:
    """``detector.threads`` 0 in a prefork detect worker: the CPUs divided among its children (they fork after
    this and keep the settings object as it is now)."""
    from genesis.backends.onnx import available_cpus, threads_per_process
    from genesis.tasks.routing import DETECT, queue_of  # messages: below this layer (genesis.tasks.runtime is above)

    children = prefork_children(worker)
    if children is None or settings.detector.threads:
        return
    if queue_of(settings, DETECT) not in set(worker.app.amqp.queues.consume_from or ()):
        return
    cpus = available_cpus()
    settings.detector.threads = threads_per_process(0, children, cpus)
    log.info("detect worker: %d prefork children on %d CPUs, %d onnxruntime thread(s) each (detector.threads 0)",
             children, cpus, settings.detector.threads)


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    settings = _settings_of(getattr(sender, "app", None))
    if settings is None:
        return
    _share_detector_cpus(sender, settings)
    role = settings.ops.role or "worker"
    port = endpoint_port(settings, role)
    _state.update(role=role, port=port, settings=settings)
    if port:
        try:
            folder = m.setup_multiprocess(settings.ops.metrics_dir, f"{role}-{os.getpid()}")
        except OSError as exc:  # an endpoint is never worth a worker that does not start
            log.error("ops endpoint off: cannot prepare the metrics folder under %s: %s",
                      settings.ops.metrics_dir or "the temporary folder", exc)
            _state["port"] = 0
            return
        _state["metrics_dir"] = folder


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    settings_now = _state.get("settings")
    if isinstance(settings_now, Settings) and not _state.get("eviction_checked"):
        _state["eviction_checked"] = True
        from genesis.adapters.redis_memory import eviction_warnings

        try:
            for warning in eviction_warnings(settings_now):
                log.warning("worker: %s", warning)
        except Exception:  # a warning is never worth a worker that does not start
            log.debug("eviction policy not checked", exc_info=True)
    if not _state.get("port") or "server" in _state:
        return
    from genesis.ops.server import OpsServer
    from genesis.ops.status import WorkerProbe

    settings: Settings = _state["settings"]
    controller = getattr(sender, "controller", sender)
    server = OpsServer(WorkerProbe(settings, _state["role"], controller), settings.ops.host, _state["port"])
    if server.start():
        _state["server"] = server


def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    server = _state.pop("server", None)
    if server is not None:
        server.stop()
    folder = _state.pop("metrics_dir", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    try:
        m.mark_process_dead(pid)
    except Exception:
        log.debug("mark_process_dead(%s) failed", pid, exc_info=True)


def _is_ours(task: Any) -> bool:
    return str(getattr(task, "name", "")).startswith("genesis.")


def _on_task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id and _is_ours(task):
        with _starts_lock:
            _starts[task_id] = time.perf_counter()


def _on_task_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    if not task_id or not _is_ours(task):
        return
    with _starts_lock:
        start = _starts.pop(task_id, None)
    try:
        m.observe_task(task.name, state or "UNKNOWN", None if start is None else time.perf_counter() - start)
    except Exception:  # metrics never break a task
        log.debug("task metric not recorded", exc_info=True)
    _note_done(task)


def _note_done(task: Any) -> None:
    """Count the task as finished on its queue: the drain rate the capture's backpressure reads."""
    queue = (getattr(task.request, "delivery_info", None) or {}).get("routing_key")
    url = str(task.app.conf.broker_url or "")
    if not queue or not url.startswith(("redis://", "rediss://")):
        return
    try:
        note_done(broker_client(url), str(queue))
    except redis.RedisError:  # the rate only guides the capture: never a task's failure
        log.debug("drain rate not recorded", exc_info=True)


def _on_task_failure(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                     **_: Any) -> None:
    if not _is_ours(sender):
        return
    from genesis.ops.status import record_last_error
    from genesis.tasks.base import describe_exception

    kind, message = describe_exception(exception)
    try:
        record_last_error(sender.name, task_id or "", f"{kind.rsplit('.', 1)[-1]}: {message}")
    except OSError:
        log.debug("last error not recorded", exc_info=True)


def _on_beat_init(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    settings = _settings_of(app)
    if settings is None or "server" in _state:
        return
    port = settings.ops.port if settings.ops.port is not None else settings.ops.ports.beat
    if not port:
        return
    from genesis.ops.server import OpsServer
    from genesis.ops.status import BeatProbe

    def schedule() -> list[str]:
        return sorted((getattr(app, "conf", {}).get("beat_schedule") or {}).keys())

    server = OpsServer(BeatProbe(settings, app, schedule), settings.ops.host, port)
    if server.start():
        _state["server"] = server


_UID = "genesis.ops.celery_hooks."
signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid=_UID + "worker_init")
signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid=_UID + "worker_ready")
signals.worker_shutdown.connect(_on_worker_shutdown, weak=False, dispatch_uid=_UID + "worker_shutdown")
signals.worker_process_shutdown.connect(_on_process_shutdown, weak=False, dispatch_uid=_UID + "process_shutdown")
signals.task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid=_UID + "task_prerun")
signals.task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid=_UID + "task_postrun")
signals.task_failure.connect(_on_task_failure, weak=False, dispatch_uid=_UID + "task_failure")
signals.beat_init.connect(_on_beat_init, weak=False, dispatch_uid=_UID + "beat_init")
