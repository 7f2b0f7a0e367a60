"""Queue ``detect`` (or ``gpu``): person detection, stateless, any worker, any order."""

from __future__ import annotations

from typing import Any

from genesis.adapters.frame_store import FrameDecodeError, decode_jpeg
from genesis.celery import app
from genesis.domain import FrameRef
from genesis.domain.codec import decode
from genesis.ops.metrics import time_inference
from genesis.sequencer import FrameResult, push_result
from genesis.stages.detect import detect_frame
from genesis.tasks import routing, runtime
from genesis.tasks.base import PermanentError, PipelineTask


@app.task(base=PipelineTask, name=routing.DETECT, bind=True)
def detect(self: Any, frame: dict[str, Any], run_id: str, prev_seq: int) -> None:
    try:
        ref = decode(FrameRef, frame)
        prev = int(prev_seq)
    except (TypeError, ValueError, KeyError) as exc:
        raise PermanentError(f"undecodable frame message: {exc}") from exc
    data = runtime.frame_store().get(ref.key)
    try:
        if data is None:
            raise FrameDecodeError(f"frame {ref.key} is gone from the frame store (expired)")
        image = decode_jpeg(data)
    except FrameDecodeError as exc:
        # The stream goes on without this frame; the failure itself goes to the dead letters.
        push_result(runtime.redis_client(), run_id, FrameResult(ref, prev, error=str(exc)))
        _wake(ref.camera_id, run_id)
        raise PermanentError(str(exc)) from exc
    detector = runtime.detector()
    with time_inference("detect"):
        result = detect_frame(detector, ref, image)
    push_result(runtime.redis_client(), run_id, FrameResult(ref, prev, result.detections, result.inference_ms))
    _wake(ref.camera_id, run_id)


def _wake(camera_id: str, run_id: str) -> None:
    s = runtime.settings()
    app.send_task(routing.SEQUENCE, args=[camera_id, run_id], queue=routing.queue_of(s, routing.SEQUENCE))
