"""Metrics read when ``/metrics`` is scraped: queue depths, DLQ size, the capture's cameras.

Queue depth and DLQ size are cluster-wide values (Redis ``LLEN`` of each queue's lists, the size
of the dead-letter store): every process exposes them, so aggregate them with ``max`` across
instances. A collector whose backend is unreachable exposes nothing for that scrape (the health
endpoint says why) instead of failing the whole scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from genesis.adapters.dlq import DeadLetters
from genesis.config import Settings

if TYPE_CHECKING:
    from celery import Celery

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
