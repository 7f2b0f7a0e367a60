"""The ordered part of the pipeline for one camera: tracking, recognition policy, zones, lines.

Frames must reach ``CameraState.process`` in ``seq`` order; the embedded runner calls it
directly, the distributed sequencer calls it from whichever worker holds the camera's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genesis.adapters.db.repository import TrackRecord
from genesis.backends.faces import Embedder, FaceDetector
from genesis.config import CameraConfig, Settings
from genesis.domain import FrameDetections, FrameOutcome, Sighting, ZoneEvent
from genesis.stages.alerts import AlertStage
from genesis.stages.analytics import LineCounter, ZoneCounter
from genesis.stages.motion import HeldDetections
from genesis.stages.recognize import Gallery, TrackRecognizer, recognize_persons
from genesis.stages.track import CameraTracker


@dataclass(slots=True)
class TrackSpan:
    first_seq: int
    last_seq: int
    first_ts: float
    last_ts: float
    frames: int


@dataclass(frozen=True, slots=True)
class FaceModels:
    detector: FaceDetector
    embedder: Embedder
    gallery: Gallery


class CameraState:
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
        self.recognizer = TrackRecognizer(settings.recognition, frame_stride)
        self.faces = faces
        min_frames = settings.analytics.line_min_frames
        self.zones = [
            ZoneCounter(camera.id, z, width, height, min_frames, self.tracker.lost_after_s) for z in camera.zones
        ]
        self.lines = [LineCounter(camera.id, ln, width, height, min_frames) for ln in camera.lines]
        self.spans: dict[int, TrackSpan] = {}
        self.frames = 0
        self.alerts = AlertStage(settings.alerts, camera)
        self.held = HeldDetections()  # static frames (motion gating) reuse the last detections

    def process(self, detections: FrameDetections, image: np.ndarray | Callable[[], np.ndarray]) -> FrameOutcome:
        """One frame, in ``seq`` order. ``image`` may be a loader: it is only called when a
        face search needs the pixels (the distributed sequencer fetches them from Redis)."""
        tracked = self.tracker.update(self.held.apply(detections))
        frame = tracked.frame
        self.frames += 1
        outcome = FrameOutcome(tracked=tracked)
        for p in tracked.persons:
            outcome.sightings.append(Sighting(frame.camera_id, p.track_id, frame.seq, frame.ts, p.box, p.score))
            span = self.spans.get(p.track_id)
            if span is None:
                self.spans[p.track_id] = TrackSpan(frame.seq, frame.seq, frame.ts, frame.ts, 1)
            else:
                span.last_seq, span.last_ts = frame.seq, frame.ts
                span.frames += 1
        selected = self.recognizer.select(tracked) if self.faces is not None else []
        if self.faces is not None and selected:
            pixels = image() if callable(image) else image  # loaded only when a face is searched
            outcome.attempts = recognize_persons(
                pixels, tracked, self.recognizer, self.faces.detector, self.faces.embedder, self.faces.gallery,
                selected,
            )
        for zone in self.zones:
            outcome.zone_events.extend(zone.update(tracked))
            outcome.occupancy[zone.name] = zone.occupancy
        for line in self.lines:
            outcome.crossings.extend(line.update(tracked))
        outcome.alerts, outcome.samples = self.alerts.update(outcome, lambda t: self.recognizer.identity(t).identity)
        return outcome

    def track_records(self) -> list[TrackRecord]:
        out = []
        for tid in sorted(self.spans):
            span = self.spans[tid]
            ident = self.recognizer.identity(tid)
            out.append(
                TrackRecord(
                    camera_id=self.camera.id,
                    track_id=tid,
                    first_seq=span.first_seq,
                    last_seq=span.last_seq,
                    first_ts=span.first_ts,
                    last_ts=span.last_ts,
                    frames=span.frames,
                    identity=ident.identity,
                    votes=ident.votes,
                    attempts=ident.attempts,
                    best_distance=ident.best_distance,
                )
            )
        return out

    def __getstate__(self) -> dict[str, object]:
        """Picklable without the models (the distributed sequencer keeps this state in Redis)."""
        state = {slot: getattr(self, slot) for slot in self.__dict__}
        state["faces"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)

    def close(self) -> list[ZoneEvent]:
        """End of stream: close the visits still open."""
        events: list[ZoneEvent] = []
        for zone in self.zones:
            events.extend(zone.expire(None))
        return events
