"""Batched person detection: many frames, one model call.

- :func:`detect_many`: the detections of several images, through the detector's own batch call
  (``detect_batch``) where it has one, else one call per image.
- :class:`BatchingDetector`: a dynamic batcher shared by the threads of one worker process. Each
  detect task (one Celery message, one camera) opens a :meth:`~BatchingDetector.client` session
  when it starts, fetches and decodes its frames, and hands them to :meth:`~BatchingDetector.detect_many`;
  one inference thread gathers the frames of every task into a batch and runs it when

  * the batch is full (``max_size`` frames), or
  * every task that holds a session has handed its frames in (nobody else is coming: a worker
    that runs one task at a time never waits), or
  * ``max_wait_s`` has passed since the oldest frame of the batch came in,

  then gives each task its own detections. Every message stays its own Celery task, so late
  acknowledgement, retries, dead letters and the recovery of a killed worker's messages are those
  of any detect task (docs/architecture.md). The results do not depend on the batching: a frame's
  detections are those of ``detector.detect`` on it (a backend whose batch call would differ does
  not offer one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from genesis.backends.detectors.common import PersonDetector
from genesis.domain import Detection

log = logging.getLogger(__name__)


def detect_many(detector: PersonDetector, images: Sequence[np.ndarray]) -> list[list[Detection]]:
    """Detections of each image: one batch call where the detector has one (``detect_batch``)."""
    if not images:
        return []
    batch = getattr(detector, "detect_batch", None)
    if batch is not None and len(images) > 1:
        found: list[list[Detection]] = batch(list(images))
        if len(found) != len(images):
            raise RuntimeError(f"{detector.name}: {len(found)} results for a batch of {len(images)} images")
        return found
    return [detector.detect(image) for image in images]


@dataclass(slots=True)
class _Item:
    image: np.ndarray
    future: Future[list[Detection]]
    since: float


@dataclass(slots=True)
class BatchStats:
    """What the batcher did since it started (read by the benchmark and the tests through the metrics)."""

    batches: int = 0
    frames: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)


class BatchingDetector:
    """A :class:`PersonDetector` whose calls from many threads are gathered into batches (see the module)."""

    def __init__(self, inner: PersonDetector, max_size: int = 32, max_wait_s: float = 0.02,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._pending: list[_Item] = []
        self._clients = 0  # tasks holding a session
        self._waiting = 0  # of those, the ones whose frames are all handed in (pending or in the running batch)
        self._local = threading.local()
        self._thread = threading.Thread(target=self._loop, name="detector-batcher", daemon=True)
        self._thread.start()

    # -- the tasks' side -------------------------------------------------------------------------

    @contextmanager
    def client(self) -> Iterator[None]:
        """A detect task's session: from before it fetches its frames until it has its detections,
        so that the batcher waits for its frames (up to ``max_wait_s``) instead of running without them."""
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        if depth == 0:
            with self._cond:
                self._clients += 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cond:
                    self._clients -= 1
                    self._cond.notify_all()

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_many([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return self.detect_many(images)

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """The detections of ``images``, computed in the batches of the inference thread."""
        if not images:
            return []
        with self.client():
            now = time.monotonic()
            items = [_Item(image, Future(), now) for image in images]
            with self._cond:
                self._pending.extend(items)
                self._waiting += 1
                self._cond.notify_all()
            try:
                return [item.future.result() for item in items]
            finally:
                with self._cond:
                    self._waiting -= 1

    # -- the inference thread --------------------------------------------------------------------

    def _ready(self) -> bool:
        if len(self._pending) >= self.max_size:
            return True
        if self._waiting >= self._clients:  # every task in a session has handed its frames in
            return True
        return time.monotonic() - self._pending[0].since >= self.max_wait_s

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                while not self._ready():
                    self._cond.wait(max(0.0, self._pending[0].since + self.max_wait_s - time.monotonic()))
                batch, self._pending = self._pending[: self.max_size], self._pending[self.max_size :]
            self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        t0 = time.perf_counter()
        try:
            found = detect_many(self.inner, [item.image for item in batch])
        except BaseException as exc:  # every task of the batch gets the error, the thread goes on
            for item in batch:
                item.future.set_exception(exc)
            return
        seconds = time.perf_counter() - t0
        for item, dets in zip(batch, found, strict=True):
            item.future.set_result(dets)
        n = len(batch)
        self.stats.batches += 1
        self.stats.frames += n
        self.stats.largest = max(self.stats.largest, n)
        self.stats.sizes[n] = self.stats.sizes.get(n, 0) + 1
        if self.on_batch is not None:
            try:
                self.on_batch(n, seconds)
            except Exception:
                log.exception("batch observer failed")
