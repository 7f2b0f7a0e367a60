"""Queue ``detect`` (or ``gpu``): person detection, stateless, any worker, any order.

A message carries one frame, or several consecutive frames of one run when capture batches
(see genesis.pipeline.capture): their results go to the sequencer in one round trip and wake it once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from celery import signals

from genesis.adapters.frame_store import FrameDecodeError, decode_jpeg
from genesis.adapters.redis_keys import wake_key
from genesis.backends.detectors import PersonDetector
from genesis.backends.detectors.batching import detect_many
from genesis.celery import app
from genesis.config import TilingConfig
from genesis.domain import FrameRef
from genesis.domain.codec import decode
from genesis.ops.metrics import observe_inference, time_inference
from genesis.pipeline.liveness import touch_progress
from genesis.pipeline.sequencer import FrameResult, push_results
from genesis.stages.detect import camera_tiling, detect_frame
from genesis.tasks import routing, runtime
from genesis.tasks.base import PermanentError, PipelineTask

log = logging.getLogger(__name__)

WAKE_TTL_S = 10
"""A pending wake is forgotten after this, so a wake task that was lost cannot stall a run."""


def _load_detector_before_work(**_: Any) -> None:
    """A prefork child of a detect worker loads its detector before it tells its parent it is ready for work
    (billiard sends that after ``worker_process_init``; the parent waits ``worker_proc_alive_timeout``): the
    task time limit then covers the frames only, never a model load, and a child that replaces one stopped by
    the limit loads before it takes a message. Loading in the first task instead made that task slow where 4
    children loaded at once on 2 cores: stopped by the limit, sent again to a fresh child that loaded again."""
    if not runtime.consumes(app, routing.DETECT):
        return  # not a detect worker (analytics children, tests' own apps)
    try:
        runtime.detector()
    except Exception:  # the first task loads it again, and fails (dead letter, health) with the reason
        log.exception("the detector did not load before work")


signals.worker_process_init.connect(_load_detector_before_work, weak=False, dispatch_uid="genesis-detect-preload")


@app.task(base=PipelineTask, name=routing.DETECT, bind=True)
def detect(self: Any, frames: list[dict[str, Any]] | dict[str, Any], run_id: str, prev_seq: int) -> None:
    try:
        refs = [decode(FrameRef, f) for f in (frames if isinstance(frames, list) else [frames])]
        prev = int(prev_seq)
    except (TypeError, ValueError, KeyError) as exc:
        raise PermanentError(f"undecodable frame message: {exc}") from exc
    if not refs:
        raise PermanentError("a detect message without frames")
    s = runtime.settings()
    tiling = camera_tiling(s, s.camera(refs[0].camera_id))
    with runtime.detector_session():  # a batching worker waits for these frames (docs/architecture.md)
        results, errors = _detect(runtime.detector(), refs, prev, run_id, tiling, s.detector.iou)
    redis = runtime.redis_client()
    push_results(redis, run_id, results)
    touch_progress(redis, run_id, runtime.settings().distributed.run_stale_after_s)
    # One wake per burst: only when none is pending. The sequence task clears the flag before it
    # reads the results, so a result pushed after that read always finds the flag clear.
    if redis.set(wake_key(run_id), "1", nx=True, ex=WAKE_TTL_S):
        app.send_task(routing.SEQUENCE, args=[refs[0].camera_id, run_id], queue=routing.queue_of(s, routing.SEQUENCE))
    if errors:
        raise PermanentError("; ".join(errors))


def _detect(detector: PersonDetector, refs: list[FrameRef], prev: int, run_id: str, tiling: TilingConfig,
            iou: float) -> tuple[list[FrameResult], list[str]]:
    """The results of a message's frames, in order, and the errors of those that could not be decoded.

    The whole frames that need the detector go to it in one call (``detect_many``: a batching detector
    gathers them with other tasks' frames); with tiling on, and for a frame with a region window, frame by
    frame (each tile set, each window is one frame's)."""
    results: list[FrameResult | None] = []
    errors: list[str] = []
    moving = [r.key for r in refs if not r.static]  # static frames (motion gating) need no pixels here
    stored = dict(zip(moving, runtime.frame_store().get_many(moving), strict=True)) if moving else {}
    todo: list[tuple[int, FrameRef, int, np.ndarray]] = []  # (index in results, ref, prev seq, image)
    for ref in refs:
        if ref.static:
            results.append(FrameResult(ref, prev))  # CameraState reuses the last tracked boxes
        elif (data := stored[ref.key]) is None:
            # Expired, or evicted by a full Redis (docs/operations.md, Redis memory): a counted
            # skip (the run's expired_frames), not a dead letter — there is nothing to replay.
            log.warning("run %s: frame %d is gone from the frame store (expired or evicted; or processed already, "
                        "a message sent twice): counted, skipped unless processed", run_id, ref.seq)
            results.append(FrameResult(ref, prev, error="gone from the frame store (expired or evicted)",
                                       expired=True))
        else:
            try:
                image = decode_jpeg(data)
            except FrameDecodeError as exc:
                # The stream goes on without this frame; the failure itself goes to the dead letters.
                results.append(FrameResult(ref, prev, error=str(exc)))
                errors.append(str(exc))
            else:
                todo.append((len(results), ref, prev, image))
                results.append(None)
        prev = ref.seq
    # Whole frames go to the detector together; a frame with a region window (genesis.stages.regions) or
    # tiles is its own call.
    whole = [t for t in todo if t[1].window is None] if not tiling.enabled else []
    if whole:
        t0 = time.perf_counter()
        found = detect_many(detector, [image for _, _, _, image in whole])
        share_ms = (time.perf_counter() - t0) * 1000.0 / len(whole)  # a batching worker's wait included
        observe_inference("detect", share_ms / 1000.0, len(whole))
        for (i, ref, before, _), dets in zip(whole, found, strict=True):
            results[i] = FrameResult(ref, before, tuple(dets), share_ms)
    for i, ref, before, image in todo:
        if results[i] is None:
            with time_inference("detect"):
                result = detect_frame(detector, ref, image, tiling, iou)
            results[i] = FrameResult(ref, before, result.detections, result.inference_ms)
    return [r for r in results if r is not None], errors
