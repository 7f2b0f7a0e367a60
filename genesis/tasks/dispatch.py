"""Sending work into the distributed pipeline (used by capture and by DLQ replay)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery

from genesis.adapters.dlq import DeadLetter, DeadLetters, ReplayError
from genesis.adapters.redis_keys import RUN_TTL_S, end_key, sent_key
from genesis.config import Settings
from genesis.domain import FrameRef
from genesis.tasks.routing import DETECT, SEQUENCE, queue_of, task_queues

log = logging.getLogger(__name__)


def publish_frames(app: Celery, settings: Settings, refs: Sequence[FrameRef], run_id: str, prev_seq: int,
                   redis: Any = None) -> None:
    """Captured frames of one run, in seq order (already in the frame store under ``ref.key``),
    to the detect queue as one message.

    ``prev_seq`` is the seq of the frame published for this run before ``refs[0]`` (-1 for the
    first): the per-camera sequencer follows that chain, so frames dropped before publishing (by
    backpressure or a stride) leave no hole to wait for.

    With ``redis`` (the frame store's client) the message is also kept there, beside its frames
    and with their TTL (``sent_key``), before it is sent: a message the broker loses after taking
    it (see :func:`resend_missing`) can then be sent again.
    """
    if not refs:
        raise ValueError("publish_frames needs at least one frame")
    frames = [r.to_dict() for r in refs]
    if redis is not None:
        record = json.dumps({"frames": frames, "prev_seq": prev_seq}, separators=(",", ":"))
        redis.set(sent_key(run_id, refs[-1].seq), record, ex=settings.distributed.frame_ttl_s)
    app.send_task(DETECT, args=[frames, run_id, prev_seq], queue=queue_of(settings, DETECT))


def _sent_message(redis: Any, run_id: str, seq: int) -> tuple[list[dict[str, Any]], int] | None:
    """The detect message kept by :func:`publish_frames` whose last frame is ``seq`` (frames,
    prev_seq), or None (never kept, expired, or not what publish_frames writes)."""
    raw = redis.get(sent_key(run_id, seq))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        frames, prev = data["frames"], data["prev_seq"]
        if not (isinstance(frames, list) and frames and all(isinstance(f, dict) for f in frames)
                and isinstance(prev, int) and not isinstance(prev, bool) and prev < seq):
            raise ValueError("not a detect message")
    except (ValueError, KeyError, TypeError) as exc:  # JSON only, never evaluated; the task checks the frames
        log.warning("run %s: the kept message of frame %d is unusable: %s", run_id, seq, exc)
        return None
    return frames, prev


def resend_missing(app: Celery, settings: Settings, redis: Any, run_id: str, after_seq: int,
                   missing_seq: int) -> list[int]:
    """Send again the detect messages of the frames after ``after_seq`` up to ``missing_seq``
    (the last frame of the missing message), as the capture published them; returns the last
    frame of each message sent (empty when none was kept).

    Why: kombu's Redis transport takes a message off its queue (``BRPOP``) and records it as
    unacknowledged in a second step; when the connection breaks between the two (Redis
    restarted) the message is in neither place and no heartbeat or visibility timeout can bring
    it back. The sequencer calls this once per gap before it gives the frames up. Sending a
    message again is safe if it was not lost after all: detection is stateless and the sequencer
    takes one result per frame.
    """
    chain: list[tuple[int, list[dict[str, Any]], int]] = []
    seq = missing_seq
    while seq > after_seq:
        kept = _sent_message(redis, run_id, seq)
        if kept is None:
            break
        frames, prev = kept
        chain.append((seq, frames, prev))
        seq = prev
    for _, frames, prev in reversed(chain):
        app.send_task(DETECT, args=[frames, run_id, prev], queue=queue_of(settings, DETECT))
    return [last for last, _, _ in reversed(chain)]


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
