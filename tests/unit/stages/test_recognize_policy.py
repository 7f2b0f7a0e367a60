"""Open-set matching and the per-track recognition policy (no models needed here)."""

from __future__ import annotations

import numpy as np

from genesis.config import RecognitionConfig
from genesis.domain import UNKNOWN, Face, FaceMatch, FrameRef, TrackedFrame, TrackedPerson
from genesis.stages.recognize import Gallery, TrackRecognizer, upper_crop_box
from genesis.stages.segments import TrackVotes, decide


def unit(*v: float) -> np.ndarray:
    a = np.array(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def gallery(threshold: float = 0.4, margin: float = 0.0) -> Gallery:
    names = ["ana", "ana", "bo"]
    m = np.stack([unit(1, 0, 0), unit(1, 0.1, 0), unit(0, 1, 0)])
    return Gallery.build("SFace", names, m, threshold, margin)


def test_match_nearest_identity_within_threshold() -> None:
    m = gallery().match(unit(1, 0.05, 0.1))
    assert m.identity == "ana" and m.distance < 0.05


def test_stranger_stays_unknown() -> None:
    m = gallery().match(unit(0, 0, 1))
    assert m.identity is None and m.distance > 0.9


def test_margin_rule_refuses_ambiguous_faces() -> None:
    ambiguous = unit(1, 1, 0)
    assert gallery(threshold=0.5).match(ambiguous).identity is not None
    assert gallery(threshold=0.5, margin=0.1).match(ambiguous).identity is None


def test_empty_gallery_answers_unknown() -> None:
    g = Gallery.build("SFace", [], np.zeros((0, 0), np.float32), 0.5, 0.0)
    assert g.match(unit(1, 0, 0)).identity is None


def test_decide_needs_min_votes_and_a_clear_winner() -> None:
    st = TrackVotes(attempts=3)
    st.votes.update({"ana": 1, UNKNOWN: 2})
    assert decide(st, 2).identity is None
    st.votes["ana"] += 1
    assert decide(st, 2).identity == "ana"
    st.votes["bo"] += 2
    assert decide(st, 2).identity is None  # a tie between two names is no answer


def _frame(seq: int, *persons: TrackedPerson) -> TrackedFrame:
    return TrackedFrame(FrameRef("c", seq, seq / 10, "k", 640, 480), persons)


def test_policy_spaces_attempts_and_stops_when_decided() -> None:
    cfg = RecognitionConfig(every_n_frames=3, max_attempts=4, min_votes=2, min_person_height_px=50)
    rec = TrackRecognizer(cfg)
    tall = TrackedPerson(1, (0, 0, 50, 200), 0.9)
    short = TrackedPerson(2, (100, 0, 150, 40), 0.9)
    face = Face((10, 10, 40, 40), ((15, 20), (35, 20), (25, 28), (18, 35), (32, 35)), 0.9)
    chosen_at = []
    for seq in range(12):
        f = _frame(seq, tall, short)
        for p in rec.select(f):
            assert p.track_id == 1  # the short box never gets a face search
            chosen_at.append(seq)
            rec.record(f, p, face, FaceMatch("ana", 0.2))
    assert chosen_at == [0, 3]  # every 3 frames, and nothing once two votes decided it
    assert rec.identity(1).identity == "ana" and rec.identity(1).votes == 2


def test_policy_stops_early_on_a_confident_stranger() -> None:
    cfg = RecognitionConfig(every_n_frames=1, max_attempts=6, min_votes=2, unknown_votes_to_stop=3)
    rec = TrackRecognizer(cfg)
    p = TrackedPerson(1, (0, 0, 50, 200), 0.9)
    face = Face((10, 10, 40, 40), ((15, 20), (35, 20), (25, 28), (18, 35), (32, 35)), 0.9)
    n = 0
    for seq in range(50):
        f = _frame(seq, p)
        for q in rec.select(f):
            n += 1
            rec.record(f, q, face, FaceMatch(None, 0.9) if n != 2 else FaceMatch("ana", 0.3))
    # one face matched "ana" once: not a confident stranger, so it uses every attempt
    assert n == 6 and rec.identity(1).identity is None


def test_policy_bounds_attempts_for_strangers() -> None:
    cfg = RecognitionConfig(every_n_frames=1, max_attempts=3, min_votes=2, unknown_votes_to_stop=0)
    rec = TrackRecognizer(cfg)
    p = TrackedPerson(1, (0, 0, 50, 200), 0.9)
    face = Face((10, 10, 40, 40), ((15, 20), (35, 20), (25, 28), (18, 35), (32, 35)), 0.9)
    n = 0
    for seq in range(50):
        f = _frame(seq, p)
        for q in rec.select(f):
            n += 1
            rec.record(f, q, face, FaceMatch(None, 0.9))
    assert n == 3 and rec.identity(1).identity is None


def test_upper_crop_stays_in_the_image() -> None:
    assert upper_crop_box((10, 20, 110, 220), 0.5, 100, 100) == (0, 10, 100, 100)
    # a close-up (wider than tall): the whole box
    assert upper_crop_box((100, 100, 400, 300), 0.5, 640, 480) == (70, 90, 430, 300)
    x1, y1, x2, y2 = upper_crop_box((200, 100, 300, 500), 0.5, 640, 480)
    assert (x1, y1, x2, y2) == (190, 80, 310, 300)


def test_stranger_stop_after_unknown_votes() -> None:
    cfg = RecognitionConfig(every_n_frames=1, max_attempts=6, min_votes=2, unknown_votes_to_stop=3)
    rec = TrackRecognizer(cfg)
    p = TrackedPerson(1, (0, 0, 50, 200), 0.9)
    face = Face((10, 10, 40, 40), ((15, 20), (35, 20), (25, 28), (18, 35), (32, 35)), 0.9)
    n = 0
    for seq in range(20):
        f = _frame(seq, p)
        for q in rec.select(f):
            n += 1
            rec.record(f, q, face, FaceMatch(None, 0.9))
    assert n == 3 and rec.decided(1) and rec.identity(1).identity is None
