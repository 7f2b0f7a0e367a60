"""The per-camera sequencer of the distributed mode.

Detect tasks finish in any order on any worker. Each pushes its result into a Redis sorted
set of the run (score = seq); whoever takes the run's lock consumes the contiguous chain from
the last processed frame (every published frame names the one published before it), feeds
``CameraState`` (tracking, recognition per track, zones, lines) exactly as the embedded runner
does, hands the rows to the store queue, and saves the state back to Redis. So results do not
depend on how many workers there are or in which order detection finishes, and a sequencer
killed midway is resumed by the next one from the last saved state (the rows it had already
sent are written again, idempotently).

A frame that never arrives is skipped once later frames have waited ``gap_timeout_s``; a frame
that could not be decoded arrives as a skip marker. Both are counted in the run's meta.
"""

from __future__ import annotations

import json
import pickle
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from genesis.config import CameraConfig, Settings
from genesis.domain import Detection, FrameDetections, FrameOutcome, FrameRef, ZoneEvent
from genesis.domain.codec import decode, encode
from genesis.stages.camera import CameraState, FaceModels
from genesis.tasks.dispatch import end_key

LOCK_TTL_MS = 10_000
"""A dead holder's lock frees itself after this; a live one refreshes it every LOCK_REFRESH_S."""
LOCK_REFRESH_S = 1.0
READ_AHEAD = 64
"""Results read from Redis per round trip."""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


def results_key(run_id: str) -> str:
    return f"genesis:run:{run_id}:results"


def state_key(run_id: str) -> str:
    return f"genesis:run:{run_id}:state"


def lock_key(run_id: str) -> str:
    return f"genesis:run:{run_id}:lock"


def gap_check_key(run_id: str) -> str:
    return f"genesis:run:{run_id}:gapcheck"


def kick_key(run_id: str) -> str:
    return f"genesis:run:{run_id}:kick"


def done_key(run_id: str) -> str:
    return f"genesis:run:{run_id}:done"


def wake_key(run_id: str) -> str:
    """Set while a sequence task is on its way for the run (detect tasks send one only if unset)."""
    return f"genesis:run:{run_id}:wake"


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What a detect task hands to the sequencer: detections, or a skip (``error`` set)."""

    frame: FrameRef
    prev_seq: int
    detections: tuple[Detection, ...] = ()
    inference_ms: float = 0.0
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(encode(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> FrameResult:
        return decode(cls, json.loads(raw))


def push_result(redis: Any, run_id: str, result: FrameResult) -> None:
    push_results(redis, run_id, [result])


def push_results(redis: Any, run_id: str, results: list[FrameResult]) -> None:
    redis.zadd(results_key(run_id), {r.to_json(): r.frame.seq for r in results})


@dataclass(slots=True)
class SequencerState:
    camera: CameraState
    last_seq: int = -1
    frames: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    skipped: int = 0
    missing: int = 0
    gap_since: float | None = None
    stride: int = 1
    fps: float = 25.0


@dataclass(slots=True)
class Sequencer:
    """One pass over a run's results. ``emit`` sends rows to storage before state is saved."""

    redis: Any
    settings: Settings
    camera: CameraConfig
    run_id: str
    run_meta: dict[str, Any]
    faces: FaceModels | None
    load_image: Callable[[FrameRef], np.ndarray]
    emit_outcomes: Callable[[list[FrameOutcome], list[ZoneEvent]], None]
    finish: Callable[[SequencerState], None]
    clock: Callable[[], float] = time.time
    prepare: Callable[[CameraState], None] | None = None
    """Called once on a new camera state (the alert stage's stored baseline)."""
    observe: Callable[[FrameOutcome, CameraState], None] | None = None
    """Called after each processed frame, in order, with the camera state as of that frame
    (MQTT events, the privacy blur's view of who is enrolled)."""
    busy: bool = False
    """Set by ``run`` when another holder had the lock."""
    live: Any = None
    """A `genesis.services.live.LivePublisher` offered every processed frame (the live view)."""

    def _new_state(self) -> SequencerState:
        meta = self.run_meta
        stride = int(meta.get("stride", 1))
        fps = float(meta.get("fps", 25.0))
        cam = CameraState(self.settings, self.camera, int(meta["width"]), int(meta["height"]), fps, self.faces,
                          stride)
        if self.prepare is not None:
            self.prepare(cam)
        return SequencerState(camera=cam, stride=stride, fps=fps)

    def _load_state(self) -> SequencerState:
        raw = self.redis.get(state_key(self.run_id))
        if raw is None:
            return self._new_state()
        state: SequencerState = pickle.loads(raw)
        state.camera.faces = self.faces
        return state

    def _save_state(self, state: SequencerState) -> None:
        self.redis.set(state_key(self.run_id), pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))

    def run(self, max_frames: int = 10_000) -> bool:
        """Take the lock and advance as far as the chain allows; True once the run is finished.

        Returns False at once when another worker holds the lock (it will see our results).
        """
        token = uuid.uuid4().hex
        lock = lock_key(self.run_id)
        while True:
            if self.redis.get(done_key(self.run_id)):
                # A redelivered detect task may push a result after the run finished.
                self.redis.delete(results_key(self.run_id))
                return True
            if not self.redis.set(lock, token, nx=True, px=LOCK_TTL_MS):
                self.busy = True
                return False
            try:
                state = self._load_state()
                finished, progressed = self._advance(state, max_frames, lock, token)
            finally:
                self.redis.eval(_RELEASE, 1, lock, token)
            if finished:
                return True
            # A result pushed while we held the lock (its own trigger found the lock taken)
            # would wait for the next frame: look again now that the lock is free.
            if not progressed or not self._next_ready(state):
                return False

    def _next_ready(self, state: SequencerState) -> bool:
        head = self._head(state)
        return bool(head) and FrameResult.from_json(head[0]).prev_seq <= state.last_seq

    def _head(self, state: SequencerState) -> list[Any]:
        """The first result after the last processed frame (processed ones stay until saved)."""
        return list(self.redis.zrangebyscore(results_key(self.run_id), f"({state.last_seq}", "+inf", start=0, num=1))

    def _read_ahead(self, state: SequencerState) -> list[FrameResult]:
        """The next results after the last processed frame, in seq order, in one round trip."""
        raw = self.redis.zrangebyscore(results_key(self.run_id), f"({state.last_seq}", "+inf", start=0,
                                       num=READ_AHEAD)
        return [FrameResult.from_json(r) for r in raw]

    def _forget_processed(self, state: SequencerState) -> None:
        """Drop results up to the saved state: only after the state that covers them is saved, so
        a holder killed before saving leaves them for the next one to process again."""
        self.redis.zremrangebyscore(results_key(self.run_id), "-inf", state.last_seq)

    def _advance(self, state: SequencerState, max_frames: int, lock: str, token: str) -> tuple[bool, bool]:
        key = results_key(self.run_id)
        batch: list[FrameOutcome] = []
        batch_size = self.settings.distributed.store_batch_frames
        progressed = False
        ahead: deque[FrameResult] = deque()
        refreshed = time.monotonic()
        for _ in range(max_frames):
            if not ahead:
                ahead.extend(self._read_ahead(state))
                if not ahead:
                    break
            result = ahead[0]
            if result.frame.seq <= state.last_seq:  # a second result for a frame (a redelivery)
                ahead.popleft()
                continue
            if result.prev_seq > state.last_seq:  # a frame in between has not arrived (yet)
                now = self.clock()
                if state.gap_since is None:
                    state.gap_since = now
                if now - state.gap_since < self.settings.distributed.gap_timeout_s:
                    break
                state.missing += 1
            ahead.popleft()
            state.gap_since = None
            if result.error is None:
                detections = FrameDetections(result.frame, result.detections, result.inference_ms)
                frame = result.frame
                outcome = state.camera.process(detections, lambda f=frame: self.load_image(f))  # type: ignore[misc]
                batch.append(outcome)
                if self.observe is not None:
                    self.observe(outcome, state.camera)
                if self.live is not None:
                    self.live.offer(self.run_id, outcome, state.camera, lambda f=frame: self.load_image(f))
                if state.frames == 0:
                    state.first_ts = frame.ts
                state.frames += 1
                state.last_ts = frame.ts
            else:
                state.skipped += 1
            state.last_seq = result.frame.seq
            progressed = True
            if time.monotonic() - refreshed >= LOCK_REFRESH_S:
                self.redis.pexpire(lock, LOCK_TTL_MS)
                refreshed = time.monotonic()
            if len(batch) >= batch_size:
                self.emit_outcomes(batch, [])
                self._save_state(state)
                self._forget_processed(state)
                batch = []
        end_raw = self.redis.get(end_key(self.run_id))
        finished = False
        closing: list[ZoneEvent] = []
        if end_raw is not None and state.last_seq >= int(json.loads(end_raw)["last_seq"]):
            closing = state.camera.close()
            finished = True
        if batch or closing:
            self.emit_outcomes(batch, closing)
        self._save_state(state)
        self._forget_processed(state)
        if finished:
            self.finish(state)
            self.redis.set(done_key(self.run_id), "1", ex=self.settings.distributed.frame_ttl_s * 12)
            self.redis.delete(state_key(self.run_id), key)
        return finished, progressed

    def waiting_on_gap(self) -> bool:
        raw = self.redis.get(state_key(self.run_id))
        if raw is None:
            return False
        state: SequencerState = pickle.loads(raw)
        return state.gap_since is not None


def run_meta_for_report(state: SequencerState) -> dict[str, Any]:
    """The run meta ``build_results`` reads, computed as the embedded runner computes it."""
    return {
        "frames": state.frames,
        "first_ts": state.first_ts,
        "last_ts": state.last_ts,
        "frame_interval_s": round(state.stride / state.fps, 6),
        "stride": state.stride,
        "skipped_frames": state.skipped,
        "missing_frames": state.missing,
    }
