"""Prometheus metrics of Genesis (``genesis_`` prefix, ``_total`` counters, ``_seconds`` histograms).

``prometheus_client`` is imported lazily, on the first metric used, so that a worker can point
``PROMETHEUS_MULTIPROC_DIR`` at its own folder (:func:`setup_multiprocess`, from the
``worker_init`` signal) before any value is created: under the prefork pool every child writes
its values to files there and the main process's ``/metrics`` adds them up. A process without
that variable (capture, beat, a solo worker started without an endpoint) keeps its values in
memory and serves the default registry.

Recorded where things happen (thin hooks; no stage changes its results):

- ``genesis_tasks_total{task,state}`` and ``genesis_task_duration_seconds{task,state}``: Celery's
  ``task_prerun``/``task_postrun`` signals (:mod:`genesis.ops.celery_hooks`).
- ``genesis_inference_duration_seconds{stage}``: :func:`time_inference` around a model call.
- ``genesis_end_to_end_latency_seconds``: capture (``FrameRef.captured_at``) to the stored rows.
- ``genesis_recognitions_total{outcome}``: stored recognition attempts, ``known`` or ``unknown``.
- ``genesis_alerts_total{kind}``: :func:`count_alert`.
- ``genesis_model_loaded{model}``: 1 once a worker process loaded the model.
- ``genesis_mqtt_published_total``, ``genesis_mqtt_dropped_total{reason}``, ``genesis_mqtt_connected``:
  the MQTT publisher (:mod:`genesis.services.mqtt`).

Collected when scraped (:mod:`genesis.ops.collectors`): queue depths, DLQ size, and the capture's
frames captured / published / dropped and camera connected.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
INFERENCE_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True, slots=True)
class _Metrics:
    tasks: Any
    task_duration: Any
    inference: Any
    end_to_end: Any
    recognitions: Any
    alerts: Any
    model_loaded: Any
    mqtt_published: Any
    mqtt_dropped: Any
    mqtt_connected: Any
    detector_batch: Any


_lock = threading.Lock()
_created: list[_Metrics] = []


def multiprocess_dir() -> str | None:
    """The prometheus multiprocess folder of this process group, if any."""
    return os.environ.get(MULTIPROC_ENV) or None


def setup_multiprocess(base: str | None, group: str) -> Path:
    """Give this process group its own, empty multiprocess folder (before any pool child starts).

    Sets ``PROMETHEUS_MULTIPROC_DIR`` for this process and the children it forks. Files left by
    an earlier process of the same group are removed, so counters start at zero.
    """
    folder = Path(base or tempfile.gettempdir()) / f"genesis-metrics-{group}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # already imported: make the values created from now on file-backed
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return folder


def mark_process_dead(pid: int | None = None) -> None:
    """Drop the live-gauge files of a pool child that exits (multiprocess mode only)."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid if pid is not None else os.getpid())  # type: ignore[no-untyped-call]


def metrics() -> _Metrics:
    """The metric objects of this process (created on first use)."""
    if _created:
        return _created[0]
    with _lock:
        if not _created:
            from prometheus_client import Counter, Gauge, Histogram

            _created.append(_Metrics(
                tasks=Counter("genesis_tasks", "Pipeline tasks run, by task and final state.", ["task", "state"]),
                task_duration=Histogram(
                    "genesis_task_duration_seconds", "Wall time of a pipeline task, by task and final state.",
                    ["task", "state"], buckets=TASK_BUCKETS,
                ),
                inference=Histogram(
                    "genesis_inference_duration_seconds", "Wall time of one model call, by stage.", ["stage"],
                    buckets=INFERENCE_BUCKETS,
                ),
                end_to_end=Histogram(
                    "genesis_end_to_end_latency_seconds",
                    "From the capture of a frame to its rows stored in the database.", buckets=LATENCY_BUCKETS,
                ),
                recognitions=Counter(
                    "genesis_recognitions", "Stored face recognition attempts, by outcome (known, unknown).",
                    ["outcome"],
                ),
                alerts=Counter("genesis_alerts", "Alerts raised, by kind.", ["kind"]),
                model_loaded=Gauge(
                    "genesis_model_loaded", "1 when a process of this worker has loaded the model.", ["model"],
                    multiprocess_mode="max",
                ),
                mqtt_published=Counter(
                    "genesis_mqtt_published", "MQTT messages the broker took (QoS 0: sent; QoS 1/2: acknowledged).",
                ),
                mqtt_dropped=Counter(
                    "genesis_mqtt_dropped",
                    "MQTT messages dropped, by reason: buffer_full (broker slow or away), shutdown (left when the "
                    "publisher closed), error.", ["reason"],
                ),
                mqtt_connected=Gauge(
                    "genesis_mqtt_connected", "1 while a process of this worker is connected to the MQTT broker.",
                    multiprocess_mode="livemax",
                ),
                detector_batch=Histogram(
                    "genesis_detector_batch_frames", "Frames per person-detector call (a batching detect worker "
                    "gathers the frames of its running tasks, from any camera).", buckets=BATCH_BUCKETS,
                ),
            ))
    return _created[0]


def observe_task(task: str, state: str, seconds: float | None) -> None:
    m = metrics()
    m.tasks.labels(task=task, state=state).inc()
    if seconds is not None:
        m.task_duration.labels(task=task, state=state).observe(max(0.0, seconds))


@contextmanager
def time_inference(stage: str) -> Iterator[None]:
    """``with time_inference("detect"): result = model(image)`` (only calls that return count)."""
    start = time.perf_counter()
    yield
    metrics().inference.labels(stage=stage).observe(time.perf_counter() - start)


def observe_inference(stage: str, seconds: float, calls: int = 1) -> None:
    """``calls`` model calls of ``seconds`` each (the frames of a detect task that went to the detector together:
    each counts for its share, as if it had been called alone)."""
    hist = metrics().inference.labels(stage=stage)
    for _ in range(calls):
        hist.observe(max(0.0, seconds))


def observe_detector_batch(frames: int, seconds: float) -> None:
    """One call of a batching detector: its size, and its time as a ``detect_batch`` inference."""
    m = metrics()
    m.detector_batch.observe(frames)
    m.inference.labels(stage="detect_batch").observe(seconds)


def observe_end_to_end(captured_at: Iterable[float], now: float | None = None) -> None:
    """One latency per frame whose capture time is known (``captured_at`` > 0)."""
    now = time.time() if now is None else now
    hist = metrics().end_to_end
    for t in captured_at:
        if t > 0:
            hist.observe(max(0.0, now - t))


def count_recognitions(identities: Iterable[str | None]) -> None:
    """One per stored recognition attempt: ``known`` when it matched an identity."""
    known = unknown = 0
    for identity in identities:
        if identity is None:
            unknown += 1
        else:
            known += 1
    m = metrics()
    if known:
        m.recognitions.labels(outcome="known").inc(known)
    if unknown:
        m.recognitions.labels(outcome="unknown").inc(unknown)


def count_alert(kind: str, n: int = 1) -> None:
    """``genesis_alerts_total{kind}``: call once per alert raised (the alerting code wires it)."""
    metrics().alerts.labels(kind=kind).inc(n)


def mqtt_published(n: int = 1) -> None:
    metrics().mqtt_published.inc(n)


def mqtt_dropped(reason: str, n: int = 1) -> None:
    metrics().mqtt_dropped.labels(reason=reason).inc(n)


def mqtt_connected(connected: bool) -> None:
    metrics().mqtt_connected.set(1 if connected else 0)


def model_loaded(model: str) -> None:
    metrics().model_loaded.labels(model=model).set(1)


def registry() -> Any:
    """The registry to scrape: the multiprocess files of the group, else this process's values."""
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    folder = multiprocess_dir()
    if folder is None:
        metrics()  # so the families appear (with no samples) before the first event
        return REGISTRY
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg, path=folder)  # type: ignore[no-untyped-call]
    return reg


def sample_values(name: str, reg: Any = None) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name`` in a registry (default: :func:`registry`), by sorted labels."""
    reg = registry() if reg is None else reg
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in reg.collect():
        for s in family.samples:
            if s.name == name:
                key = tuple(sorted(s.labels.items()))
                out[key] = out.get(key, 0.0) + float(s.value)
    return out
