"""Sending work into the distributed pipeline (used by capture and by DLQ replay)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from celery import Celery

from genesis.adapters.dlq import DeadLetter, DeadLetters, ReplayError
from genesis.adapters.redis_keys import RUN_TTL_S, end_key
from genesis.config import Settings
from genesis.domain import FrameRef
from genesis.tasks.routing import DETECT, SEQUENCE, queue_of, task_queues


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
    redis.set(end_key(run_id), json.dumps(summary), ex=RUN_TTL_S)
    app.send_task(SEQUENCE, args=[camera_id, run_id], queue=queue_of(settings, SEQUENCE))


def replay_queue(settings: Settings, letter: DeadLetter, default: str = "detect") -> str:
    """The queue a replayed letter goes to: the routing table's for its task name, else the
    queue it was recorded on, else ``default``."""
    return task_queues(settings).get(letter.task_name) or letter.queue or default


def replay(app: Celery, settings: Settings, letter: DeadLetter, letters: DeadLetters | None = None) -> str:
    """Send the letter's task again (same name, args and kwargs, a new task id) and remove the letter.

    Returns the new task id. Replaying never duplicates by itself: the letter is locked while it
    is sent and re-read under the lock, so two operators replaying the same letter send it once
    (the second gets :class:`ReplayError`). If sending fails the letter stays. Only a crash
    between sending and removing could leave it behind to be replayed again; the pipeline
    tasks are idempotent, so even that duplicates no rows.
    """
    store = letters if letters is not None else DeadLetters.from_settings(settings)
    token = store.lock(letter.id)
    if token is None:
        raise ReplayError(f"dead letter {letter.id} is being replayed by another process")
    try:
        current = store.get(letter.id)
        if current is None:
            raise ReplayError(f"dead letter {letter.id} is no longer in the DLQ (replayed or removed)")
        if not current.replayable:
            raise ReplayError(f"dead letter {letter.id} cannot be replayed: its message could not be decoded")
        result = app.send_task(current.task_name, args=list(current.args), kwargs=dict(current.kwargs),
                               queue=replay_queue(settings, current, app.conf.task_default_queue or "detect"))
        store.remove(current.id)
    finally:
        store.unlock(letter.id, token)
    return str(result.id)
