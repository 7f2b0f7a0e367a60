"""The ordered part of the pipeline for one camera: tracking, recognition policy, zones, lines.

Frames must reach ``CameraState.process`` in ``seq`` order; the embedded runner calls it
directly, the distributed sequencer calls it from whichever worker holds the camera's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from genesis.backends.faces import Embedder, FaceDetector
from genesis.config import CameraConfig, Settings
from genesis.domain import (
    FrameDetections,
    FrameOutcome,
    FrameRef,
    PathPoint,
    Sighting,
    TrackedFrame,
    TrackRecord,
    ZoneEvent,
)
from genesis.domain.codec import SavedState
from genesis.stages.alerts import AlertStage
from genesis.stages.analytics import LineCounter, ZoneCounter, to_sv
from genesis.stages.motion import HeldDetections
from genesis.stages.path import PathSampler
from genesis.stages.recognize import Gallery, TrackRecognizer, recognize_persons, segment_identity
from genesis.stages.track import CameraTracker

RETIRE_S = 120.0
"""A track not seen for this long (media seconds; at least twice the tracker's lost-track time) leaves the
camera's state: its records and faces are stored (:meth:`CameraState.take_retired`)."""
RETIRE_EVERY_S = 30.0
"""How often (media time) the camera's state looks for tracks to retire."""


@dataclass(frozen=True, slots=True)
class FaceModels:
    detector: FaceDetector
    embedder: Embedder
    gallery: Gallery


def _once(load: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """``load``, called at most once."""
    got: list[np.ndarray] = []

    def get() -> np.ndarray:
        if not got:
            got.append(load())
        return got[0]

    return get


class CameraState(SavedState):
    """The ordered state of one camera in one run. The distributed sequencer keeps it in Redis
    between passes with ``export_state`` / ``import_state`` (our JSON codec: every attribute below
    by its annotation, each stage by its own state; the models and the settings are not saved)."""

    STATE_REBUILT: ClassVar[frozenset[str]] = frozenset({"camera", "width", "height", "faces", "retired"})
    tracker: CameraTracker
    recognizer: TrackRecognizer
    zones: list[ZoneCounter]
    lines: list[LineCounter]
    frames: int
    alerts: AlertStage
    held: HeldDetections
    path: PathSampler
    last_frame: FrameRef | None

    def __init__(
        self,
        settings: Settings,
        camera: CameraConfig,
        width: int,
        height: int,
        fps: float,
        faces: FaceModels | None,
        frame_stride: int = 1,
    ) -> None:
        self.camera = camera
        self.width, self.height = width, height
        self.tracker = CameraTracker(settings.tracker, fps)
        self.recognizer = TrackRecognizer(settings.recognition, frame_stride,
                                          faces.gallery.threshold if faces is not None else None)
        self.faces = faces
        min_frames = settings.analytics.line_min_frames
        self.zones = [
            ZoneCounter(camera.id, z, width, height, min_frames, self.tracker.lost_after_s) for z in camera.zones
        ]
        self.lines = [LineCounter(camera.id, ln, width, height, min_frames) for ln in camera.lines]
        self.frames = 0
        self.alerts = AlertStage(settings.alerts, camera)
        self.held = HeldDetections()  # static frames (motion gating) reuse the last tracked boxes
        self.path = PathSampler(settings.analytics.path)  # the trajectory points stored (issue 21)
        self.last_frame = None
        """The last frame processed (the exit points of the tracks still open are stored with it)."""
        self.retired: list[TrackRecognizer] = []
        """Tracks taken out of the state since the last ``take_retired`` (not saved: they are handed on before
        the state that no longer holds them is saved)."""

    def process(self, detections: FrameDetections, image: np.ndarray | Callable[[], np.ndarray]) -> FrameOutcome:
        """One frame, in ``seq`` order. ``image`` may be a loader: it is only called when a face search
        or the appearance cue of the identity segments needs the pixels (the distributed sequencer
        fetches them from Redis), and at most once."""
        tracked = self.held.track(detections, self.tracker.update)  # static frames: genesis.stages.motion
        frame = tracked.frame
        self.frames += 1
        outcome = FrameOutcome(tracked=tracked)
        for p in tracked.persons:
            outcome.sightings.append(Sighting(frame.camera_id, p.track_id, frame.seq, frame.ts, p.box, p.score))
        if callable(image):
            image = _once(image)  # the appearance cue and the face search share one load of the pixels
        # A still frame (motion gating) has no pixels a stage reads (the distributed mode sends it as a marker,
        # without them): it carries the tracks forward, and face searches wait for the next detected frame.
        still = frame.static
        self.recognizer.observe(tracked, image if tracked.persons and not still else None)  # identity segments
        selected = self.recognizer.select(tracked) if self.faces is not None and not still else []
        if self.faces is not None and selected:
            pixels = image() if callable(image) else image  # loaded only when a face is searched
            outcome.attempts = recognize_persons(
                pixels, tracked, self.recognizer, self.faces.detector, self.faces.embedder, self.faces.gallery,
                selected,
            )
        dets = to_sv(tracked.persons) if self.zones or self.lines else None  # once per frame, for all of them
        for zone in self.zones:
            outcome.zone_events.extend(zone.update(tracked, dets))
            outcome.occupancy[zone.name] = zone.occupancy
        for line in self.lines:
            outcome.crossings.extend(line.update(tracked, dets))
        outcome.alerts, outcome.samples = self.alerts.update(outcome, lambda t: self.recognizer.identity(t).identity)
        marked = {e.track_id for e in outcome.zone_events} | {c.track_id for c in outcome.crossings}
        segments = {p.track_id: len(self.recognizer.segments(p.track_id)) for p in tracked.persons}
        outcome.points = self.path.sample(frame.ts, outcome.sightings, marked, segments)
        before = self.last_frame
        if before is not None and int(frame.ts // RETIRE_EVERY_S) != int(before.ts // RETIRE_EVERY_S):
            gone = self.recognizer.retire(frame.ts, max(RETIRE_S, 2.0 * self.tracker.lost_after_s))
            if gone.track_ids():
                self.retired.append(gone)
        self.last_frame = frame
        return outcome

    def take_retired(self) -> list[TrackRecognizer]:
        """The tracks retired since the last call, oldest first (each group by track id): the same frames retire
        the same tracks in both modes, so their records and faces are stored in the same order."""
        out, self.retired = self.retired, []
        return out

    def track_records(self, recognizer: TrackRecognizer | None = None) -> list[TrackRecord]:
        """One record per identity segment of every track (of ``recognizer``: retired ones), by (track, segment)."""
        rec = self.recognizer if recognizer is None else recognizer
        out = []
        for tid in rec.track_ids():
            for seg in rec.segments(tid):
                ident = segment_identity(seg)
                out.append(
                    TrackRecord(
                        camera_id=self.camera.id,
                        track_id=tid,
                        first_seq=seg.first_seq,
                        last_seq=seg.last_seq,
                        first_ts=seg.first_ts,
                        last_ts=seg.last_ts,
                        frames=seg.frames,
                        identity=ident.identity,
                        votes=ident.votes,
                        attempts=ident.attempts,
                        best_distance=ident.best_distance,
                        segment=seg.index,
                        named_ts=seg.named_ts if ident.identity is not None else None,
                        end_reason=seg.end_reason,
                    )
                )
        return out

    def close_path(self) -> FrameOutcome | None:
        """End of stream: the exit points of the tracks still in the path sampler, as an outcome of the
        last frame that holds nothing else (None when there is none to store)."""
        tail: list[PathPoint] = self.path.tail()
        if not tail or self.last_frame is None:
            return None
        return FrameOutcome(tracked=TrackedFrame(frame=self.last_frame, persons=()), points=tail)

    def close(self) -> list[ZoneEvent]:
        """End of stream: close the visits still open."""
        events: list[ZoneEvent] = []
        for zone in self.zones:
            events.extend(zone.expire(None))
        return events
