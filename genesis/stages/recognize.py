"""Recognize: face identity per track, not per frame.

Only tracks without a confident identity are looked at, at most once every N frames, with
a bounded number of face searches and embeddings per track; each embedding votes, and the
track's identity is the one with enough votes. This is where a naive
"detect + embed every face in every frame" loop spends its CPU, and where this one doesn't.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import cv2
import numpy as np

from genesis.backends.faces import Embedder, FaceDetector
from genesis.config import RecognitionConfig
from genesis.domain import UNKNOWN, Face, FaceMatch, RecognitionAttempt, TrackedFrame, TrackedPerson
from genesis.domain.codec import SavedState
from genesis.stages.segments import (
    END_APPEARANCE,
    END_FACE,
    END_GAP,
    END_JUMP,
    END_OVERLAP,
    BestFace,
    Boundary,
    FaceMark,
    Segment,
    TrackState,
    TrackVotes,
    appearance_distance,
    box_iou_matrix,
    close,
    larger,
    split,
    tally,
    torso_histogram,
)


@dataclass(frozen=True, slots=True)
class Gallery:
    """Enrolled embeddings of one model: exact cosine search, open-set (unknown below threshold).

    Rows are grouped by identity (sorted by name) and L2-normalised, so one matrix-vector product
    gives every similarity and ``np.maximum.reduceat`` the best per identity. ``negatives`` are faces
    an operator said are *not* a given identity: a face within ``negative_margin`` (cosine
    distance) of one of them is never matched to that identity.
    """

    model: str
    names: tuple[str, ...]
    matrix: np.ndarray
    threshold: float
    margin: float = 0.0
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    identity_names: tuple[str, ...] = ()
    negatives: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    negative_owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    negative_margin: float = 0.0

    @classmethod
    def build(
        cls, model: str, names: list[str], matrix: np.ndarray, threshold: float, margin: float,
        negatives: tuple[list[str], np.ndarray] | None = None, negative_margin: float | None = None,
    ) -> Gallery:
        m = _unit_rows(matrix)
        order = sorted(range(len(names)), key=lambda i: names[i])  # stable: enrollment order within a name
        if order != list(range(len(names))):
            m = m[order]
            names = [names[i] for i in order]
        starts_list = [i for i in range(len(names)) if i == 0 or names[i] != names[i - 1]]
        ids = [names[i] for i in starts_list]
        starts = np.asarray(starts_list, dtype=np.int64)
        neg = np.zeros((0, m.shape[1] if m.ndim == 2 else 0), dtype=np.float32)
        owner = np.zeros(0, dtype=np.int64)
        if negatives is not None and negatives[0]:
            index = {n: i for i, n in enumerate(ids)}
            keep = [i for i, n in enumerate(negatives[0]) if n in index]
            if keep:
                neg = _unit_rows(np.asarray(negatives[1])[keep])
                owner = np.asarray([index[negatives[0][i]] for i in keep], dtype=np.int64)
        return cls(
            model=model, names=tuple(names), matrix=m, threshold=threshold, margin=margin, starts=starts,
            identity_names=tuple(ids), negatives=neg, negative_owner=owner,
            negative_margin=negative_margin if negative_margin is not None else threshold / 2,
        )

    @property
    def identities(self) -> list[str]:
        return list(self.identity_names)

    def identity_distances(self, vector: np.ndarray) -> np.ndarray:
        """Cosine distance from ``vector`` to the nearest embedding of each identity (``identity_names``
        order); an identity excluded by a negative gets distance 2 (never a match)."""
        v = np.asarray(vector, dtype=np.float32)
        sims = self.matrix @ v
        best = np.maximum.reduceat(sims, self.starts) if sims.size else sims
        if self.negative_owner.size:
            neg_sims = self.negatives @ v
            blocked = self.negative_owner[neg_sims >= 1.0 - self.negative_margin]
            if blocked.size:
                best = best.copy()
                best[blocked] = -1.0
        out: np.ndarray = 1.0 - best
        return out

    def top_k(self, vector: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` nearest identities with their distances, nearest first (ties by name)."""
        if not self.names:
            return []
        d = self.identity_distances(vector)
        k = min(k, d.size)
        part = np.argpartition(d, k - 1)[:k] if k < d.size else np.arange(d.size)
        ranked = sorted(part.tolist(), key=lambda i: (round(float(d[i]), 6), i))
        return [(self.identity_names[i], round(float(d[i]), 6)) for i in ranked]

    def match(self, vector: np.ndarray) -> FaceMatch:
        if not self.names:
            return FaceMatch(identity=None, distance=1.0)
        ranked = self.top_k(vector, 2)
        name, distance = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else None
        if distance >= 1.999999:  # every identity excluded by a negative
            return FaceMatch(identity=None, distance=distance, second_distance=second)
        if distance > self.threshold:
            return FaceMatch(identity=None, distance=distance, second_distance=second)
        if second is not None and second - distance < self.margin:
            return FaceMatch(identity=None, distance=distance, second_distance=second)
        return FaceMatch(identity=name, distance=distance, second_distance=second)


def check_same_model(gallery: Gallery, embedder: Embedder) -> None:
    """Embeddings of different models are never compared (even when their sizes agree, as SFace's and Dlib's)."""
    if gallery.names and gallery.model != embedder.model_name:
        raise ValueError(f"the gallery holds {gallery.model} embeddings, the embedder is {embedder.model_name}")


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float32)
    if m.size:
        m = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(m, dtype=np.float32)


# A box less than this many times taller than wide is not a whole standing body (a close-up, a
# person cut by the frame edge, someone seated): the face can be anywhere in it.
FULL_BODY_ASPECT = 1.6


def upper_crop_box(box: tuple[float, float, float, float], fraction: float, width: int, height: int) -> tuple[
        int, int, int, int]:
    """Where to look for the face of a person box.

    For a whole body, the top ``fraction`` of the box; for a box that is not much taller than
    wide, all of it. A little wider than the box either way (heads stick out of tight boxes).
    """
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    if bh < FULL_BODY_ASPECT * bw:
        fraction = 1.0
    pad = 0.1 * bw
    cx1 = int(max(0, np.floor(x1 - pad)))
    cx2 = int(min(width, np.ceil(x2 + pad)))
    cy1 = int(max(0, np.floor(y1 - 0.05 * bh)))
    cy2 = int(min(height, np.ceil(y1 + fraction * bh)))
    return cx1, cy1, cx2, cy2


def find_face(image: np.ndarray, person: TrackedPerson, face_detector: FaceDetector, fraction: float) -> Face | None:
    """The largest face in the upper part of a person box, in frame coordinates."""
    h, w = image.shape[:2]
    cx1, cy1, cx2, cy2 = upper_crop_box(person.box, fraction, w, h)
    if cx2 - cx1 < 8 or cy2 - cy1 < 8:
        return None
    faces = face_detector.detect(image[cy1:cy2, cx1:cx2])
    if not faces:
        return None
    f = faces[0]
    return Face(
        box=(f.box[0] + cx1, f.box[1] + cy1, f.box[2] + cx1, f.box[3] + cy1),
        landmarks=tuple((x + cx1, y + cy1) for x, y in f.landmarks),
        score=f.score,
    )


FACE_CROP_PX = 160
"""Longest side of a kept face crop (the dashboard shows faces at about 80-120 px)."""


def face_crop_jpeg(image: np.ndarray, box: tuple[float, float, float, float], size: int = FACE_CROP_PX) -> bytes:
    """A loose crop of a face (the box grown by a quarter each way), at most ``size`` px, as JPEG."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    gx, gy = 0.25 * (x2 - x1), 0.25 * (y2 - y1)
    cx1, cy1 = max(0, int(x1 - gx)), max(0, int(y1 - gy))
    cx2, cy2 = min(w, int(np.ceil(x2 + gx))), min(h, int(np.ceil(y2 + gy)))
    if cx2 - cx1 < 2 or cy2 - cy1 < 2:
        return b""
    crop = image[cy1:cy2, cx1:cx2]
    scale = size / max(crop.shape[:2])
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else b""


@dataclass(frozen=True, slots=True)
class TrackIdentity:
    identity: str | None
    votes: int
    attempts: int
    best_distance: float | None


@dataclass(slots=True)
class RecognizerState:
    """Everything the recognition policy remembers about one camera's tracks (plain data)."""

    tracks: dict[int, TrackState] = field(default_factory=dict)


def face_sharpness(image: np.ndarray, face: Face) -> float:
    """Variance of the Laplacian of the face, grey, resized to 112 x 112 (as the enrollment gate)."""
    x1, y1, x2, y2 = (round(v) for v in face.box)
    crop = image[max(0, y1): max(y1 + 1, y2), max(0, x1): max(x1 + 1, x2)]
    if crop.size == 0:
        return 0.0
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    grey = cv2.resize(grey, (112, 112), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _size_jump(a: tuple[float, float, float, float], b: tuple[float, float, float, float], ratio: float) -> bool:
    h0, h1 = a[3] - a[1], b[3] - b[1]
    return h0 > 0 and h1 > 0 and max(h0 / h1, h1 / h0) > ratio


class TrackRecognizer(SavedState):
    """Per-camera recognition policy: face votes per identity segment of each track.

    An unsettled segment (no name, not a confident stranger, attempts left) gets a face search at
    most every ``every_n_frames`` frames, up to ``max_attempts`` faces; ``min_votes`` agreeing faces
    name it. A settled segment is checked again at ``segments.verify_every_s`` of track time (at most
    ``segments.verify_max`` times), at once after it overlapped another person, and at the normal
    rate while faces disagree. With ``segments.enabled`` false this is the old per-track policy.

    Its state is saved by the annotations below (``SavedState``): annotate every new attribute.
    """

    STATE_REBUILT: ClassVar[frozenset[str]] = frozenset({"config", "seg", "_min_gap", "_max_searches", "_far"})
    state: RecognizerState

    def __init__(self, config: RecognitionConfig, frame_stride: int = 1, threshold: float | None = None) -> None:
        self.config = config
        self.seg = config.segments
        self._min_gap = config.every_n_frames * frame_stride
        self._max_searches = config.max_attempts * 4
        thr = threshold if threshold is not None else config.embedder.cosine_threshold
        self._far = thr * self.seg.far_factor
        self.state = RecognizerState()

    @property
    def _tracks(self) -> dict[int, TrackState]:
        return self.state.tracks

    # -- every frame: sightings, cuts, overlaps ---------------------------------------------------

    @property
    def needs_pixels(self) -> bool:
        """Whether ``observe`` wants the frame's pixels (the appearance cue)."""
        return self.seg.enabled and self.seg.cut_appearance > 0

    def observe(self, tracked: TrackedFrame, image: np.ndarray | Callable[[], np.ndarray] | None = None) -> None:
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
            st = self._tracks.get(p.track_id)
            if st is None:
                self._tracks[p.track_id] = TrackState([Segment(0, seq, ts, seq, ts)], p.box, seq, ts, over, look)
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

    # -- which persons get a face search ----------------------------------------------------------

    def _exhausted(self, seg: Segment) -> bool:
        return len(seg.marks) >= self.config.max_attempts or seg.searches >= self._max_searches

    def decided(self, track_id: int) -> bool:
        """The current segment has a name, or is a confident stranger."""
        st = self._tracks.get(track_id)
        return st is not None and (st.current.identity is not None or st.current.stranger)

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

    def _due(self, st: TrackState, seq: int, ts: float) -> bool:
        seg = st.current
        if seg.last_search_seq is not None and seq - seg.last_search_seq < self._min_gap:
            return False
        decided = seg.identity is not None or seg.stranger
        if not decided:
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

    def select(self, tracked: TrackedFrame) -> list[TrackedPerson]:
        """The persons of this frame that get a face search now (``observe`` first)."""
        chosen: list[TrackedPerson] = []
        seq, ts = tracked.frame.seq, tracked.frame.ts
        for p in tracked.persons:
            if p.box[3] - p.box[1] < self.config.min_person_height_px:
                continue
            st = self._tracks.get(p.track_id)
            if st is None:
                self.observe(TrackedFrame(tracked.frame, (p,)))
                st = self._tracks[p.track_id]
            if self._due(st, seq, ts):
                chosen.append(p)
        return chosen

    # -- a face search's result ------------------------------------------------------------------

    def record(
        self, tracked: TrackedFrame, person: TrackedPerson, face: Face | None, match: FaceMatch | None,
        vector: np.ndarray | None = None, sharpness: float | None = None, image: np.ndarray | None = None,
    ) -> RecognitionAttempt | None:
        """A face search's result. ``image`` (the frame) only serves the crop of a new best face."""
        st = self._tracks.get(person.track_id)
        if st is None:
            self.observe(TrackedFrame(tracked.frame, (person,)))
            st = self._tracks[person.track_id]
        seg = st.current
        seq, ts = tracked.frame.seq, tracked.frame.ts
        if seg.identity is not None or seg.stranger:
            seg.checks += 1
        seg.searches += 1
        seg.last_search_seq, seg.last_search_ts = seq, ts
        if face is None or match is None:
            return None
        label = match.identity or UNKNOWN
        side = min(face.box[2] - face.box[0], face.box[3] - face.box[1])
        clear = (side >= self.seg.clear_face_px and face.score >= self.seg.clear_face_score
                 and not st.overlapping
                 and (sharpness is None or sharpness >= self.seg.clear_sharpness))
        seg.marks.append(FaceMark(Boundary(seq, ts, seg.frames), label, float(match.distance), clear))
        if vector is not None:
            disagrees = seg.identity is not None and label != seg.identity
            if not disagrees and seg.identity is not None:
                seg.best, seg.pending = larger(seg.best, seg.pending), None
            slot = seg.pending if disagrees else seg.best
            if slot is None or face.area > slot.area:  # a new best face: only then is a crop made
                crop = face_crop_jpeg(image, face.box) if image is not None else b""
                face_rec = BestFace(seq, ts, face.area, np.asarray(vector, dtype=np.float32).copy(), crop)
                if disagrees:
                    seg.pending = face_rec
                else:
                    seg.best = face_rec
        self._update(st, seq, ts)
        return RecognitionAttempt(
            camera_id=tracked.frame.camera_id,
            track_id=person.track_id,
            seq=seq,
            ts=ts,
            face_box=tuple(round(v, 2) for v in face.box),  # type: ignore[arg-type]
            face_score=round(face.score, 4),
            identity=match.identity,
            distance=match.distance,
        )

    def _update(self, st: TrackState, seq: int, ts: float) -> None:
        """Decide, verify or cut the current segment after a new face."""
        seg = st.current
        if not self.seg.enabled:
            if seg.identity is None and not seg.stranger:
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

    # -- reading the decisions ---------------------------------------------------------------------

    def identity(self, track_id: int) -> TrackIdentity:
        """The current segment's identity (what a sighting of this track carries now)."""
        st = self._tracks.get(track_id)
        if st is None:
            return TrackIdentity(None, 0, 0, None)
        return segment_identity(st.current)

    def segments(self, track_id: int) -> list[Segment]:
        st = self._tracks.get(track_id)
        return [] if st is None else list(st.segments)

    def track_ids(self) -> list[int]:
        return sorted(self._tracks)

    @staticmethod
    def segment_identity(seg: Segment) -> TrackIdentity:
        return segment_identity(seg)

    def best_face(self, track_id: int, segment: int | None = None) -> BestFace | None:
        st = self._tracks.get(track_id)
        if st is None:
            return None
        seg = st.current if segment is None else st.segments[segment]
        return larger(seg.best, seg.pending)


def segment_identity(seg: Segment) -> TrackIdentity:
    if seg.end_reason is not None:  # closed: its marks are summarised
        return TrackIdentity(seg.identity, seg.votes, seg.attempts, seg.best_distance)
    st = tally(seg.marks)
    if seg.identity is not None:
        return TrackIdentity(seg.identity, st.votes[seg.identity], st.attempts, st.best_distance.get(seg.identity))
    return TrackIdentity(None, 0, st.attempts, st.best_distance.get(UNKNOWN))


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


def recognize_persons(
    image: np.ndarray,
    tracked: TrackedFrame,
    recognizer: TrackRecognizer,
    face_detector: FaceDetector,
    embedder: Embedder,
    gallery: Gallery,
    selected: list[TrackedPerson] | None = None,
) -> list[RecognitionAttempt]:
    """Run the policy on one frame (after ``recognizer.observe``): search faces for the selected
    tracks, embed, match, vote.

    ``selected`` is ``recognizer.select(tracked)`` when the caller has it already."""
    if selected is None:
        selected = recognizer.select(tracked)
    check_same_model(gallery, embedder)
    found: list[tuple[TrackedPerson, Face]] = []
    for person in selected:
        face = find_face(image, person, face_detector, recognizer.config.upper_fraction)
        if face is None:
            recognizer.record(tracked, person, None, None)
        else:
            found.append((person, face))
    attempts: list[RecognitionAttempt] = []
    if found:
        vectors = embedder.embed(image, [f for _, f in found])
        for (person, face), vec in zip(found, vectors, strict=True):
            sharp = face_sharpness(image, face) if recognizer.seg.enabled else None
            attempt = recognizer.record(tracked, person, face, gallery.match(vec), vec, sharp, image)
            if attempt is not None:
                attempts.append(attempt)
    return attempts


def identify_faces(
    image: np.ndarray, face_detector: FaceDetector, embedder: Embedder, gallery: Gallery
) -> list[tuple[Face, FaceMatch]]:
    """Every face of a still image with its match (one result per face, largest first)."""
    check_same_model(gallery, embedder)
    faces = face_detector.detect(image)
    if not faces:
        return []
    vectors = embedder.embed(image, faces)
    return [(f, gallery.match(v)) for f, v in zip(faces, vectors, strict=True)]
