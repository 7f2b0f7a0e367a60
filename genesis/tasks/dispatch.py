"""Sending work into the distributed pipeline (used by capture and by DLQ replay)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from celery import Celery

from genesis.config import Settings
from genesis.domain import FrameRef
from genesis.tasks.routing import DETECT, SEQUENCE, queue_of


def end_key(run_id: str) -> str:
    return f"genesis:run:{run_id}:end"


def publish_frames(app: Celery, settings: Settings, refs: Sequence[FrameRef], run_id: str, prev_seq: int) -> None:
    """Captured frames of one run, in seq order (already in the frame store under ``ref.key``),
    to the detect queue as one message.

    ``prev_seq`` is the seq of the frame published for this run before ``refs[0]`` (-1 for the
    first): the per-camera sequencer follows that chain, so frames dropped before publishing (by
    backpressure or a stride) leave no hole to wait for.
    """
    if not refs:
        raise ValueError("publish_frames needs at least one frame")
    app.send_task(DETECT, args=[[r.to_dict() for r in refs], run_id, prev_seq], queue=queue_of(settings, DETECT))


def publish_end(app: Celery, settings: Settings, redis: Any, camera_id: str, run_id: str,
                summary: dict[str, Any]) -> None:
    """End of a finite stream: ``summary`` holds at least ``last_seq`` (the last published seq,
    -1 if none), ``frames`` (published), ``stride`` and ``fps``. The sequencer finishes the run
    once it has processed up to ``last_seq``."""
    redis.set(end_key(run_id), json.dumps(summary))
    app.send_task(SEQUENCE, args=[camera_id, run_id], queue=queue_of(settings, SEQUENCE))
