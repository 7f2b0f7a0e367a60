"""Identity segments: a name belongs to a stretch of a track, not to the track.

Trackers switch and re-use ids (a doorway where people step into the same spot one after
another, people crossing, an occlusion), so the track a name was decided on may later carry
someone else. A track's life is cut into segments; each segment collects its own face votes and
gets its own name. A segment ends when a cheap cue says the track changed hands (a re-attach
after a gap, a jump in box size) or when re-verification by face confidently disagrees with its
name; in the latter case the cut goes back to the last frame that agreed (or to the overlap with
another person, where a swap happens), so the frames in between never carry the wrong name.

Everything here is plain typed data (lists, dicts, numbers, nested dataclasses, arrays): the
distributed sequencer keeps it in Redis between frames.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from genesis.domain import UNKNOWN

END_GAP = "gap"
"""The tracker re-attached the track after it was unseen for longer than ``cut_gap_s``."""
END_JUMP = "jump"
"""The box height changed beyond ``cut_size_ratio`` from one sighting to the next."""
END_FACE = "face"
"""Faces confidently disagreed with the segment's name (or a name followed faces of a stranger)."""
END_APPEARANCE = "appearance"
"""The torso's colours changed beyond ``cut_appearance`` while the track overlapped nobody."""
END_OVERLAP = "overlap"
"""The frames where the track overlapped another person before a face said it changed hands."""


@dataclass(frozen=True, slots=True)
class BestFace:
    seq: int
    ts: float
    area: float
    vector: np.ndarray
    crop: bytes = b""
    """A small JPEG of the face (``face_crop_jpeg``) for the dashboard; empty when none was made."""


@dataclass(slots=True)
class Boundary:
    """A place a segment can be cut: after its ``frames``-th sighting (``seq``, ``ts``), before the
    track's next sighting (``next_seq``, ``next_ts``; None until that sighting arrives)."""

    seq: int
    ts: float
    frames: int
    next_seq: int | None = None
    next_ts: float | None = None


@dataclass(slots=True)
class FaceMark:
    """One face found on the segment: where, what the gallery said, and whether it was clear
    enough (size, detector score, sharpness, no overlap) to disagree with a name."""

    at: Boundary
    label: str
    """The matched identity, or ``UNKNOWN``."""
    distance: float
    """Cosine distance to the nearest identity."""
    clear: bool


@dataclass(slots=True)
class Segment:
    index: int
    first_seq: int
    first_ts: float
    last_seq: int
    last_ts: float
    frames: int = 1
    marks: list[FaceMark] = field(default_factory=list)
    searches: int = 0
    last_search_seq: int | None = None
    last_search_ts: float | None = None
    identity: str | None = None
    stranger: bool = False
    """Enough faces matched nobody (and none anybody): a confident stranger."""
    named_seq: int | None = None
    named_ts: float | None = None
    """When the name was decided (live): the time-to-name of the evaluation."""
    checks: int = 0
    """Face searches made once the segment was settled (re-verification), capped by ``verify_max``."""
    best: BestFace | None = None
    pending: BestFace | None = None
    """The largest face since the last face that agreed with the name (goes with the cut part)."""
    overlap_start: Boundary | None = None
    overlap_end: Boundary | None = None
    end_reason: str | None = None
    # Filled when the segment is closed (its marks are dropped then to keep the state small).
    votes: int = 0
    attempts: int = 0
    best_distance: float | None = None


@dataclass(slots=True)
class TrackState:
    """One track: its segments (closed ones first, the open one last) and where it was last seen."""

    segments: list[Segment]
    box: tuple[float, float, float, float]
    seq: int
    ts: float
    overlapping: bool = False
    look: np.ndarray | None = None
    """Running reference of the torso's hue-saturation histogram (the appearance cue)."""

    @property
    def current(self) -> Segment:
        return self.segments[-1]


@dataclass(slots=True)
class TrackVotes:
    """The votes of a segment's faces (what :func:`genesis.stages.recognize.decide` reads)."""

    searches: int = 0
    attempts: int = 0
    last_seq: int | None = None
    votes: Counter[str] = field(default_factory=Counter)
    best_distance: dict[str, float] = field(default_factory=dict)
    best_face: BestFace | None = None


def tally(marks: list[FaceMark]) -> TrackVotes:
    st = TrackVotes(searches=len(marks), attempts=len(marks))
    for m in marks:
        st.votes[m.label] += 1
        st.best_distance[m.label] = min(st.best_distance.get(m.label, 2.0), m.distance)
    return st


def larger(a: BestFace | None, b: BestFace | None) -> BestFace | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b.area > a.area else a


def close(seg: Segment, reason: str | None) -> None:
    """Freeze a segment: its vote summary is computed and its face marks dropped."""
    st = tally(seg.marks)
    seg.attempts = st.attempts
    if seg.identity is not None:
        seg.votes = st.votes[seg.identity]
        seg.best_distance = st.best_distance.get(seg.identity)
    else:
        seg.votes = 0
        seg.best_distance = st.best_distance.get(UNKNOWN)
    seg.best = larger(seg.best, seg.pending)
    seg.pending = None
    seg.marks = []
    seg.overlap_start = seg.overlap_end = None
    seg.end_reason = reason


def split(seg: Segment, at: Boundary, reason: str) -> Segment:
    """Cut ``seg`` after the boundary ``at``: ``seg`` keeps what came before (and is closed), the
    returned segment (unnamed, fresh) holds the sightings and faces after it."""
    assert at.next_seq is not None and at.next_ts is not None
    right = Segment(
        index=seg.index + 1, first_seq=at.next_seq, first_ts=at.next_ts, last_seq=seg.last_seq,
        last_ts=seg.last_ts, frames=seg.frames - at.frames,
        marks=[m for m in seg.marks if m.at.seq > at.seq],
        last_search_seq=seg.last_search_seq, last_search_ts=seg.last_search_ts,
    )
    right.searches = len(right.marks)
    for m in right.marks:
        m.at.frames -= at.frames
    for name in ("overlap_start", "overlap_end"):
        b = getattr(seg, name)
        if b is not None and b.seq > at.seq:
            b.frames -= at.frames
            setattr(right, name, b)
    kept_best = [f for f in (seg.best, seg.pending) if f is not None and f.seq <= at.seq]
    moved_best = [f for f in (seg.best, seg.pending) if f is not None and f.seq > at.seq]
    for f in moved_best:
        right.best = larger(right.best, f)
    seg.best, seg.pending = None, None
    for f in kept_best:
        seg.best = larger(seg.best, f)
    seg.marks = [m for m in seg.marks if m.at.seq <= at.seq]
    seg.last_seq, seg.last_ts, seg.frames = at.seq, at.ts, at.frames
    if seg.named_seq is not None and seg.named_seq > at.seq:
        seg.identity, seg.named_seq, seg.named_ts = None, None, None
    close(seg, reason)
    return right


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """IoU of every pair of boxes (N x 4, x1 y1 x2 y2), zero on the diagonal."""
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area[:, None] + area[None, :] - inter
    iou: np.ndarray = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
    np.fill_diagonal(iou, 0.0)
    return iou


TORSO = (0.25, 0.4, 0.75, 0.8)
"""The part of a person box (x1, y1, x2, y2 as fractions) whose colours describe the person."""


def torso_histogram(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """Normalised hue-saturation histogram (16 x 8) of the torso part of a person box; None when the
    part is too small to say anything."""
    import cv2

    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    cx1, cy1 = int(max(0, x1 + TORSO[0] * bw)), int(max(0, y1 + TORSO[1] * bh))
    cx2, cy2 = int(min(w, x1 + TORSO[2] * bw)), int(min(h, y1 + TORSO[3] * bh))
    if cx2 - cx1 < 6 or cy2 - cy1 < 6:
        return None
    hsv = cv2.cvtColor(image[cy1:cy2, cx1:cx2], cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    total = float(hist.sum())
    if total <= 0:
        return None
    out: np.ndarray = (hist / total).astype(np.float32)
    return out


def appearance_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two normalised histograms (0 = same colours, 1 = nothing in common)."""
    import cv2

    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))
