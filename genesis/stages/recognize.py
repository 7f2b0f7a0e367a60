"""Recognize: face identity per track, not per frame.

Only tracks without a confident identity are looked at, at most once every N frames, with
a bounded number of face searches and embeddings per track; each embedding votes, and the
track's identity is the one with enough votes. This is where a naive
"detect + embed every face in every frame" loop spends its CPU, and where this one doesn't.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np

from genesis.backends.faces import Embedder, FaceDetector
from genesis.config import RecognitionConfig
from genesis.domain import UNKNOWN, Face, FaceMatch, RecognitionAttempt, TrackedFrame, TrackedPerson


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
class TrackVotes:
    searches: int = 0
    attempts: int = 0
    last_seq: int | None = None
    votes: Counter[str] = field(default_factory=Counter)
    best_distance: dict[str, float] = field(default_factory=dict)
    best_face: BestFace | None = None
    """The track's best face embedding (largest face seen): kept for search by photo, unknown-face
    clustering and "not this person"."""


@dataclass(frozen=True, slots=True)
class BestFace:
    seq: int
    ts: float
    area: float
    vector: np.ndarray
    crop: bytes = b""
    """A small JPEG of the face (`face_crop_jpeg`) for the dashboard; empty when none was made."""


@dataclass(frozen=True, slots=True)
class TrackIdentity:
    identity: str | None
    votes: int
    attempts: int
    best_distance: float | None


class TrackRecognizer:
    """Per-camera recognition policy and per-track votes (the state of this stage)."""

    def __init__(self, config: RecognitionConfig, frame_stride: int = 1) -> None:
        self.config = config
        self._min_gap = config.every_n_frames * frame_stride
        self._max_searches = config.max_attempts * 4
        self._tracks: dict[int, TrackVotes] = {}

    def _state(self, track_id: int) -> TrackVotes:
        st = self._tracks.get(track_id)
        if st is None:
            st = self._tracks[track_id] = TrackVotes()
        return st

    def decided(self, track_id: int) -> bool:
        """A name is given, or the track is a confident stranger: no more attempts either way."""
        if self.identity(track_id).identity is not None:
            return True
        st = self._tracks.get(track_id)
        stop = self.config.unknown_votes_to_stop
        return (
            st is not None and stop > 0 and st.votes[UNKNOWN] >= stop and sum(st.votes.values()) == st.votes[UNKNOWN]
        )

    def select(self, tracked: TrackedFrame) -> list[TrackedPerson]:
        """The persons of this frame that get a face search now."""
        chosen: list[TrackedPerson] = []
        seq = tracked.frame.seq
        for p in tracked.persons:
            st = self._state(p.track_id)
            if st.attempts >= self.config.max_attempts or st.searches >= self._max_searches:
                continue
            if st.last_seq is not None and seq - st.last_seq < self._min_gap:
                continue
            if p.box[3] - p.box[1] < self.config.min_person_height_px:
                continue
            if self.decided(p.track_id):
                continue
            chosen.append(p)
        return chosen

    def record(
        self, tracked: TrackedFrame, person: TrackedPerson, face: Face | None, match: FaceMatch | None,
        vector: np.ndarray | None = None, image: np.ndarray | None = None,
    ) -> RecognitionAttempt | None:
        st = self._state(person.track_id)
        st.searches += 1
        st.last_seq = tracked.frame.seq
        if face is None or match is None:
            return None
        st.attempts += 1
        if vector is not None and (st.best_face is None or face.area > st.best_face.area):
            crop = face_crop_jpeg(image, face.box) if image is not None else b""
            st.best_face = BestFace(tracked.frame.seq, tracked.frame.ts, face.area,
                                    np.asarray(vector, dtype=np.float32).copy(), crop)
        label = match.identity or UNKNOWN
        st.votes[label] += 1
        st.best_distance[label] = min(st.best_distance.get(label, 2.0), match.distance)
        return RecognitionAttempt(
            camera_id=tracked.frame.camera_id,
            track_id=person.track_id,
            seq=tracked.frame.seq,
            ts=tracked.frame.ts,
            face_box=tuple(round(v, 2) for v in face.box),  # type: ignore[arg-type]
            face_score=round(face.score, 4),
            identity=match.identity,
            distance=match.distance,
        )

    def identity(self, track_id: int) -> TrackIdentity:
        st = self._tracks.get(track_id)
        if st is None:
            return TrackIdentity(None, 0, 0, None)
        return decide(st, self.config.min_votes)

    def track_ids(self) -> list[int]:
        return sorted(self._tracks)

    def best_face(self, track_id: int) -> BestFace | None:
        st = self._tracks.get(track_id)
        return None if st is None else st.best_face


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
    """Run the policy on one frame: search faces for the selected tracks, embed, match, vote.

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
            attempt = recognizer.record(tracked, person, face, gallery.match(vec), vec, image)
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
