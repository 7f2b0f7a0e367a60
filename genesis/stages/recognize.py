"""Recognize: face identity per track, not per frame.

Only tracks without a confident identity are looked at, at most once every N frames, with
a bounded number of face searches and embeddings per track; each embedding votes, and the
track's identity is the one with enough votes. This is where a naive
"detect + embed every face in every frame" loop spends its CPU, and where this one doesn't.
"""

from __future__ import annotations

import copy
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
    BestFace,
    FaceSeen,
    Segment,
    SegmentPolicy,
    TrackIdentity,
    TrackState,
    decide,
    larger,
    segment_identity,
)

__all__ = ["Gallery", "TrackIdentity", "TrackRecognizer", "decide", "segment_identity"]


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


class TrackRecognizer(SavedState):
    """Per-camera recognition: which tracks get a face search, and what the faces found say.

    The identity segments of the tracks, and every decision about them (when a track changed hands,
    when a segment is due a face search, its name from the votes of its faces, where a cut goes), are
    :class:`genesis.stages.segments.SegmentPolicy`'s; this class feeds it the frames (``observe``) and the
    face searches (``record``), in that one direction, and reads the decisions back. With
    ``segments.enabled`` false the policy is the old per-track one.

    Its state is saved by the annotations below (``SavedState``): annotate every new attribute.
    """

    STATE_REBUILT: ClassVar[frozenset[str]] = frozenset({"config", "seg", "policy"})
    state: RecognizerState

    def __init__(self, config: RecognitionConfig, frame_stride: int = 1, threshold: float | None = None) -> None:
        self.config = config
        self.seg = config.segments
        self.policy = SegmentPolicy(config, frame_stride, threshold)
        self.state = RecognizerState()

    @property
    def _tracks(self) -> dict[int, TrackState]:
        return self.state.tracks

    @property
    def needs_pixels(self) -> bool:
        """Whether ``observe`` wants the frame's pixels (the appearance cue)."""
        return self.policy.needs_pixels

    def observe(self, tracked: TrackedFrame, image: np.ndarray | Callable[[], np.ndarray] | None = None) -> None:
        """Every frame, before the face searches: the sightings extend, cut or open segments
        (:meth:`SegmentPolicy.observe`; ``image``, or a loader of it, only serves the appearance cue)."""
        self.policy.observe(self._tracks, tracked, image)

    def decided(self, track_id: int) -> bool:
        """The current segment has a name, or is a confident stranger."""
        st = self._tracks.get(track_id)
        return st is not None and self.policy.decided(st.current)

    def select(self, tracked: TrackedFrame) -> list[TrackedPerson]:
        """The persons of this frame that get a face search now (``observe`` first): tall enough, and their
        segment is due one."""
        chosen: list[TrackedPerson] = []
        seq, ts = tracked.frame.seq, tracked.frame.ts
        for p in tracked.persons:
            if p.box[3] - p.box[1] < self.config.min_person_height_px:
                continue
            if self.policy.due(self._track(tracked, p), seq, ts):
                chosen.append(p)
        return chosen

    def _track(self, tracked: TrackedFrame, person: TrackedPerson) -> TrackState:
        st = self._tracks.get(person.track_id)
        if st is None:  # not observed yet (a caller that skipped observe): as if it had been
            self.observe(TrackedFrame(tracked.frame, (person,)))
            st = self._tracks[person.track_id]
        return st

    def record(
        self, tracked: TrackedFrame, person: TrackedPerson, face: Face | None, match: FaceMatch | None,
        vector: np.ndarray | None = None, sharpness: float | None = None, image: np.ndarray | None = None,
    ) -> RecognitionAttempt | None:
        """A face search's result, for the policy to decide on. ``image`` (the frame) only serves the crop
        of a new best face."""
        st = self._track(tracked, person)
        seq, ts = tracked.frame.seq, tracked.frame.ts
        if face is None or match is None:
            self.policy.searched(st, seq, ts, None)
            return None
        box = face.box
        seen = FaceSeen(
            label=match.identity or UNKNOWN, distance=float(match.distance),
            side=min(box[2] - box[0], box[3] - box[1]), score=face.score, sharpness=sharpness, area=face.area,
            vector=None if vector is None else np.asarray(vector, dtype=np.float32),
            crop=(lambda: face_crop_jpeg(image, box)) if image is not None else (lambda: b""),
        )
        self.policy.searched(st, seq, ts, seen)
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

    def retire(self, ts: float, after_s: float) -> TrackRecognizer:
        """Take out the tracks last seen more than ``after_s`` before ``ts`` (by track id): nothing changes for
        them any more (the tracker gave them up), and a live camera's run would otherwise keep every track it
        ever saw. Returns them in a recognizer of their own, for their records and faces."""
        gone = sorted(tid for tid, st in self._tracks.items() if ts - st.ts > after_s)
        out = copy.copy(self)  # the same configuration and policy, its own state
        out.state = RecognizerState({tid: self._tracks.pop(tid) for tid in gone})
        return out

    @staticmethod
    def segment_identity(seg: Segment) -> TrackIdentity:
        return segment_identity(seg)

    def best_face(self, track_id: int, segment: int | None = None) -> BestFace | None:
        st = self._tracks.get(track_id)
        if st is None:
            return None
        seg = st.current if segment is None else st.segments[segment]
        return larger(seg.best, seg.pending)


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
