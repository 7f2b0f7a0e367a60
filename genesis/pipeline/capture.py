"""The capture process of the distributed mode: read a source, store frames, publish references.

For every frame of the source: encode it to JPEG once, put it in the frame store under
``frame_key(camera, run, seq)`` (Redis, with a TTL) and publish its ``FrameRef`` to the detect
queue with the seq of the previously *published* frame, so the per-camera sequencer follows
the chain and never waits for a frame that was dropped or skipped.

Batching: a file is read faster than the workers detect, so while detect messages are already
waiting, the frames of a file go out up to ``distributed.detect_batch_frames`` per message (one
message, one task, one Redis round trip for many frames; they would have waited in the queue
anyway). With an idle queue, and always for live sources, each frame is sent at once.

Backpressure: before each message the capture asks how many messages wait on the detect
queue; at ``distributed.max_backlog`` or more it drops the frame (neither stored nor
published) and counts the drop. While the backlog *in seconds* (the messages waiting on the detect and
recognize queues over the rate the workers finished them in the last 60 s) reaches
``distributed.max_backlog_s``, a live frame is dropped too and a file waits (it keeps no real time:
every frame of it is processed, late, as in the embedded mode): the frame TTL is checked at start to
outlast that wait, so a frame that is admitted is processed, and an undersized site drops (live) or
slows down (files) at the source instead of expiring. From half of either cap on, a live camera admitted more
than its share of the site's admissions waits for the others (genesis.pipeline.admission).
At most one message's frames are held in this process and
stored frames expire, so memory stays bounded under any overload.

Live sources (URLs, webcams) reconnect with exponential backoff and jitter when they cannot be
opened or stop delivering frames, and report ``degraded`` meanwhile; a file that is missing or
corrupt is a ``SourceError`` before anything is written.

Redis full (``maxmemory`` with ``noeviction``, see :mod:`genesis.adapters.redis_memory`): above
``distributed.frame_memory_limit`` of its ``maxmemory`` the capture stores no frame, and a write Redis
refuses (``OOM``) drops the frames of that message (what of them was stored is deleted) and waits
``FULL_BACKOFF_S``; both are counted drops (reason ``redis_full``), the rest of the memory keeps room
for the end marker, so the run still ends. At start the capture warns (one log line) when the
eviction policy would delete frames or messages silently.

Damaged files: the reader skips the damaged places and reads on (``VideoSource.damage``); the end
of the run says how many frames that cost (``frames_damaged``, ``damaged_places``).

Redis (frame store or broker) away: a file's frames are stored and published again with the same
backoff until it is back; a live source's frames read meanwhile are dropped and counted (a camera
does not wait); ``degraded`` meanwhile. So a Redis restart neither kills the capture nor loses the
end of the run.
While it runs, the capture refreshes its run's heartbeat (``keep_alive``), which tells a stopped
capture from a slow one (see genesis.pipeline.liveness). Sources are shown with their
credentials masked (``redact``).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import kombu.exceptions
import redis

from genesis.adapters.broker import backlog_seconds, detect_backlog
from genesis.adapters.db.repository import Repository
from genesis.adapters.frame_store import FrameStore, encode_jpeg
from genesis.adapters.redis_keys import frame_key, wake_key
from genesis.adapters.redis_memory import RedisMemory, eviction_warnings, frames_fit, is_out_of_memory
from genesis.adapters.video import RawFrame, SourceDamage, SourceError, SourceInfo, VideoSource
from genesis.config import CameraConfig, Settings
from genesis.domain import FrameRef
from genesis.domain.redact import redact
from genesis.pipeline.admission import FAIR_FROM, FairShare
from genesis.pipeline.sequencer import FrameResult, push_results
from genesis.stages.motion import motion_gate
from genesis.stages.regions import gate_window, window_size
from genesis.tasks.celery_config import make_app

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

PublishFn = Callable[[list[FrameRef], str, int], None]
"""Send stored frames on, in seq order: ``(refs, run_id, prev_seq)`` where ``prev_seq`` is the
seq of the frame published before ``refs[0]`` (-1 for none)."""
BacklogFn = Callable[[], int]
BacklogSecondsFn = Callable[[], "float | None"]
"""How many messages wait on the detect queue now."""
MemoryFn = Callable[[], RedisMemory | None]
"""The frame store's Redis memory now (None: unknown)."""
EndFn = Callable[[str, dict[str, Any]], None]
"""The end of a run: ``(run_id, summary)``."""

KeepAlive = Callable[[str], Callable[[], None]]
"""Start the heartbeat of a run (given its id); returns what stops it."""

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError,
    kombu.exceptions.OperationalError, ConnectionError, TimeoutError,
)
"""Errors of a frame store or broker that is away for a while: wait for it."""
SEND_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.ResponseError, *OUTAGE_ERRORS)
"""What sending can raise that the loop looks at: an outage, or a write refused (OOM: Redis full)."""

State = Literal["connected", "degraded", "stopped"]
SourceKind = Literal["file", "url", "webcam"]

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
BACKOFF_JITTER = 0.2
"""Each wait is the backoff delay shortened by up to this fraction, at random, so that many
cameras that failed together do not all retry in the same instant."""

FULL_BACKOFF_S = 0.5
"""After Redis refused a write for want of memory, the capture waits this long before the next frame."""

DRAIN_WAIT_POLL_S = 0.5
"""How often a file waiting for the workers to drain the queues looks again (see ``_file_waits_to_drain``)."""

DropReason = Literal["backpressure", "redis_full", "redis_away"]
"""Why frames were dropped: the detect backlog was full; the frame store's Redis was full (or
refused a write, OOM); Redis was unreachable while a live source went on delivering."""

CAPTURE_STEPS = ("read", "gate", "encode", "send")
"""Where the capture's CPU goes: reading the source (demux, decode, stride), the motion gate, the
JPEG encode of frames a stage will read, and storing + publishing (the Redis and broker clients)."""

PACED_READ_S = 0.02
"""A source read that took this long blocked on the source: no batching then (no added delay)."""

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def source_kind(source: str) -> SourceKind:
    """The kind ``VideoSource`` will see in this source string."""
    if source.isdigit():
        return "webcam"
    if _URL.match(source):
        return "url"
    return "file"


class FrameSource(Protocol):
    """What the capture loop needs of a source (``VideoSource``, or a fake in tests)."""

    @property
    def info(self) -> SourceInfo: ...

    def frames(self, stride: int = 1, max_frames: int | None = None) -> Iterator[RawFrame]: ...

    def close(self) -> None: ...


SourceOpener = Callable[[str], FrameSource]


def shrinking_opener(open_source: SourceOpener, max_width: int) -> SourceOpener:
    """The ``VideoSource`` opener with frames shrunk to ``max_width`` as they are read (``CameraConfig.max_width``).
    ValueError for another opener: it could not shrink what it reads."""
    if open_source is not VideoSource:
        raise ValueError("cameras[].max_width needs the capture's own video reader")

    def open_shrunk(source: str) -> FrameSource:
        return VideoSource(source, max_width=max_width)

    return open_shrunk


# Per-camera counters of this process (for /metrics and /status).
_COUNTERS_LOCK = threading.Lock()
_PUBLISHED: Counter[str] = Counter()
_DROPPED: Counter[str] = Counter()
_DROPPED_BY: Counter[tuple[str, str]] = Counter()


def capture_counters() -> dict[str, dict[str, Any]]:
    """Frames published and dropped per camera since this process started (``dropped_by``: per
    reason)."""
    with _COUNTERS_LOCK:
        cameras = sorted(set(_PUBLISHED) | set(_DROPPED))
        return {c: {"published": _PUBLISHED[c], "dropped": _DROPPED[c],
                    "dropped_by": {r: n for (cam, r), n in sorted(_DROPPED_BY.items()) if cam == c}}
                for c in cameras}


@dataclass(frozen=True, slots=True)
class CaptureStats:
    run_id: str
    read: int
    """Frames taken from the source (after the stride)."""
    published: int
    dropped: int
    """Frames dropped (every reason)."""
    reconnects: int
    skipped: int = 0
    """Frames of a live source skipped to keep to ``camera.fps``."""
    still: int = 0
    """Of ``published``, the still frames (motion gating) sent as markers: no pixels stored, no detect task."""
    last_seq: int = -1
    """Seq of the last published frame (-1: none)."""
    started: bool = True
    """False when a live source never connected before the stop: no run was recorded."""
    outage_s: float = 0.0
    """Seconds a live source was lost between connections (its gaps)."""
    dropped_by: dict[str, int] = field(default_factory=dict)
    """``dropped`` per reason (:data:`DropReason`), the reasons that happened only."""
    damaged: int = 0
    """Frames of a file (after the stride) in damaged places the reader skipped."""
    damaged_places: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds of the capture by step (:data:`CAPTURE_STEPS`), for the cameras bench: the read in process time
    (the decoder's own threads count with it), the other steps in this camera's thread's time (another camera's
    thread, or any other thread of the process, is not theirs)."""


def backoff_delays(initial_s: float = BACKOFF_INITIAL_S, max_s: float = BACKOFF_MAX_S) -> Iterator[float]:
    """0.5, 1, 2, 4 ... seconds, capped at ``max_s`` (before jitter)."""
    delay = initial_s
    while True:
        yield min(delay, max_s)
        delay = min(delay * 2.0, max_s)


class CaptureLoop:
    """One camera's capture: source → JPEG in the frame store → FrameRef published.

    ``run()`` blocks until a file ends (or ``max_frames`` were read) or ``stop`` is set, and
    returns the counts; ``status()`` may be called from any thread meanwhile.
    """

    def __init__(
        self,
        settings: Settings,
        camera: CameraConfig,
        source: str,
        frame_store: FrameStore,
        publish: PublishFn,
        backlog: BacklogFn,
        stop: threading.Event | None = None,
        *,
        end: EndFn | None = None,
        repository: Repository | None = None,
        run_id: str | None = None,
        stride: int | None = None,
        max_frames: int | None = None,
        open_source: SourceOpener = VideoSource,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        clock: Callable[[], float] = time.monotonic,
        keep_alive: KeepAlive | None = None,
        memory: MemoryFn | None = None,
        backlog_s: BacklogSecondsFn | None = None,
        fair: FairShare | None = None,
    ) -> None:
        self.settings = settings
        self.camera = camera
        self.source = source
        if camera.max_width is not None:  # frames shrunk as they are read, as the embedded runner reads them
            open_source = shrinking_opener(open_source, camera.max_width)
        self.kind: SourceKind = source_kind(source)
        self.store = frame_store
        self.publish = publish
        self.backlog = backlog
        self.stop = stop or threading.Event()
        self.end = end
        self.repository = repository
        self.run_id = run_id or uuid.uuid4().hex
        self.stride = stride or settings.pipeline.frame_stride
        self.max_frames = max_frames
        self.open_source = open_source
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self.keep_alive = keep_alive
        self.memory = memory
        self.backlog_s = backlog_s
        self.fair = fair
        self._late = False
        self._backlog_seen_s: float | None = None
        """What the workers needed to drain the queues at the last look (None: not measured)."""
        self._lock = threading.Lock()
        self._state: State = "stopped"
        self._last_error: str | None = None
        self._read = self._published = self._still = self._dropped = self._skipped = self._reconnects = 0
        self._connect_failures = 0
        self._dropped_by: Counter[str] = Counter()
        self._damage = SourceDamage()
        self._prev_seq = -1
        self._run_started = False
        self._pending: list[tuple[FrameRef, bytes | None]] = []
        """Frames held for the next message, with their JPEG (None: a still frame, a marker)."""
        self._outage = False
        self._outage_s = 0.0
        self._batch = 1
        self._cpu: dict[str, float] = dict.fromkeys(CAPTURE_STEPS, 0.0)
        self.gate = motion_gate(settings, camera)  # frames are seen in order here (genesis.stages.motion)
        self._window = window_size(settings.detector)  # region detection (genesis.stages.regions)

    @property
    def live(self) -> bool:
        return self.kind != "file"

    # -- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """State (connected, degraded, stopped) and counters; safe from any thread."""
        with self._lock:
            return {
                "camera": self.camera.id,
                "source": redact(self.source),
                "kind": self.kind,
                "run_id": self.run_id,
                "state": self._state,
                "read": self._read,
                "published": self._published,
                "still": self._still,
                "dropped": self._dropped,
                "dropped_by": dict(self._dropped_by),
                "skipped": self._skipped,
                "damaged": self._damage.frames,
                "damaged_places": self._damage.places,
                "reconnects": self._reconnects,
                "outage_s": round(self._outage_s, 3),
                "connect_failures": self._connect_failures,
                "last_seq": self._prev_seq,
                "last_error": self._last_error,
            }

    def stats(self) -> CaptureStats:
        with self._lock:
            return CaptureStats(
                run_id=self.run_id,
                read=self._read,
                published=self._published,
                still=self._still,
                dropped=self._dropped,
                reconnects=self._reconnects,
                outage_s=round(self._outage_s, 3),
                skipped=self._skipped,
                last_seq=self._prev_seq,
                started=self._run_started,
                dropped_by=dict(self._dropped_by),
                damaged=self._damage.frames,
                damaged_places=self._damage.places,
                cpu_s={k: self._cpu[k] for k in CAPTURE_STEPS},
            )

    def _set_state(self, state: State, error: str | None = None) -> None:
        with self._lock:
            self._state = state
            if error is not None:
                self._last_error = redact(error)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> CaptureStats:
        """Capture until the file ends, ``max_frames`` frames were read, or ``stop`` is set.

        Raises ``SourceError`` for a file that cannot be read (nothing recorded then).
        """
        try:
            source = self._open(first=True)
            if source is None:  # a live source, stopped before it ever connected
                return self.stats()
            info = source.info
            try:
                self._start_run(info)
            except BaseException:
                source.close()
                raise
            stop_beat = self.keep_alive(self.run_id) if self.keep_alive is not None else None
            try:
                self._stream(source, info)
            finally:
                if stop_beat is not None:
                    stop_beat()
            return self.stats()
        finally:
            self._set_state("stopped")

    def _stream(self, source: FrameSource, info: SourceInfo) -> None:
        """Consume connection after connection until the end, then tell the sequencer."""
        seq_base = 0
        while True:
            try:
                last_read = self._consume(source, seq_base)
            finally:
                source.close()
            if not self.live or self.stop.is_set() or self._reached_max():
                break
            # A live source stopped delivering frames: the next connection goes on
            # numbering after the last frame read, so seqs grow for the whole run.
            seq_base = max(seq_base, last_read + 1)
            self._set_state("degraded", f"{self.kind} source {redact(self.source)} stopped delivering "
                            "frames")
            lost = self.clock()
            reopened = self._open(first=False)
            with self._lock:
                self._outage_s += self.clock() - lost
            if reopened is None:
                break
            source = reopened
        self._finish(info)

    def _reached_max(self) -> bool:
        return self.max_frames is not None and self._read >= self.max_frames

    def _open(self, first: bool) -> FrameSource | None:
        """Open the source; live sources retry with backoff until they open or ``stop`` is set."""
        if not self.live:
            source = self.open_source(self.source)  # SourceError goes to the caller
            self._set_state("connected")
            return source
        delays = backoff_delays(self.backoff_initial_s, self.backoff_max_s)
        # After a drop, wait before the first retry too: a source is rarely back at once.
        if not first and self.stop.wait(self._jittered(next(delays))):
            return None
        while not self.stop.is_set():
            try:
                source = self.open_source(self.source)
            except SourceError as exc:
                with self._lock:
                    self._connect_failures += 1
                self._set_state("degraded", str(exc))
                if self.stop.wait(self._jittered(next(delays))):
                    return None
                first = False
                continue
            with self._lock:
                if not first:
                    self._reconnects += 1
                self._state = "connected"
            return source
        return None

    @staticmethod
    def _jittered(delay: float) -> float:
        return delay * (1.0 - BACKOFF_JITTER * random.random())

    def _start_run(self, info: SourceInfo) -> None:
        meta = {
            "width": info.width,
            "height": info.height,
            "fps": self._fps(info),
            "stride": self.stride,
            "mode": "distributed",
        }
        site = self.settings.site  # only this site's stale-run check judges the run
        if self.repository is not None:
            self.repository.start_run(self.run_id, self.camera.id, redact(self.source), meta, site=site)
        else:
            with Repository(self.settings.database_url) as repo:
                repo.start_run(self.run_id, self.camera.id, redact(self.source), meta, site=site)
        with self._lock:
            self._run_started = True

    def _fps(self, info: SourceInfo) -> float:
        if self.live and self.camera.fps is not None:
            return min(info.fps, self.camera.fps)
        return info.fps

    def _consume(self, source: FrameSource, seq_base: int) -> int:
        """Handle the frames of one connection; returns the last seq read (seq_base - 1 if none)."""
        last = seq_base - 1
        interval = 1.0 / self.camera.fps if self.live and self.camera.fps else 0.0
        next_due = 0.0
        read_from = self.clock()
        cpu_from = time.process_time()
        for raw in source.frames(self.stride):
            self._cpu["read"] += time.process_time() - cpu_from
            # A read that blocked (a live or paced source) means frames come no faster than the
            # workers want them: send what is held now, and this frame alone.
            paced = self.clock() - read_from >= PACED_READ_S
            if paced:
                self._flush()
            if self.stop.is_set():
                break
            seq = seq_base + raw.seq if self.live else raw.seq
            last = seq
            with self._lock:
                self._read += 1
            due = True
            if interval:
                now = self.clock()
                due = now >= next_due
                if due:
                    # Keep to the rate on average; after a long stall start afresh.
                    next_due = next_due + interval if now - next_due < interval else now + interval
            if due:
                self._handle(seq, raw, paced)
            else:
                with self._lock:
                    self._skipped += 1
            if self._reached_max():
                break
            read_from = self.clock()
            cpu_from = time.process_time()
        self._flush()
        damage = getattr(source, "damage", None)  # a file's damaged places, read past (VideoSource)
        if isinstance(damage, SourceDamage):
            with self._lock:
                self._damage = SourceDamage(self._damage.frames + damage.frames,
                                            self._damage.source_frames + damage.source_frames,
                                            self._damage.places + damage.places)
        return last

    def _drop(self, n: int, reason: DropReason) -> None:
        with self._lock:
            self._dropped += n
            self._dropped_by[reason] += n
        with _COUNTERS_LOCK:
            _DROPPED[self.camera.id] += n
            _DROPPED_BY[(self.camera.id, reason)] += n

    def _too_long_to_drain(self) -> bool:
        """Whether the workers need more than ``distributed.max_backlog_s`` to drain the queues at their measured
        rate (unknown, or Redis away: no)."""
        if self.backlog_s is None:
            return False
        try:
            seconds = self.backlog_s()
        except OUTAGE_ERRORS:
            self._backlog_seen_s = None
            return False
        self._backlog_seen_s = seconds
        late = seconds is not None and seconds >= self.settings.distributed.max_backlog_s
        if late and not self._late:
            log.warning("capture of camera %s: the workers need %.0f s to drain the queues (max_backlog_s %g): %s "
                        "until they catch up", self.camera.id, seconds, self.settings.distributed.max_backlog_s,
                        "frames are dropped at the source" if self.live else "the file is read no further")
        self._late = late
        return late

    def _file_waits_to_drain(self) -> bool:
        """A file's frame waits, instead of being dropped, until the workers need less than
        ``distributed.max_backlog_s`` to drain the queues: a file keeps no real time, so a slow or overloaded site
        processes all of it, late, as the embedded mode does; and the frame is stored only once it is admitted,
        so it cannot expire in a queue either. A live frame is not waited for (the camera goes on). False when
        ``stop`` was set first (the frame is then dropped and counted)."""
        if self.live:
            return False
        while self._too_long_to_drain():
            if self.stop.wait(DRAIN_WAIT_POLL_S):
                return False
        return True

    def _fair_share_allows(self, room: bool, waiting: int) -> bool:
        """Near the site's backlog cap a live camera gets no more than its share of the admissions
        (genesis.pipeline.admission): its try is recorded whether the site has ``room`` or not (a camera that
        always comes when the site is full is owed the next slot). Near: ``FAIR_FROM`` of either cap, the
        messages waiting (``max_backlog``) or the seconds the workers need (``max_backlog_s``). A file, a site
        below both, or Redis away: True."""
        d = self.settings.distributed
        seen = self._backlog_seen_s
        pressure = max(waiting / d.max_backlog, 0.0 if seen is None else seen / d.max_backlog_s)
        if not self.live or self.fair is None or pressure < FAIR_FROM:
            return True
        try:
            return self.fair.admit(self.camera.id, room)
        except OUTAGE_ERRORS:
            return True

    def _frames_fit(self) -> bool:
        """Whether the frame store's Redis has room for frames (``distributed.frame_memory_limit``)."""
        if self.memory is None:
            return True
        try:
            memory = self.memory()
        except OUTAGE_ERRORS:
            return True  # away: the sending path waits or drops, and says so
        return frames_fit(memory, self.settings.distributed.frame_memory_limit)

    def _handle(self, seq: int, raw: RawFrame, paced: bool = False) -> None:
        captured_at = time.time()
        d = self.settings.distributed
        if not self._pending:  # a new message: look at the queue once for all its frames
            try:
                waiting = self.backlog()
                self._outage_over()
            except OUTAGE_ERRORS as exc:
                # Redis away: a live frame is dropped (counted); a file waits until it is back.
                self._outage = True
                self._set_state("degraded", f"frame store or broker unreachable: {type(exc).__name__}: {exc}")
                if self.live:
                    self._drop(1, "redis_away")
                    return
                waiting = 0
                self._until_sent("the queue length", self.backlog)
            # (the message cap already full: no need for the seconds, the fair share's pressure is the count's)
            full = waiting >= d.max_backlog or (self._too_long_to_drain() and not self._file_waits_to_drain())
            if not self._fair_share_allows(not full, waiting) or full:
                self._drop(1, "backpressure")
                return
            if not self._frames_fit():
                self._drop(1, "redis_full")
                return
            self._batch = d.detect_batch_frames if waiting and not (self.live or paced) else 1
        image = raw.image
        key = frame_key(self.camera.id, self.run_id, seq)
        c0 = time.thread_time()
        static = self.gate.check(image, raw.ts) if self.gate is not None else False
        h, w = int(image.shape[0]), int(image.shape[1])
        window = gate_window(self.gate.changed, w, h, self._window, self.gate.config) if self.gate is not None \
            else None
        c1 = time.thread_time()
        ref = FrameRef(self.camera.id, seq, raw.ts, key, w, h, captured_at, static, window)
        # A still frame travels as a marker: no stage reads its pixels, so they are neither encoded nor stored.
        self._pending.append((ref, None if static else encode_jpeg(image, self.settings.pipeline.jpeg_quality)))
        self._cpu["gate"] += c1 - c0
        self._cpu["encode"] += time.thread_time() - c1
        if len(self._pending) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        """Store the held frames and publish them as one message."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        refs = [ref for ref, _ in pending]
        prev = self._prev_seq

        def send() -> None:
            c0 = time.thread_time()
            try:
                stored = [(ref.key, data) for ref, data in pending if data is not None]
                if stored:
                    self.store.put_many(stored)
                self.publish(refs, self.run_id, prev)
            finally:
                self._cpu["send"] += time.thread_time() - c0

        try:
            if self.live:
                # A camera does not wait: what cannot be sent now is dropped (and counted), and the
                # next frame tries again. The chain goes on from the last frame published.
                try:
                    send()
                except OUTAGE_ERRORS as exc:
                    if is_out_of_memory(exc):
                        raise
                    self._outage = True
                    self._set_state("degraded", f"frame store or broker unreachable: {type(exc).__name__}: {exc}")
                    self._drop(len(refs), "redis_away")
                    return
                self._outage_over()
            elif not self._until_sent(f"frames {refs[0].seq}-{refs[-1].seq}", send):
                return
        except SEND_ERRORS as exc:
            if not is_out_of_memory(exc):
                raise
            self._redis_full(refs, exc)
            return
        with self._lock:
            self._prev_seq = refs[-1].seq
            self._published += len(refs)
            self._still += sum(ref.static for ref in refs)
        with _COUNTERS_LOCK:
            _PUBLISHED[self.camera.id] += len(refs)

    def _redis_full(self, refs: list[FrameRef], exc: BaseException) -> None:
        """Redis refused the frames of a message (OOM): a counted drop; what of them was stored is
        deleted (``DEL`` is allowed in a full Redis), then a short wait for memory to free."""
        self._drop(len(refs), "redis_full")
        self._set_state("degraded", f"frame store full, frames dropped: {type(exc).__name__}: {exc}")
        self._outage = True  # "connected" again with the next message that goes through
        try:
            for ref in refs:
                if not ref.static:
                    self.store.delete(ref.key)
        except SEND_ERRORS:
            pass  # they expire with their TTL
        self.stop.wait(FULL_BACKOFF_S)

    def _until_sent(self, what: str, send: Callable[[], object], *, wait_when_full: bool = False) -> bool:
        """Call ``send`` until Redis takes it, waiting with backoff while it is away (and, with
        ``wait_when_full``, while it is out of memory; otherwise that error goes to the caller);
        False when ``stop`` was set first (what was to be sent is then lost, and the run ends
        without it)."""
        delays = backoff_delays(self.backoff_initial_s, self.backoff_max_s)
        while True:
            try:
                send()
            except SEND_ERRORS as exc:
                full = is_out_of_memory(exc)
                if (full and not wait_when_full) or not (full or isinstance(exc, OUTAGE_ERRORS)):
                    raise
                self._outage = True
                self._set_state("degraded", f"frame store or broker unreachable ({what} wait): "
                                f"{type(exc).__name__}: {exc}")
                if self.stop.wait(self._jittered(next(delays))):
                    return False
                continue
            self._outage_over()
            return True

    def _outage_over(self) -> None:
        if self._outage:
            self._outage = False
            self._set_state("connected")

    def _finish(self, info: SourceInfo) -> None:
        """Tell the sequencer where the run ends (a file's end, or a live source stopped)."""
        if self.end is None:
            return
        end = self.end
        stats = self.stats()
        summary = {
                "last_seq": stats.last_seq,
                "frames": stats.published,
                "dropped": stats.dropped,
                **({"dropped_by": stats.dropped_by} if stats.dropped_by else {}),
                "stride": self.stride,
                "fps": self._fps(info),
                "width": info.width,
                "height": info.height,
                "source": redact(self.source),
                "reconnects": stats.reconnects,
                "outage_s": stats.outage_s,
                **self._declared(info, stats.published + stats.dropped),
            }
        # The end marker must get through even if Redis is away right now (a stop request
        # still ends the run: one last try below).
        if not self._until_sent("end of the run", lambda: end(self.run_id, summary), wait_when_full=True):
            end(self.run_id, summary)

    def _declared(self, info: SourceInfo, read: int) -> dict[str, int]:
        """A file's declared length (after stride and ``max_frames``) and the frames read from it,
        for the truncated-file warning of the run's meta (nothing for a live source)."""
        damage = ({"frames_damaged": self._damage.frames, "damaged_places": self._damage.places}
                  if self._damage.places else {})
        if info.frame_count is None:
            return damage
        declared = -(-info.frame_count // self.stride)
        if self.max_frames is not None:
            declared = min(declared, self.max_frames)
        return {"frames_declared": declared, "frames_read": read, **damage}


# -- still frames as markers --------------------------------------------------------------


MARKER_WAKE_TTL_S = 10
"""A pending wake of the sequencer is forgotten after this (as the detect task's), so a lost wake cannot
stall a run."""


def publish_split(refs: list[FrameRef], run_id: str, prev_seq: int, send_frames: PublishFn,
                  send_markers: PublishFn) -> None:
    """Send one message's frames on, in seq order: each stretch of moving frames to the detect queue
    (``send_frames``), each stretch of still frames (``static``, motion gating) as markers straight to the
    sequencer (``send_markers``), each stretch chained to the frame before it."""
    start = 0
    for i in range(1, len(refs) + 1):
        if i == len(refs) or refs[i].static != refs[start].static:
            part = refs[start:i]
            (send_markers if part[0].static else send_frames)(part, run_id, prev_seq)
            prev_seq = part[-1].seq
            start = i


def push_markers(redis: Any, refs: list[FrameRef], run_id: str, prev_seq: int) -> None:
    """Still frames go to the sequencer as results without detections (no pixels, no detect task): it carries
    the tracks forward exactly as for a still frame the detect task skipped (``HeldDetections``)."""
    results = []
    for ref in refs:
        results.append(FrameResult(ref, prev_seq))
        prev_seq = ref.seq
    push_results(redis, run_id, results)


def wake_sequencer(app: Celery, settings: Settings, redis: Any, camera_id: str, run_id: str) -> None:
    """One sequence task for a burst of results: only when none is pending (the task clears the flag before it
    reads the results, so a result pushed after that read always finds the flag clear)."""
    from genesis.tasks.routing import SEQUENCE, queue_of

    if redis.set(wake_key(run_id), "1", nx=True, ex=MARKER_WAKE_TTL_S):
        app.send_task(SEQUENCE, args=[camera_id, run_id], queue=queue_of(settings, SEQUENCE))


# -- the distributed wiring ---------------------------------------------------------------


def distributed_capture(
    settings: Settings,
    camera: CameraConfig,
    source: str,
    *,
    app: Celery | None = None,
    stop: threading.Event | None = None,
    run_id: str | None = None,
    stride: int | None = None,
    max_frames: int | None = None,
    repository: Repository | None = None,
    backoff_initial_s: float = BACKOFF_INITIAL_S,
    backoff_max_s: float = BACKOFF_MAX_S,
    open_source: SourceOpener = VideoSource,
) -> CaptureLoop:
    """A capture loop wired to Redis and the broker: the frame store, ``publish_frames``,
    ``publish_end`` and the detect queue's backlog."""
    from genesis.adapters.redis_frames import RedisFrameStore
    from genesis.tasks.dispatch import publish_end, publish_frames
    from genesis.tasks.routing import DETECT, SEQUENCE, queue_of

    celery_app = app if app is not None else make_app(settings)
    store = RedisFrameStore.from_settings(settings)
    detect_queue = queue_of(settings, DETECT)

    def send_frames(refs: list[FrameRef], run: str, prev_seq: int) -> None:
        publish_frames(celery_app, settings, refs, run, prev_seq, redis=store.client)  # kept, to be sent again

    def send_markers(refs: list[FrameRef], run: str, prev_seq: int) -> None:
        push_markers(store.client, refs, run, prev_seq)
        wake_sequencer(celery_app, settings, store.client, camera.id, run)

    def publish(refs: list[FrameRef], run: str, prev_seq: int) -> None:
        publish_split(refs, run, prev_seq, send_frames, send_markers)

    def backlog() -> int:
        return detect_backlog(celery_app, detect_queue)

    def backlog_s() -> float | None:
        return backlog_seconds(celery_app, [detect_queue, queue_of(settings, SEQUENCE)])

    def end(run: str, summary: dict[str, Any]) -> None:
        publish_end(celery_app, settings, store.client, camera.id, run, summary)

    def memory() -> RedisMemory | None:
        from genesis.adapters.redis_memory import redis_memory

        return redis_memory(store.client)

    for warning in eviction_warnings(settings):  # once, at start: a policy that loses data silently
        log.warning("capture of camera %s: %s", camera.id, warning)

    def keep_alive(run: str) -> Callable[[], None]:
        from genesis.pipeline.liveness import RunHeartbeat

        beat = RunHeartbeat(store.client, run, settings.distributed.run_stale_after_s)
        beat.start()
        return beat.stop

    return CaptureLoop(
        settings, camera, source, store, publish, backlog, stop,
        end=end, repository=repository, run_id=run_id, stride=stride, max_frames=max_frames,
        backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s, keep_alive=keep_alive,
        open_source=open_source, memory=memory, backlog_s=backlog_s, fair=FairShare(store.client),
    )
