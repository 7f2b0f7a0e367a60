"""Identity segments: a name belongs to a stretch of a track, not to the track.

Trackers switch and re-use ids (a doorway where people step into the same spot one after
another, people crossing, an occlusion), so the track a name was decided on may later carry
someone else. A track's life is cut into segments; each segment collects its own face votes and
gets its own name. A segment ends when a cheap cue says the track changed hands (a re-attach
after a gap, a jump in box size) or when re-verification by face confidently disagrees with its
name; in the latter case the cut goes back to the last frame that agreed (or to the overlap with
another person, where a swap happens), so the frames in between never carry the wrong name.

This module owns every decision about segments (:class:`SegmentPolicy`): when a track changed hands
(the cheap cues, each frame), when a segment is due a face search, what name its faces vote for, and
where a cut goes when faces disagree. :mod:`genesis.stages.recognize` only finds and matches faces and
hands each result over (:meth:`SegmentPolicy.searched`); nothing here calls back into it.

The state is plain typed data (lists, dicts, numbers, nested dataclasses, arrays): the distributed
sequencer keeps it in Redis between frames.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from genesis.config import RecognitionConfig
from genesis.domain import UNKNOWN, TrackedFrame

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
    """The votes of a segment's faces (what :func:`decide` reads)."""

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



# -- names from votes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrackIdentity:
    identity: str | None
    votes: int
    attempts: int
    best_distance: float | None


def decide(st: TrackVotes, min_votes: int) -> TrackIdentity:
    """The identity with at least ``min_votes`` votes and more votes than any other identity.

    Unknown votes (faces too far from every identity) do not count against a name: a face
    turned away gives an unknown vote without saying anything about who it is.
    """
    known = sorted(((n, c) for n, c in st.votes.items() if n != UNKNOWN), key=lambda kv: (-kv[1], kv[0]))
    if known:
        name, count = known[0]
        runner_up = known[1][1] if len(known) > 1 else 0
        if count >= min_votes and count > runner_up:
            return TrackIdentity(name, count, st.attempts, st.best_distance.get(name))
    best_unknown = st.best_distance.get(UNKNOWN)
    return TrackIdentity(None, 0, st.attempts, best_unknown)


def segment_identity(seg: Segment) -> TrackIdentity:
    if seg.end_reason is not None:  # closed: its marks are summarised
        return TrackIdentity(seg.identity, seg.votes, seg.attempts, seg.best_distance)
    st = tally(seg.marks)
    if seg.identity is not None:
        return TrackIdentity(seg.identity, st.votes[seg.identity], st.attempts, st.best_distance.get(seg.identity))
    return TrackIdentity(None, 0, st.attempts, st.best_distance.get(UNKNOWN))


# -- the policy ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FaceSeen:
    """What a face search found on a track, as the policy needs it."""

    label: str
    """The matched identity, or ``UNKNOWN``."""
    distance: float
    side: float
    """The face box's shorter side, in pixels."""
    score: float
    sharpness: float | None
    area: float
    vector: np.ndarray | None
    """The embedding (not copied: the policy copies the one it keeps)."""
    crop: Callable[[], bytes]
    """Makes the face's small JPEG: called only when the face becomes a segment's best."""


def _size_jump(a: tuple[float, float, float, float], b: tuple[float, float, float, float], ratio: float) -> bool:
    h0, h1 = a[3] - a[1], b[3] - b[1]
    return h0 > 0 and h1 > 0 and max(h0 / h1, h1 / h0) > ratio


class SegmentPolicy:
    """Face votes per identity segment of each track (the tracks' state is the caller's, passed in).

    An unsettled segment (no name, not a confident stranger, attempts left) is due a face search at
    most every ``every_n_frames`` frames, up to ``max_attempts`` faces; ``min_votes`` agreeing faces
    name it. A settled segment is due again at ``segments.verify_every_s`` of track time (at most
    ``segments.verify_max`` times), at once after it overlapped another person, and at the normal
    rate while faces disagree. With ``segments.enabled`` false this is the old per-track policy.
    """

    def __init__(self, config: RecognitionConfig, frame_stride: int = 1, threshold: float | None = None) -> None:
        self.config = config
        self.seg = config.segments
        self._min_gap = config.every_n_frames * frame_stride
        self._max_searches = config.max_attempts * 4
        thr = threshold if threshold is not None else config.embedder.cosine_threshold
        self._far = thr * self.seg.far_factor

    # -- every frame: sightings, cuts, overlaps ---------------------------------------------------

    @property
    def needs_pixels(self) -> bool:
        """Whether ``observe`` wants the frame's pixels (the appearance cue)."""
        return self.seg.enabled and self.seg.cut_appearance > 0

    def observe(self, tracks: dict[int, TrackState], tracked: TrackedFrame,
                image: np.ndarray | Callable[[], np.ndarray] | None = None) -> None:
        """Extend each person's segment with this frame, or open a new one when a cheap cue says
        the track changed hands; note overlaps with other persons. ``image`` (or a loader of it) is
        only read for the appearance cue, and only when someone in the frame overlaps nobody."""
        frame = tracked.frame
        seq, ts = frame.seq, frame.ts
        persons = tracked.persons
        overlapping = [False] * len(persons)
        if len(persons) > 1:
            iou = box_iou_matrix(np.asarray([p.box for p in persons], dtype=np.float64))
            overlapping = [bool(v) for v in (iou.max(axis=1) >= self.seg.overlap_iou)]
        on = self.seg.enabled
        pixels: np.ndarray | None = None
        if image is not None and self.needs_pixels and not all(overlapping):
            pixels = image() if callable(image) else image
        for p, over in zip(persons, overlapping, strict=True):
            look = torso_histogram(pixels, p.box) if pixels is not None and not over else None
            st = tracks.get(p.track_id)
            if st is None:
                tracks[p.track_id] = TrackState([Segment(0, seq, ts, seq, ts)], p.box, seq, ts, over, look)
                continue
            cur = st.current
            reason = None
            if on and self.seg.cut_gap_s > 0 and ts - st.ts > self.seg.cut_gap_s + 1e-9:
                reason = END_GAP
            elif on and self.seg.cut_size_ratio > 0 and _size_jump(st.box, p.box, self.seg.cut_size_ratio):
                reason = END_JUMP
            elif (look is not None and st.look is not None and not st.overlapping
                  and appearance_distance(st.look, look) > self.seg.cut_appearance):
                reason = END_APPEARANCE
            if look is not None:
                st.look = look if reason is not None or st.look is None else 0.7 * st.look + 0.3 * look
            if reason is not None:
                close(cur, reason)
                st.segments.append(Segment(cur.index + 1, seq, ts, seq, ts))
                st.overlapping = over
            else:
                if cur.marks and cur.marks[-1].at.next_seq is None:
                    cur.marks[-1].at.next_seq, cur.marks[-1].at.next_ts = seq, ts
                if on and over and not st.overlapping:
                    cur.overlap_start = Boundary(cur.last_seq, cur.last_ts, cur.frames, seq, ts)
                    cur.overlap_end = None
                elif on and st.overlapping and not over and cur.overlap_start is not None:
                    cur.overlap_end = Boundary(cur.last_seq, cur.last_ts, cur.frames, seq, ts)
                cur.last_seq, cur.last_ts = seq, ts
                cur.frames += 1
                st.overlapping = over
            st.box, st.seq, st.ts = p.box, seq, ts

    # -- which segments get a face search -------------------------------------------------------

    def _exhausted(self, seg: Segment) -> bool:
        return len(seg.marks) >= self.config.max_attempts or seg.searches >= self._max_searches

    @staticmethod
    def decided(seg: Segment) -> bool:
        """The segment has a name, or is a confident stranger."""
        return seg.identity is not None or seg.stranger

    def _streak(self, seg: Segment) -> int:
        """Clear faces at the end of the segment that disagree with its name (or its strangeness)."""
        n = 0
        for m in reversed(seg.marks):
            if seg.identity is not None:
                if m.label == seg.identity:
                    break
                if m.clear and (m.label != UNKNOWN or m.distance > self._far):
                    n += 1
            elif seg.stranger:
                if m.label == UNKNOWN:
                    break
                if m.clear:
                    n += 1
        return n

    def due(self, st: TrackState, seq: int, ts: float) -> bool:
        """Whether the track's current segment is due a face search at this frame."""
        seg = st.current
        if seg.last_search_seq is not None and seq - seg.last_search_seq < self._min_gap:
            return False
        if not self.decided(seg):
            return not self._exhausted(seg)  # an undecided segment out of attempts stays unknown
        if not self.seg.enabled:
            return False
        if seg.checks >= self.seg.verify_max or st.overlapping:
            return False
        if self._streak(seg) > 0:
            return True
        if seg.overlap_end is not None and (not seg.marks or seg.marks[-1].at.seq < seg.overlap_end.seq):
            return True  # it overlapped someone since its last face: a swap may have happened
        last = seg.last_search_ts if seg.last_search_ts is not None else seg.first_ts
        return ts - last >= self.seg.verify_every_s - 1e-9

    # -- a face search's result ------------------------------------------------------------------

    def searched(self, st: TrackState, seq: int, ts: float, face: FaceSeen | None) -> None:
        """A face search on the track at this frame (``face`` None: no face found): the face votes, and the
        segment is named, verified or cut."""
        seg = st.current
        if self.decided(seg):
            seg.checks += 1
        seg.searches += 1
        seg.last_search_seq, seg.last_search_ts = seq, ts
        if face is None:
            return
        clear = (face.side >= self.seg.clear_face_px and face.score >= self.seg.clear_face_score
                 and not st.overlapping
                 and (face.sharpness is None or face.sharpness >= self.seg.clear_sharpness))
        seg.marks.append(FaceMark(Boundary(seq, ts, seg.frames), face.label, face.distance, clear))
        if face.vector is not None:
            disagrees = seg.identity is not None and face.label != seg.identity
            if not disagrees and seg.identity is not None:
                seg.best, seg.pending = larger(seg.best, seg.pending), None
            slot = seg.pending if disagrees else seg.best
            if slot is None or face.area > slot.area:  # a new best face: only then is a crop made
                best = BestFace(seq, ts, face.area, face.vector.copy(), face.crop())  # only a kept face is copied
                if disagrees:
                    seg.pending = best
                else:
                    seg.best = best
        self._update(st, seq, ts)

    def _update(self, st: TrackState, seq: int, ts: float) -> None:
        """Decide, verify or cut the current segment after a new face."""
        seg = st.current
        if not self.seg.enabled:
            if not self.decided(seg):
                self._decide(seg, seq, ts)
            return
        if seg.identity is not None:
            streak = self._streak(seg)
            others = sum(1 for m in seg.marks[len(seg.marks) - streak:] if m.label != UNKNOWN) if streak else 0
            if streak and (others >= self.seg.other_identity_faces or streak >= self.seg.far_faces):
                agree = [m for m in seg.marks if m.label == seg.identity]
                if self._cut(st, agree[-1] if agree else None):
                    self._decide(st.current, seq, ts)
            return
        if seg.stranger:
            if self._streak(seg) >= max(self.config.min_votes, self.seg.other_identity_faces):
                agree = [m for m in seg.marks if m.label == UNKNOWN]
                if self._cut(st, agree[-1] if agree else None):
                    self._decide(st.current, seq, ts)
            return
        name = self._decide(seg, seq, ts)
        if name is not None:
            # Faces of someone else before the first face of the name: the name starts after them.
            first = next(i for i, m in enumerate(seg.marks) if m.label == name)
            before = [m for m in seg.marks[:first] if m.clear and (
                m.label not in (UNKNOWN, name) or m.distance > self._far)]
            if before:
                seg.identity, seg.named_seq, seg.named_ts = None, None, None
                if self._cut(st, before[-1]):
                    self._decide(st.current, seq, ts)
                else:
                    self._decide(seg, seq, ts)

    def _decide(self, seg: Segment, seq: int, ts: float) -> str | None:
        ident = decide(tally(seg.marks), self.config.min_votes)
        if ident.identity is not None:
            seg.identity, seg.named_seq, seg.named_ts = ident.identity, seq, ts
            return ident.identity
        stop = self.config.unknown_votes_to_stop
        unknown = sum(1 for m in seg.marks if m.label == UNKNOWN)
        if stop > 0 and unknown >= stop and unknown == len(seg.marks):
            seg.stranger = True
        return None

    def _cut(self, st: TrackState, last_good: FaceMark | None) -> bool:
        """End the current segment after ``last_good`` (the last face that agreed with it), or at the
        overlap with another person that came after it; the frames of the overlap itself become a
        segment of their own (nobody can say whose they are)."""
        seg = st.current
        after = last_good.at.seq if last_good is not None else seg.first_seq - 1
        o_start, o_end = seg.overlap_start, seg.overlap_end
        if o_start is not None and o_start.seq >= after and o_start.frames > 0:
            right = split(seg, o_start, END_FACE)
            st.segments.append(right)
            if o_end is not None and o_end.frames > 0 and o_end.seq < right.last_seq:
                tail = split(right, o_end, END_OVERLAP)
                st.segments.append(tail)
            return True
        if last_good is None or last_good.at.next_seq is None:
            return False  # nothing to keep, or nothing after it yet
        st.segments.append(split(seg, last_good.at, END_FACE))
        return True
