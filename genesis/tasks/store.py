"""Queue ``store``: batched, idempotent writes (a retried or redelivered task adds nothing twice)."""

from __future__ import annotations

import json
from typing import Any

from genesis.adapters.db import TrackRecord
from genesis.adapters.redis_keys import end_key
from genesis.celery import app
from genesis.domain import LineCrossing, PathPoint, RecognitionAttempt, Sighting, ZoneEvent
from genesis.domain.codec import decode
from genesis.ops import metrics as ops_metrics
from genesis.tasks import routing, runtime
from genesis.tasks.base import PermanentError, PipelineTask


@app.task(base=PipelineTask, name=routing.SAVE_OUTCOME, bind=True)
def save_outcome(self: Any, run_id: str, payload: dict[str, list[Any]]) -> None:
    try:
        sightings = [decode(Sighting, x) for x in payload.get("sightings", [])]
        points = [decode(PathPoint, x) for x in payload.get("points", [])]
        attempts = [decode(RecognitionAttempt, x) for x in payload.get("attempts", [])]
        zone_events = [decode(ZoneEvent, x) for x in payload.get("zone_events", [])]
        crossings = [decode(LineCrossing, x) for x in payload.get("crossings", [])]
    except (TypeError, ValueError, KeyError) as exc:
        raise PermanentError(f"undecodable rows: {exc}") from exc
    cell_px = runtime.settings().analytics.heatmap_cell_px
    runtime.repository().save_outcome(run_id, sightings, attempts, zone_events, crossings, points, cell_px)
    ops_metrics.observe_end_to_end(payload.get("captured_at", []))
    ops_metrics.count_recognitions(a.identity for a in attempts)


@app.task(base=PipelineTask, name=routing.SAVE_TRACKS, bind=True)
def save_tracks(self: Any, run_id: str, tracks: list[dict[str, Any]]) -> None:
    try:
        records = [decode(TrackRecord, t) for t in tracks]
    except (TypeError, ValueError, KeyError) as exc:
        raise PermanentError(f"undecodable tracks: {exc}") from exc
    runtime.repository().save_tracks(run_id, records)


@app.task(base=PipelineTask, name=routing.FINISH_RUN, bind=True)
def finish_run(self: Any, run_id: str, frames: int, meta: dict[str, Any]) -> None:
    end = runtime.redis_client().get(end_key(run_id))
    try:  # a live source's gaps, counted by the capture (see genesis.pipeline.capture)
        summary = json.loads(end) if end is not None else {}
        gaps = {k: summary[k] for k in ("reconnects", "outage_s") if k in summary}
    except (ValueError, TypeError):
        gaps = {}
    runtime.repository().finish_run(run_id, "finished", int(frames), {**meta, **gaps})
