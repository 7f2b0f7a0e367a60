"""Queue ``analytics``: rollups and retention purges, started by ``celery -A genesis beat``
(schedule: `genesis.tasks.schedule.beat_schedule`) or sent by hand. Thin: the work is in
`genesis.services.rollups`; both tasks are idempotent, so a retry or a redelivery is harmless."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from genesis.celery import app
from genesis.config.rollups import Granularity
from genesis.services.rollups import BUCKET_S, purge, rollup, scheduled_window, storage_upkeep
from genesis.tasks import routing, runtime
from genesis.tasks.base import PermanentError, PipelineTask, bad_input


def _epoch(value: str | None) -> float | None:
    if value is None:
        return None
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"{value!r}: give a time zone (e.g. 2026-11-28T10:00:00+00:00)")
    return dt.timestamp()


@app.task(base=PipelineTask, name=routing.ROLLUP, bind=True)
def rollup_task(
    self: Any, granularity: str, since: str | None = None, until: str | None = None, camera_id: str | None = None
) -> dict[str, Any]:
    """Rollups of ``granularity``: of ``[since, until)`` (ISO times) when given, else the
    scheduled window (the last settled buckets and the current one)."""
    with bad_input("rollup window"):
        if granularity not in BUCKET_S:
            raise ValueError(f"unknown granularity {granularity!r}")
        gran: Granularity = granularity  # type: ignore[assignment]
        lo, hi = _epoch(since), _epoch(until)
    now = time.time()
    if lo is None or hi is None:
        auto_lo, auto_hi = scheduled_window(runtime.settings(), gran, now)
        lo = auto_lo if lo is None else lo
        hi = auto_hi if hi is None else hi
    if hi <= lo:
        raise PermanentError(f"empty rollup window: {since} .. {until}")
    res = rollup(runtime.repository(), gran, lo, hi, camera_id, now=now)
    return {"granularity": res.granularity, "since": res.since.isoformat(), "until": res.until.isoformat(),
            "rows": res.rows}


@app.task(base=PipelineTask, name=routing.PURGE, bind=True)
def purge_task(self: Any) -> dict[str, int]:
    """Delete raw rows and rollups older than their retention."""
    return purge(runtime.repository(), runtime.settings())


@app.task(base=PipelineTask, name=routing.STORAGE, bind=True)
def storage_task(self: Any) -> dict[str, Any]:
    """PostgreSQL day partitions of the next days; heatmap grids of past hours merged (idempotent)."""
    return storage_upkeep(runtime.repository(), runtime.settings())
