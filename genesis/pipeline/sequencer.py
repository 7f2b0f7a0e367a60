"""The per-camera sequencer of the distributed mode.

Detect tasks finish in any order on any worker. Each pushes its result into a Redis sorted
set of the run (score = seq); whoever takes the run's lock consumes the contiguous chain from
the last processed frame (every published frame names the one published before it), feeds
the run loop (:mod:`genesis.pipeline.loop`, the one the embedded runner drives too), whose sink
hands the rows to the store queue, and saves the state back to Redis. So results do not
depend on how many workers there are or in which order detection finishes, and a sequencer
killed midway is resumed by the next one from the last saved state (the rows it had already
sent are written again, idempotently).

A frame that never arrives is skipped once later frames have waited ``gap_timeout_s``; a frame
that could not be decoded arrives as a skip marker, and so does one whose pixels were gone from
the frame store (expired, or evicted by a full Redis: ``expired``). All are counted in the run's
meta (``missing_frames``, ``skipped_frames``, ``expired_frames``). Before a
gap is given up, its detect messages are sent again once (``resend``, the capture keeps them
beside the frames) and the gap waits ``gap_timeout_s`` more, plus the time the messages sent again
wait in their queue (an overloaded site: what ``resend`` returns): a message the broker lost (taken
off its queue by a worker whose connection broke in that instant, see
:func:`genesis.tasks.dispatch.resend_missing`) or one that only waited behind a backlog costs time,
not a frame.

The state kept in Redis (``genesis:run:<id>:state``) is JSON of our own types (the codec of
:mod:`genesis.domain.codec`), never pickle: Redis is reachable by more than the workers, and a
value that does not decode is refused (:class:`StateError`), never executed. Every key of the run
gets a TTL (:data:`~genesis.adapters.redis_keys.RUN_TTL_S`), refreshed at each save, so the keys of
an abandoned run expire.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genesis.adapters.redis_keys import (
    RUN_TTL_S,
    done_key,
    end_key,
    gap_check_key,
    kick_key,
    lock_key,
    results_key,
    state_key,
    wake_key,
)
from genesis.config import CameraConfig, Settings
from genesis.domain import Detection, FrameDetections, FrameRef
from genesis.domain.codec import CodecError, encode, load_json, loads
from genesis.pipeline.loop import RunLoop, RunProgress, RunState, Sink
from genesis.stages.camera import CameraState, FaceModels

LOCK_TTL_MS = 10_000
"""A dead holder's lock frees itself after this; a live one refreshes it every LOCK_REFRESH_S."""
LOCK_REFRESH_S = 1.0
READ_AHEAD = 64
"""Results read from Redis per round trip."""
TURN_S = 10.0
"""One task's turn at a run: past it, the holder saves, lets go and asks for another turn at the back of the
queue (:attr:`Sequencer.more`), so that the other cameras of a shared ordered-stage worker are not kept waiting
behind a camera whose results keep coming (a backlog, a live camera the stage barely keeps up with)."""

__all__ = [
    "FrameResult", "Sequencer", "SequencerState", "StateError", "done_key", "end_key", "gap_check_key", "kick_key",
    "lock_key", "push_result", "push_results", "results_key", "run_meta_for_report", "state_key", "wake_key",
]
"""The keys are the scheme's (:mod:`genesis.adapters.redis_keys`), named here too for the tasks."""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What a detect task hands to the sequencer: detections, or a skip (``error`` set; ``expired``:
    the frame was gone from the frame store, counted apart from undecodable ones)."""

    frame: FrameRef
    prev_seq: int
    detections: tuple[Detection, ...] = ()
    inference_ms: float = 0.0
    error: str | None = None
    expired: bool = False

    def to_json(self) -> str:
        return json.dumps(encode(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> FrameResult:
        return loads(cls, raw)


def push_result(redis: Any, run_id: str, result: FrameResult) -> None:
    push_results(redis, run_id, [result])


def push_results(redis: Any, run_id: str, results: list[FrameResult]) -> None:
    """Add detect results to the run's sorted set (and give the set the run's TTL)."""
    key = results_key(run_id)
    with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(key, {r.to_json(): r.frame.seq for r in results})
        pipe.expire(key, RUN_TTL_S)
        pipe.execute()


SequencerState = RunState

HELD_RUNS = 64
"""Run states a sequencer process keeps in memory after saving them (most recently used first out last)."""
_held: OrderedDict[str, tuple[str, FaceModels | None, RunState]] = OrderedDict()
"""Per run: the save token, the face models and the state object this process saved last. The next pass of the
run in this process uses the object instead of rebuilding the camera state and decoding the JSON, when the key
in Redis still holds that save (no other worker advanced the run since, nothing lost it) and the face models
are the same; the state object then equals what decoding the key would give (the embedded runner keeps its
state the same way, in memory). Taken out while a pass advances it, put back only after its last save."""
"""The state a sequencer keeps between passes: the camera's and the run loop's counters."""


class StateError(ValueError):
    """The run's saved state in Redis is not a state this version wrote: refused, never executed."""


_SAVE_HEAD = '{"save":"'
_SAVE_TOKEN_LEN = 32
SAVE_PREFIX_LEN = len(_SAVE_HEAD) + _SAVE_TOKEN_LEN
"""The first characters of a saved state that name its save (:func:`saved_token`)."""


def dumps_state(state: RunState, save: str = "") -> str:
    """The state as JSON; ``save`` (32 hex digits), when given, is written first as ``"save"``, so that a
    reader of the first :data:`SAVE_PREFIX_LEN` characters knows which save the key holds."""
    body = json.dumps(state.export_state(), separators=(",", ":"), allow_nan=False)
    if not save:
        return body
    if len(save) != _SAVE_TOKEN_LEN or not body.startswith("{") or body == "{}":
        raise ValueError("a save token is 32 hex digits, written before a non-empty state")
    return f"{_SAVE_HEAD}{save}\",{body[1:]}"


def saved_token(head: str | bytes | None) -> str | None:
    """The save named by the first characters of a saved state (None: none named, or nothing saved)."""
    text = head.decode("ascii", "replace") if isinstance(head, bytes) else head
    if not text or not text.startswith(_SAVE_HEAD) or len(text) < SAVE_PREFIX_LEN:
        return None
    return text[len(_SAVE_HEAD):SAVE_PREFIX_LEN]


def restore_state(state: RunState, raw: str | bytes) -> None:
    """Load ``raw`` (what :func:`dumps_state` wrote) into ``state``, whose camera state was built
    from the same settings; :class:`StateError` for anything else."""
    try:
        data = load_json(raw, "sequencer state")
        if isinstance(data, dict):
            data.pop("save", None)
        state.import_state(data)
    except (CodecError, ValueError, TypeError, KeyError) as exc:
        raise StateError(f"the saved sequencer state does not decode ({exc}); it was not written by this "
                         "version of Genesis (or was tampered with)") from None


@dataclass(slots=True)
class Sequencer:
    """One pass over a run's results. The sink gets each batch's rows before the state that covers
    them is saved."""

    redis: Any
    settings: Settings
    camera: CameraConfig
    run_id: str
    run_meta: dict[str, Any]
    faces: FaceModels | None
    load_image: Callable[[FrameRef], np.ndarray]
    sink: Sink
    clock: Callable[[], float] = time.time
    prepare: Callable[[CameraState], None] | None = None
    """Called once on a new camera state (the alert stage's stored baseline)."""
    resend: Callable[[int, int], float | None] | None = None
    """Sends the detect messages of the frames after the first seq up to the second again: None when none was
    kept, else the seconds they are expected to wait in their queue (added to the gap's second wait)."""
    """Called once per gap before it is given up, with the last processed seq and the missing one
    (the previous frame of the next result): True when the missing frames' messages were sent
    again, and the gap then waits ``gap_timeout_s`` once more."""
    busy: bool = False
    """Set by ``run`` when another holder had the lock."""
    more: bool = False
    """Set by ``run`` when it let go at the end of its turn (``turn_s``) with results still to process: the
    caller asks for another turn."""
    turn_s: float = TURN_S
    release: Callable[[list[str]], None] | None = None
    """Called after each saved state with the frame-store keys of the frames it covers: no stage reads their
    pixels again (the detect message of a frame the run has passed gives a result the sequencer ignores), so
    the frame store keeps the backlog, not ``frame_ttl_s`` of every frame published."""
    _state: RunState | None = field(default=None, repr=False)
    _saved: str | None = field(default=None, repr=False)
    """The token of this pass's last save (None: not saved since the state was loaded)."""

    def _new_state(self) -> RunState:
        meta = self.run_meta
        stride = int(meta.get("stride", 1))
        fps = float(meta.get("fps", 25.0))
        cam = CameraState(self.settings, self.camera, int(meta["width"]), int(meta["height"]), fps, self.faces,
                          stride)
        return RunState(cam, RunProgress(stride=stride, fps=fps))

    def _load_state(self) -> RunState:
        held = _held.pop(self.run_id, None)  # while a pass advances it, the object is ahead of its key
        if held is not None and held[1] is self.faces:
            head = self.redis.getrange(state_key(self.run_id), 0, SAVE_PREFIX_LEN - 1)
            if saved_token(head) == held[0]:
                return held[2]
        state = self._new_state()
        raw = self.redis.get(state_key(self.run_id))
        if raw is None:
            if self.prepare is not None:
                self.prepare(state.camera)
        else:
            restore_state(state, raw)
        return state

    def _save_state(self, state: RunState) -> None:
        """The state, and a fresh TTL on every key of the run (an abandoned run's keys expire)."""
        save = uuid.uuid4().hex
        self._saved = None
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(state_key(self.run_id), dumps_state(state, save), ex=RUN_TTL_S)
            pipe.expire(results_key(self.run_id), RUN_TTL_S)
            pipe.expire(end_key(self.run_id), RUN_TTL_S)
            pipe.execute()
        self._saved = save

    def run(self, max_frames: int = 10_000) -> bool:
        """Take the lock and advance as far as the chain allows; True once the run is finished.

        Returns False at once when another worker holds the lock (it will see our results).
        """
        token = uuid.uuid4().hex
        lock = lock_key(self.run_id)
        turn_ends = time.monotonic() + self.turn_s
        while True:
            if self.redis.get(done_key(self.run_id)):
                # A redelivered detect task may push a result after the run finished.
                self.redis.delete(results_key(self.run_id))
                return True
            if not self.redis.set(lock, token, nx=True, px=LOCK_TTL_MS):
                self.busy = True
                return False
            try:
                state = self._state = self._load_state()
                self._saved = None
                finished, progressed = self._advance(state, max_frames, lock, turn_ends)
                if not finished and self._saved is not None:  # a pass that did not finish ends with a save
                    _held[self.run_id] = (self._saved, self.faces, state)
                    while len(_held) > HELD_RUNS:
                        _held.popitem(last=False)
            finally:
                self.redis.eval(_RELEASE, 1, lock, token)
            if finished:
                return True
            # A result pushed while we held the lock (its own trigger found the lock taken)
            # would wait for the next frame: look again now that the lock is free.
            if not progressed or not self._next_ready(state):
                return False
            if time.monotonic() >= turn_ends:
                self.more = True
                return False

    def _next_ready(self, state: RunState) -> bool:
        head = self._head(state)
        return bool(head) and FrameResult.from_json(head[0]).prev_seq <= state.progress.last_seq

    def _head(self, state: RunState) -> list[Any]:
        """The first result after the last processed frame (processed ones stay until saved)."""
        return list(self.redis.zrangebyscore(results_key(self.run_id), f"({state.progress.last_seq}", "+inf",
                                             start=0, num=1))

    def _read_ahead(self, state: RunState) -> list[FrameResult]:
        """The next results after the last processed frame, in seq order, in one round trip."""
        raw = self.redis.zrangebyscore(results_key(self.run_id), f"({state.progress.last_seq}", "+inf", start=0,
                                       num=READ_AHEAD)
        return [FrameResult.from_json(r) for r in raw]

    def _forget_processed(self, state: RunState) -> None:
        """Drop results up to the saved state: only after the state that covers them is saved, so
        a holder killed before saving leaves them for the next one to process again."""
        self.redis.zremrangebyscore(results_key(self.run_id), "-inf", state.progress.last_seq)

    def _advance(self, state: RunState, max_frames: int, lock: str, turn_ends: float) -> tuple[bool, bool]:
        passed: list[str] = []  # frame-store keys of the frames processed since the last saved state

        def checkpoint() -> None:
            self._save_state(state)
            self._forget_processed(state)
            if passed and self.release is not None:
                self.release(passed[:])
            passed.clear()

        loop = RunLoop(state, self.sink, self.settings.distributed.store_batch_frames, checkpoint)
        p = state.progress
        progressed = False
        ahead: deque[FrameResult] = deque()
        refreshed = time.monotonic()
        exhausted = False
        for _ in range(max_frames):
            if not ahead:
                ahead.extend(self._read_ahead(state))
                if not ahead:
                    exhausted = True
                    break
            result = ahead[0]
            if result.frame.seq <= p.last_seq:  # a second result for a frame (a redelivery)
                ahead.popleft()
                continue
            if result.prev_seq > p.last_seq:  # a frame in between has not arrived (yet)
                if not self._gap_expired(p, result.prev_seq):
                    break
                loop.give_up()
            ahead.popleft()
            p.gap_since = None
            if result.error is None:
                frame = result.frame
                loop.feed(FrameDetections(frame, result.detections, result.inference_ms),
                          lambda f=frame: self.load_image(f))  # type: ignore[misc]
                if not frame.static:
                    passed.append(frame.key)
            else:
                loop.skip(result.frame.seq, result.expired)
            progressed = True
            if time.monotonic() >= turn_ends:  # the end of this turn: save, let go, come back behind the others
                break
            if time.monotonic() - refreshed >= LOCK_REFRESH_S:
                self.redis.pexpire(lock, LOCK_TTL_MS)
                refreshed = time.monotonic()
        end_raw = self.redis.get(end_key(self.run_id))
        end = load_json(end_raw, "end of run") if end_raw is not None else None
        last = int(end["last_seq"]) if end is not None else None
        if last is not None and p.last_seq < last and exhausted and self._gap_expired(p, last):
            # The end of the stream is known and the results of its last frames never came: no
            # later result will show this gap, so it is timed (and given up) here.
            loop.give_up()
            p.last_seq, p.gap_since = last, None
        if end is None or last is None or p.last_seq < last:
            loop.flush()
            return False, progressed
        if end.get("frames") is not None:
            # A gap given up is counted once, whatever its length: the capture's count of the
            # frames it published says how many never came.
            p.missing = max(p.missing, int(end["frames"]) - p.frames - p.skipped - p.expired)
        if end.get("frames_declared") is not None:  # a file: its declared length, for the truncation warning
            p.declared_frames = int(end["frames_declared"])
            p.source_frames_read = int(end.get("frames_read", p.frames + p.skipped + p.missing + p.expired))
        if end.get("damaged_places"):  # a damaged file: the places the capture's reader skipped
            p.damaged, p.damaged_places = int(end.get("frames_damaged", 0)), int(end["damaged_places"])
        loop.close()
        self.redis.set(done_key(self.run_id), "1", ex=self.settings.distributed.frame_ttl_s * 12)
        self.redis.delete(state_key(self.run_id), results_key(self.run_id))
        return True, progressed

    def _gap_expired(self, p: RunProgress, missing_seq: int) -> bool:
        """The frames after ``p.last_seq`` up to ``missing_seq`` have not arrived: whether to give
        them up now (they waited ``gap_timeout_s``, and once more after their messages were sent
        again, from when those were expected to leave their queue)."""
        now = self.clock()
        if p.gap_since is None:
            p.gap_since = now
        if now - p.gap_since < self.settings.distributed.gap_timeout_s:
            return False
        if self.resend is not None and p.resent != missing_seq:
            p.resent = missing_seq
            queued_s = self.resend(p.last_seq, missing_seq)
            if queued_s is not None:
                p.gap_since = now + queued_s
                return False
        return True

    def waiting_on_gap(self) -> bool:
        """Whether the last pass stopped to wait for a frame that has not arrived."""
        return self._state is not None and self._state.progress.gap_since is not None

    def gap_due_in_s(self) -> float:
        """Seconds until the gap the last pass waits on is due to be judged again (``gap_timeout_s`` when none)."""
        timeout = self.settings.distributed.gap_timeout_s
        since = self._state.progress.gap_since if self._state is not None else None
        return timeout if since is None else max(0.0, since + timeout - self.clock())


def run_meta_for_report(state: RunState) -> dict[str, Any]:
    """The run meta ``build_results`` reads (the run loop's, as in the embedded runner)."""
    return state.progress.run_meta()
