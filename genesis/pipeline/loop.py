"""The run loop: the one piece of code that turns a camera's ordered detections into a run, in
both modes.

The embedded runner (:mod:`genesis.pipeline.embedded`) feeds it frame by frame from a video; the
distributed sequencer (:mod:`genesis.pipeline.sequencer`) feeds it the contiguous chain of detect
results it finds in Redis, from whichever worker holds the camera's lock. Either way the loop

- feeds :class:`~genesis.stages.camera.CameraState` (tracking, recognition per track, zones,
  lines, alert rules) in ``seq`` order,
- counts the frames, their first and last timestamps, the frames skipped (undecodable) and missing
  (never arrived),
- batches the outcomes and hands each batch to its :class:`Sink`,
- closes the run: the visits still open, the run's meta, then the sink's ``finish``.

Where the rows go is the sink's business: :class:`~genesis.pipeline.sinks.LocalSink` writes them
to the repository and delivers alerts in the same process; ``CelerySink`` (in
:mod:`genesis.tasks.sequence`) sends them to the store and alert queues. So the equality of the
two modes rests on this module, not on two copies of it.

Consumers of every frame or every batch (an annotated video, a progress bar; later a live view,
MQTT events) are sinks too: pass several and :class:`CompositeSink` calls each in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from genesis.domain import (
    Alert,
    FrameDetections,
    FrameOutcome,
    LineCrossing,
    OccupancySample,
    PathPoint,
    RecognitionAttempt,
    Sighting,
    ZoneEvent,
)
from genesis.domain.codec import CodecError, SavedState, decode, encode
from genesis.stages.camera import CameraState
from genesis.stages.recognize import TrackRecognizer

Image = np.ndarray | Callable[[], np.ndarray]
"""A frame's pixels, or a loader called only when a stage needs them (a face search)."""


@dataclass(slots=True)
class RunProgress:
    """What the loop counts, the same in both modes (and kept with the camera state between the
    distributed sequencer's passes)."""

    stride: int = 1
    fps: float = 25.0
    last_seq: int = -1
    """The last frame handled (processed, skipped or given up as missing)."""
    frames: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    skipped: int = 0
    """Frames that arrived as skip markers (a frame that could not be decoded)."""
    missing: int = 0
    """Frames given up after the gap timeout (distributed mode)."""
    expired: int = 0
    """Frames whose pixels were gone from the frame store when their detect task ran (expired, or
    evicted by a Redis that was full: distributed mode), counted instead of dead-lettered."""
    gap_since: float | None = None
    """When the sequencer started to wait for a frame that has not arrived."""
    resent: int = -1
    """The missing frame whose detect messages the sequencer last sent again (-1: none): once per
    gap, before it is given up."""
    declared_frames: int | None = None
    """How many frames the source said it would give (a file's frame count, after stride and
    ``--max-frames``); None for a live source."""
    source_frames_read: int | None = None
    """Frames read from the source when the capture says so (distributed: published + dropped by
    backpressure); None: the frames this loop saw."""
    damaged: int = 0
    """Frames of a file (after the stride) that fell in damaged places the reader skipped
    (``VideoSource.damage``; distributed: from the capture's end of the run)."""
    damaged_places: int = 0
    peak_in_frame: int = 0
    """Most people in one frame (the report reads it from the run's meta)."""

    def run_meta(self) -> dict[str, Any]:
        """The run's meta (stored with the run; ``build_results`` reads it)."""
        meta: dict[str, Any] = {
            "frames": self.frames,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "frame_interval_s": round(self.stride / self.fps, 6),
            "peak_in_frame": self.peak_in_frame,
            "stride": self.stride,
            "skipped_frames": self.skipped,
            "missing_frames": self.missing,
            "expired_frames": self.expired,
        }
        if self.declared_frames is not None:
            meta["frames_declared"] = self.declared_frames
            seen = self.frames + self.skipped + self.missing + self.expired
            meta["frames_read"] = seen if self.source_frames_read is None else self.source_frames_read
        if self.declared_frames is not None or self.damaged_places:
            meta["frames_damaged"] = self.damaged
            meta["damaged_places"] = self.damaged_places
        return meta


def truncated(meta: dict[str, Any]) -> str | None:
    """A one-line warning when a file ended before its declared length or was damaged, else None.

    Container headers are often off by a frame (a clip here declares 341 frames and holds 340), so
    a shortfall of one frame, or of 1 % of the declared count, is not a warning. Frames skipped in
    damaged places (``frames_damaged``) are said as such, not taken for an early end; the decoder
    also drops a few frames after a damaged place without a failed read (until the next frame it
    can decode whole), up to about as many again, so that much more is tolerated."""
    parts: list[str] = []
    damaged, places = int(meta.get("frames_damaged") or 0), int(meta.get("damaged_places") or 0)
    if places:
        parts.append(f"the source is damaged in {places} place(s): {damaged} frame(s) there could not be decoded "
                     "and were skipped, the rest was read")
    declared, read = meta.get("frames_declared"), meta.get("frames_read")
    if declared is not None and read is not None and (
            int(declared) - int(read) - damaged > max(1, int(declared) // 100) + damaged):
        parts.append(f"the source ended early: {read} of the {declared} frames its header declares were read "
                     "(a truncated or damaged file?)")
    return "; ".join(parts) or None


@dataclass(slots=True)
class BatchRows:
    """The rows of a batch of frames, by kind (what both sinks store)."""

    sightings: list[Sighting] = field(default_factory=list)
    """Every sighting (for the heatmap grid; not stored row by row)."""
    points: list[PathPoint] = field(default_factory=list)
    attempts: list[RecognitionAttempt] = field(default_factory=list)
    zone_events: list[ZoneEvent] = field(default_factory=list)
    crossings: list[LineCrossing] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    samples: list[OccupancySample] = field(default_factory=list)

    @classmethod
    def of(cls, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent] = ()) -> BatchRows:
        rows = cls()
        for o in outcomes:
            rows.sightings += o.sightings
            rows.points += o.points
            rows.attempts += o.attempts
            rows.zone_events += o.zone_events
            rows.crossings += o.crossings
            rows.alerts += o.alerts
            rows.samples += o.samples
        rows.zone_events += closing
        return rows

    @property
    def analytics(self) -> bool:
        """Whether there is anything for the analytics tables (sightings, attempts, events, crossings)."""
        return bool(self.sightings or self.points or self.attempts or self.zone_events or self.crossings)


class Sink(Protocol):
    """Where a run's results go, and anything else that wants each frame or batch."""

    def on_frame(self, outcome: FrameOutcome, image: Image, camera: CameraState) -> None:
        """Every processed frame, in order (``image``: its pixels or their loader; ``camera``: the
        camera's state as of this frame, e.g. the names decided for its tracks)."""

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        """The rows of a batch of frames (``closing``: the visits closed at the end of the run)."""

    def on_tracks_retired(self, camera: CameraState, retired: TrackRecognizer) -> None:
        """Tracks the camera's state let go of (not seen for ``RETIRE_S``): final, stored now; ``camera`` no
        longer holds them (``camera.track_records(retired)`` gives their records)."""

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        """The run is over: every batch has been handed on."""


class BaseSink:
    """A sink that ignores everything: subclass it and override what you need."""

    def on_frame(self, outcome: FrameOutcome, image: Image, camera: CameraState) -> None:
        return None

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        return None

    def on_tracks_retired(self, camera: CameraState, retired: TrackRecognizer) -> None:
        return None

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        return None


@dataclass(slots=True)
class CompositeSink:
    """Several sinks, called in order (the store first, observers after it)."""

    sinks: list[Sink] = field(default_factory=list)

    def on_frame(self, outcome: FrameOutcome, image: Image, camera: CameraState) -> None:
        for s in self.sinks:
            s.on_frame(outcome, image, camera)

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        for s in self.sinks:
            s.on_batch(outcomes, closing)

    def on_tracks_retired(self, camera: CameraState, retired: TrackRecognizer) -> None:
        for s in self.sinks:
            s.on_tracks_retired(camera, retired)

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        for s in self.sinks:
            s.on_finish(camera, progress)


class RunState(SavedState):
    """The camera's ordered state and the loop's counters: what the distributed sequencer keeps in
    Redis between passes (:meth:`dumps` / :meth:`restore`, JSON of our own types, never pickle)."""

    FORMAT: ClassVar[str] = "genesis.run-state/1"

    def __init__(self, camera: CameraState, progress: RunProgress) -> None:
        self.camera = camera
        self.progress = progress

    def export_state(self) -> dict[str, Any]:
        return {"format": self.FORMAT, "camera": self.camera.export_state(), "progress": encode(self.progress)}

    def import_state(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("format") != self.FORMAT or set(data) != {
                "format", "camera", "progress"}:
            raise CodecError(f"not a {self.FORMAT} state")
        self.camera.import_state(data["camera"])
        self.progress = decode(RunProgress, data["progress"])


class RunLoop:
    """Feeds one run's frames, in ``seq`` order, to the camera state and the sink (see the module
    docstring). ``checkpoint`` is called after each batch has been handed to the sink (the
    sequencer saves its state there: rows are sent before the state that covers them is saved)."""

    def __init__(self, state: RunState, sink: Sink, batch_frames: int,
                 checkpoint: Callable[[], None] | None = None) -> None:
        self.state = state
        self.sink = sink
        self.batch_frames = max(1, batch_frames)
        self.checkpoint = checkpoint
        self._batch: list[FrameOutcome] = []

    @property
    def camera(self) -> CameraState:
        return self.state.camera

    @property
    def progress(self) -> RunProgress:
        return self.state.progress

    def feed(self, detections: FrameDetections, image: Image) -> FrameOutcome:
        """One frame, the next in order."""
        p = self.progress
        outcome = self.camera.process(detections, image)
        ts = detections.frame.ts
        if p.frames == 0:
            p.first_ts = ts
        p.frames += 1
        p.last_ts = ts
        p.last_seq = detections.frame.seq
        p.peak_in_frame = max(p.peak_in_frame, len(outcome.sightings))
        self.sink.on_frame(outcome, image, self.camera)
        self._batch.append(outcome)
        if len(self._batch) >= self.batch_frames:
            self.flush()
        return outcome

    def skip(self, seq: int, expired: bool = False) -> None:
        """A frame that arrived but cannot be used: it could not be decoded, or (``expired``) its
        pixels were gone from the frame store."""
        if expired:
            self.progress.expired += 1
        else:
            self.progress.skipped += 1
        self.progress.last_seq = seq

    def give_up(self) -> None:
        """The next frame in the chain never came: count it missing and go on."""
        self.progress.missing += 1

    def flush(self, closing: Sequence[ZoneEvent] = ()) -> None:
        """Hand the pending batch (and ``closing``) to the sink, then checkpoint."""
        batch, self._batch = self._batch, []
        if batch or closing:
            self.sink.on_batch(batch, closing)
        for retired in self.camera.take_retired():  # before the state without them is saved
            self.sink.on_tracks_retired(self.camera, retired)
        if self.checkpoint is not None:
            self.checkpoint()

    def close(self) -> dict[str, Any]:
        """End of the run: close open visits and tracks' paths, hand on the last batch, finish; the run's meta."""
        tail = self.camera.close_path()
        if tail is not None:
            self._batch.append(tail)
        self.flush(self.camera.close())
        self.sink.on_finish(self.camera, self.progress)
        return self.progress.run_meta()
