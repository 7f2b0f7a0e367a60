"""Heatmap images: foot points of sightings as a colour overlay on a frame of the camera.

One rendering path for the heatmap the embedded run writes into ``--out`` and for
``genesis heatmap`` (the stored hourly foot-point grids of a time window on the camera's stored
snapshot): both draw the grids summed per hour as the run goes (``heatmap_cells``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from genesis.adapters.db.analytics import AnalyticsStore, HeatGrid
from genesis.adapters.frame_store import FrameStore
from genesis.adapters.redis_keys import snapshot_key
from genesis.domain import FrameRef, Sighting
from genesis.domain.heat import coarsen
from genesis.stages.analytics import heatmap_grid, render_heatmap

Box = tuple[float, float, float, float]
Redact = Callable[[bytes], bytes]
"""JPEG in, JPEG out: the privacy blur of a frame about to be stored (genesis/services/privacy.py)."""


def heatmap_image(
    boxes: Iterable[Box], background: np.ndarray | None, width: int, height: int, cell_px: int
) -> tuple[np.ndarray, int]:
    """(BGR image, number of foot points) for person boxes in pixel coordinates."""
    points = [Sighting("", 0, 0, 0.0, box, 0.0) for box in boxes]
    grid = heatmap_grid(points, width, height, cell_px)
    return render_heatmap(grid, background, width, height), len(points)


def grid_image(heat: HeatGrid, background: np.ndarray | None, cell_px: int | None = None) -> np.ndarray:
    """BGR image of stored foot-point counts (``heatmap_cells`` summed); ``cell_px``, a multiple of the
    stored cell, draws coarser cells."""
    grid = heat.grid if cell_px is None else coarsen(heat.grid, heat.cell_px, cell_px)
    return render_heatmap(grid, background, heat.width, heat.height)


class SnapshotKeeper:
    """Keeps a camera's stored snapshot recent: writes a frame at most every ``every_s`` seconds."""

    def __init__(self, store: AnalyticsStore, camera_id: str, every_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.camera_id = camera_id
        self.every_s = every_s
        self.clock = clock
        self._last: float | None = None

    def offer(self, jpeg: bytes, width: int, height: int, force: bool = False,
              redact: Redact | None = None) -> bool:
        """Store this frame if the last one stored is old enough (or ``force``); True if written.
        ``redact`` (the privacy blur) runs only on a frame that is written."""
        now = self.clock()
        if not force and self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        if redact is not None:
            jpeg = redact(jpeg)
        return self.store.save_snapshot(self.camera_id, jpeg, width, height, datetime.now(UTC),
                                        0.0 if force else self.every_s)


def keep_snapshot_distributed(redis: Any, store: AnalyticsStore, frames: FrameStore, ref: FrameRef,
                              every_s: float, redact: Redact | None = None) -> bool:
    """The distributed path: whichever sequencer pass first finds the camera's Redis marker
    expired stores this frame (so at most one write per camera every ``every_s`` seconds).
    ``redact`` (the privacy blur) runs only on a frame that is written."""
    if not redis.set(snapshot_key(ref.camera_id), "1", nx=True, ex=max(1, round(every_s))):
        return False
    data = frames.get(ref.key)
    if data is None:
        return False
    if redact is not None:
        data = redact(data)
    return store.save_snapshot(ref.camera_id, data, ref.width, ref.height, datetime.now(UTC), every_s)
