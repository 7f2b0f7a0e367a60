"""Domain types exchanged between stages.

Plain frozen dataclasses: no I/O, no framework types. Everything a stage receives or
returns is one of these, so the same stage runs embedded or inside a Celery task, where
the types travel as JSON (``to_dict``/``from_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from genesis.domain.alerts import Alert as Alert
from genesis.domain.alerts import AlertKind as AlertKind
from genesis.domain.alerts import OccupancySample as OccupancySample

BBox = tuple[float, float, float, float]
"""A box in pixels: x1, y1, x2, y2."""

UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class FrameRef:
    """A reference to one frame in a frame store (the frame bytes live elsewhere)."""

    camera_id: str
    seq: int
    ts: float
    key: str
    width: int
    height: int
    captured_at: float = 0.0
    """Wall-clock time (epoch seconds) the capture process read the frame; 0 when unknown (the
    embedded runner). Only for the end-to-end latency metric: no stage reads it."""
    static: bool = False
    """Nothing moved since the last detected frame (motion gating, genesis.stages.motion): the detect stage
    skips it and the ordered stage reuses the last tracked boxes."""
    window: tuple[int, int, int, int] | None = None
    """Region detection (genesis.stages.regions): detect only this window (x1, y1, x2, y2) of the frame; the
    ordered stage keeps the held boxes outside it. None: the whole frame."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameRef:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected person."""

    box: BBox
    score: float
    class_id: int = 0


@dataclass(frozen=True, slots=True)
class FrameDetections:
    frame: FrameRef
    detections: tuple[Detection, ...]
    inference_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class TrackedPerson:
    """A person box that the tracker has tied to a track id."""

    track_id: int
    box: BBox
    score: float

    @property
    def foot(self) -> tuple[float, float]:
        """The bottom centre of the box: where the person stands."""
        x1, _, x2, y2 = self.box
        return ((x1 + x2) / 2.0, y2)


@dataclass(frozen=True, slots=True)
class TrackedFrame:
    frame: FrameRef
    persons: tuple[TrackedPerson, ...]


@dataclass(frozen=True, slots=True)
class Face:
    """A face found in an image: box and the five landmarks YuNet gives, in image pixels."""

    box: BBox
    landmarks: tuple[tuple[float, float], ...]
    score: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True, slots=True)
class FaceMatch:
    """The answer of the gallery for one face embedding."""

    identity: str | None
    """Name of the matched identity, or None when nothing is close enough (unknown)."""
    distance: float
    """Cosine distance to the best identity (1 - cosine similarity)."""
    second_distance: float | None = None


@dataclass(frozen=True, slots=True)
class RecognitionAttempt:
    """One recognition attempt on a track at one frame (only attempts that found a face)."""

    camera_id: str
    track_id: int
    seq: int
    ts: float
    face_box: BBox
    face_score: float
    identity: str | None
    distance: float


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class ZoneEventKind(StrEnum):
    ENTER = "enter"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    camera_id: str
    zone: str
    track_id: int
    kind: ZoneEventKind
    seq: int
    ts: float


@dataclass(frozen=True, slots=True)
class LineCrossing:
    camera_id: str
    line: str
    track_id: int
    direction: Direction
    seq: int
    ts: float


@dataclass(frozen=True, slots=True)
class Sighting:
    """A track seen in a frame."""

    camera_id: str
    track_id: int
    seq: int
    ts: float
    box: BBox
    score: float


@dataclass(frozen=True, slots=True)
class PathPoint:
    """A stored point of a track's trajectory (what the database keeps instead of every sighting):
    the box at frame ``seq``, and ``frames``, the sightings of the track this point stands for (itself
    and those since the track's previous point). See ``genesis.stages.path``."""

    camera_id: str
    track_id: int
    seq: int
    ts: float
    box: BBox
    score: float
    frames: int = 1


@dataclass(slots=True)
class FrameOutcome:
    """Everything the ordered per-camera stages derived from one frame."""

    tracked: TrackedFrame
    sightings: list[Sighting] = field(default_factory=list)
    """Every track in the frame (for the live view, the heatmap and the frame's counts; not stored)."""
    points: list[PathPoint] = field(default_factory=list)
    """The sightings kept as trajectory points (stored)."""
    attempts: list[RecognitionAttempt] = field(default_factory=list)
    zone_events: list[ZoneEvent] = field(default_factory=list)
    crossings: list[LineCrossing] = field(default_factory=list)
    occupancy: dict[str, int] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    samples: list[OccupancySample] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TrackRecord:
    """One identity segment of a person's passage through one camera in one run (a track that was never cut
    has one, ``segment`` 0); a sighting belongs to the segment whose ``first_seq``..``last_seq`` holds its seq."""

    camera_id: str
    track_id: int
    first_seq: int
    last_seq: int
    first_ts: float
    last_ts: float
    frames: int
    identity: str | None
    """The identity name decided for the segment; kept even if the identity is deleted later."""
    votes: int
    attempts: int
    best_distance: float | None
    segment: int = 0
    named_ts: float | None = None
    """The frame time the name was decided (live), or None."""
    end_reason: str | None = None
    """Why the segment ended (gap, jump, face, overlap, appearance), None for the track's last one."""
