"""Metrics read when ``/metrics`` is scraped: queue depths, DLQ size, the capture's cameras, the database's tables.

Queue depth and DLQ size are cluster-wide values (Redis ``LLEN`` of each queue's lists, the size
of the dead-letter store): every process exposes them, so aggregate them with ``max`` across
instances. A collector whose backend is unreachable exposes nothing for that scrape (the health
endpoint says why) instead of failing the whole scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from genesis.adapters.dlq import DeadLetters
from genesis.config import Settings

if TYPE_CHECKING:
    from celery import Celery

    from genesis.adapters.db.storage import StorageStats

log = logging.getLogger(__name__)

CaptureStatuses = Callable[[], list[dict[str, Any]]]
"""The ``CaptureLoop.status()`` of each camera of this process."""


class QueueCollector:
    """``genesis_queue_depth{queue}``: messages waiting on each pipeline queue (all priorities)."""

    def __init__(self, app: Celery, queues: tuple[str, ...]) -> None:
        self.app = app
        self.queues = queues

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from genesis.adapters.broker import detect_backlog

        family = GaugeMetricFamily("genesis_queue_depth", "Messages waiting on a pipeline queue.", labels=["queue"])
        try:
            depths = [(q, detect_backlog(self.app, q)) for q in self.queues]
        except Exception as exc:
            log.debug("queue depth not collected: %s", exc)
            return
        for queue, depth in depths:
            family.add_metric([queue], depth)
        yield family


@lru_cache(maxsize=4)
def _dead_letters(url: str) -> DeadLetters:
    import redis

    return DeadLetters(redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=1, socket_timeout=2))


class DeadLetterCollector:
    """``genesis_dlq_size``: letters in the dead-letter store (``genesis dlq list``)."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.redis_url

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            size = _dead_letters(self.url).size()
        except Exception as exc:
            log.debug("DLQ size not collected: %s", exc)
            return
        yield GaugeMetricFamily("genesis_dlq_size", "Tasks in the dead-letter store.", value=size)


class CaptureCollector:
    """Per camera: frames captured (read from the source), published, dropped; camera connected."""

    def __init__(self, statuses: CaptureStatuses) -> None:
        self.statuses = statuses

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        captured = CounterMetricFamily(
            "genesis_frames_captured", "Frames read from the camera's source (after the stride).", labels=["camera"]
        )
        published = CounterMetricFamily(
            "genesis_frames_published", "Frames stored and sent to the detect queue.", labels=["camera"]
        )
        dropped = CounterMetricFamily(
            "genesis_frames_dropped", "Frames dropped, by reason (backpressure; fps limit of a live source).",
            labels=["camera", "reason"],
        )
        connected = GaugeMetricFamily(
            "genesis_camera_connected", "1 while the camera's source delivers frames.", labels=["camera"]
        )
        reconnects = CounterMetricFamily(
            "genesis_camera_reconnects", "Reconnections of a live source after it was lost.", labels=["camera"]
        )
        for s in self.statuses():
            cam = str(s["camera"])
            captured.add_metric([cam], s["read"])
            published.add_metric([cam], s["published"])
            dropped.add_metric([cam, "backpressure"], s["dropped"])
            dropped.add_metric([cam, "fps_limit"], s["skipped"])
            connected.add_metric([cam], 1.0 if s["state"] == "connected" else 0.0)
            reconnects.add_metric([cam], s["reconnects"])
        yield from (captured, published, dropped, connected, reconnects)


STORAGE_EVERY_S = 60.0
"""The database's sizes are read at most once a minute, whatever the scrape interval."""


@lru_cache(maxsize=4)
def _engine(url: str) -> Any:
    from genesis.adapters.db import make_engine

    return make_engine(url, pool_pre_ping=True)


class StorageCollector:
    """``genesis_db_table_bytes{table}`` (table + TOAST + indexes), ``genesis_db_table_rows{table}`` and
    ``genesis_db_size_bytes``: cluster-wide, read at most every ``every_s`` and cached in between.

    On PostgreSQL the rows are the planner's estimate (``reltuples``, kept by autovacuum): a ``count(*)`` of
    the largest tables on every refresh would read them whole. Registered on the processes that exist once per
    deployment (the API, beat), so the database is not asked by every worker.
    """

    def __init__(self, settings: Settings, every_s: float = STORAGE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = settings.database_url
        self.every_s = every_s
        self.clock = clock
        self._lock = threading.Lock()
        self._taken: float | None = None
        self._stats: StorageStats | None = None
        self.reads = 0
        """How many times the database was asked (tests)."""

    def stats(self) -> StorageStats | None:
        from genesis.adapters.db.storage import storage_stats

        with self._lock:  # one refresh at a time; concurrent scrapes wait for it and share it
            now = self.clock()
            if self._taken is None or now - self._taken >= self.every_s:
                self._taken = now  # a failed read is not retried before every_s either
                self.reads += 1
                try:
                    self._stats = storage_stats(_engine(self.url), per_day=False, exact_rows=False)
                except Exception as exc:
                    log.debug("database sizes not collected: %s", exc)
                    self._stats = None
            return self._stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        stats = self.stats()
        if stats is None:
            return
        size = GaugeMetricFamily("genesis_db_table_bytes",
                                 "Bytes a table occupies: heap + TOAST + indexes (genesis db stats).", labels=["table"])
        rows = GaugeMetricFamily("genesis_db_table_rows",
                                 "Rows of a table (PostgreSQL: the planner's estimate, reltuples).", labels=["table"])
        for t in stats.tables:
            if t.bytes is not None:
                size.add_metric([t.table], t.bytes)
            rows.add_metric([t.table], t.rows)
        yield size
        yield rows
        yield GaugeMetricFamily("genesis_db_size_bytes", "The whole database (pg_database_size; SQLite's file pages).",
                                value=stats.database_bytes)
