"""Identity segments: cuts, re-verification and what a disagreement is (the policy alone, no models)."""

from __future__ import annotations

import numpy as np
import pytest

from genesis.config import CameraConfig, RecognitionConfig
from genesis.config.alerts import CameraAlertsConfig
from genesis.domain import Face, FaceMatch, FrameOutcome, FrameRef, TrackedFrame, TrackedPerson
from genesis.domain.alerts import AlertKind
from genesis.domain.codec import decode, encode
from genesis.stages.alerts import AlertStage
from genesis.stages.recognize import TrackRecognizer, segment_identity
from genesis.stages.segments import END_APPEARANCE, END_FACE, END_GAP, END_OVERLAP, TrackState

FPS = 5.0
BIG = Face((10, 10, 70, 80), ((20, 30), (50, 30), (35, 45), (25, 60), (45, 60)), 0.95)
SMALL = Face((10, 10, 30, 32), ((15, 18), (25, 18), (20, 24), (16, 28), (24, 28)), 0.95)
SHARP = 200.0


def cfg(stop: int = 3, **segments: object) -> RecognitionConfig:
    return RecognitionConfig(every_n_frames=1, max_attempts=6, min_votes=2, unknown_votes_to_stop=stop,
                             segments={"cut_appearance": 0.0, **segments})  # type: ignore[arg-type]


def frame(seq: int, *persons: TrackedPerson) -> TrackedFrame:
    return TrackedFrame(FrameRef("c", seq, seq / FPS, "k", 640, 360), persons)


def person(tid: int = 1, x: float = 100.0) -> TrackedPerson:
    return TrackedPerson(tid, (x, 50.0, x + 120.0, 250.0), 0.9)


class Feed:
    """Drives a recognizer like CameraState does: observe, select, then a face result per selected
    person from ``faces(seq, track)`` -> (Face, FaceMatch) or None (no face found)."""

    def __init__(self, rec: TrackRecognizer) -> None:
        self.rec = rec
        self.searched: list[tuple[int, int]] = []

    def run(self, seqs: range, persons: object, faces: object, sharp: float = SHARP) -> None:
        for seq in seqs:
            ps = persons(seq)  # type: ignore[operator]
            f = frame(seq, *ps)
            self.rec.observe(f)
            for p in self.rec.select(f):
                self.searched.append((seq, p.track_id))
                got = faces(seq, p.track_id)  # type: ignore[operator]
                if got is None:
                    self.rec.record(f, p, None, None)
                else:
                    self.rec.record(f, p, got[0], got[1], np.ones(4, np.float32), sharp)


def named(rec: TrackRecognizer, tid: int = 1) -> list[tuple[int, int, str | None, str | None]]:
    return [(s.first_seq, s.last_seq, segment_identity(s).identity, s.end_reason) for s in rec.segments(tid)]


def test_a_gap_longer_than_cut_gap_s_starts_a_fresh_unnamed_segment() -> None:
    rec = TrackRecognizer(cfg(cut_gap_s=0.5), threshold=0.593)
    feed = Feed(rec)
    present = [*range(0, 10), *range(13, 23)]  # 3 missing frames: 0.8 s between two sightings at 5 fps
    feed.run(range(23), lambda s: [person()] if s in present else [],
             lambda s, t: (BIG, FaceMatch("ana" if s < 10 else "bo", 0.3)))
    assert named(rec) == [(0, 9, "ana", END_GAP), (13, 22, "bo", None)]
    # one missing frame (0.4 s between sightings) is not a cut
    rec2 = TrackRecognizer(cfg(cut_gap_s=0.5), threshold=0.593)
    Feed(rec2).run(range(12), lambda s: [person()] if s != 5 else [],
                   lambda s, t: (BIG, FaceMatch("ana", 0.3)))
    assert [x[:3] for x in named(rec2)] == [(0, 11, "ana")]


def test_named_segment_is_reverified_at_the_low_rate_and_capped() -> None:
    rec = TrackRecognizer(cfg(verify_every_s=2.0, verify_max=3), threshold=0.593)
    feed = Feed(rec)
    feed.run(range(100), lambda s: [person()], lambda s, t: (BIG, FaceMatch("ana", 0.3)))
    seqs = [s for s, _ in feed.searched]
    assert seqs[:2] == [0, 1]  # two votes name it
    assert seqs[2:] == [11, 21, 31]  # then every 2 s of track time (10 frames), at most 3 times
    assert named(rec) == [(0, 99, "ana", None)]


def test_a_face_of_another_identity_ends_the_segment_at_the_last_agreeing_face() -> None:
    rec = TrackRecognizer(cfg(verify_every_s=2.0), threshold=0.593)
    feed = Feed(rec)
    # ana until frame 14, then the tracker hands the track to bo (no gap, no overlap)
    feed.run(range(40), lambda s: [person()], lambda s, t: (BIG, FaceMatch("ana" if s < 15 else "bo", 0.3)))
    segs = named(rec)
    assert segs[0] == (0, 11, "ana", END_FACE)  # the last face that agreed was at 11 (0, 1, 11: checks)
    assert segs[1][0] == 12 and segs[1][2] == "bo"
    assert len(segs) == 2


def test_faces_far_from_the_name_end_it_only_when_clear_and_in_a_row() -> None:
    def faces(s: int, t: int) -> tuple[Face, FaceMatch]:
        return (BIG, FaceMatch("ana", 0.3)) if s < 15 else (BIG, FaceMatch(None, 0.95))

    rec = TrackRecognizer(cfg(verify_every_s=2.0, far_faces=2), threshold=0.593)
    Feed(rec).run(range(40), lambda s: [person()], faces)
    segs = named(rec)
    assert segs[0][2:] == ("ana", END_FACE) and segs[1][2] is None

    # the same faces, too small or blurred, never disagree: the name stays
    for face, sharp in ((SMALL, SHARP), (BIG, 5.0)):
        rec = TrackRecognizer(cfg(verify_every_s=2.0), threshold=0.593)
        Feed(rec).run(range(40), lambda s: [person()],
                      lambda s, t, face=face: (face, FaceMatch("ana", 0.3) if s < 15 else FaceMatch(None, 0.95)),
                      sharp=sharp)
        assert named(rec) == [(0, 39, "ana", None)]

    # a face just beyond the threshold (turned a little) is no disagreement either
    rec = TrackRecognizer(cfg(verify_every_s=2.0), threshold=0.593)
    Feed(rec).run(range(40), lambda s: [person()],
                  lambda s, t: (BIG, FaceMatch("ana", 0.3)) if s < 15 else (BIG, FaceMatch(None, 0.62)))
    assert named(rec) == [(0, 39, "ana", None)]


def test_a_swap_during_an_overlap_cuts_at_the_overlap_and_the_overlap_is_nobodys() -> None:
    rec = TrackRecognizer(cfg(verify_every_s=2.0), threshold=0.593)
    feed = Feed(rec)

    def persons(s: int) -> list[TrackedPerson]:
        other_x = 100.0 if 20 <= s < 24 else 400.0  # a passer-by covers track 1 from 20 to 23
        return [person(1), person(2, other_x)]

    def faces(s: int, t: int) -> tuple[Face, FaceMatch]:
        if t == 2:
            return BIG, FaceMatch(None, 0.9)
        return BIG, FaceMatch("ana" if s < 20 else "bo", 0.3)  # after the overlap it is bo

    feed.run(range(40), persons, faces)
    segs = named(rec, 1)
    assert segs[0] == (0, 19, "ana", END_FACE)
    assert segs[1] == (20, 23, None, END_OVERLAP)
    assert segs[2][0] == 24 and segs[2][2] == "bo"
    assert (24, 1) in feed.searched  # checked at once when the overlap ended


def test_faces_of_a_stranger_before_the_name_stay_unnamed() -> None:
    rec = TrackRecognizer(cfg(stop=0), threshold=0.593)
    Feed(rec).run(range(12), lambda s: [person()],
                  lambda s, t: (BIG, FaceMatch(None, 0.9)) if s < 2 else (BIG, FaceMatch("ana", 0.3)))
    segs = named(rec)
    assert segs[0] == (0, 1, None, END_FACE)
    assert segs[1][0] == 2 and segs[1][2] == "ana"


def test_a_confident_stranger_is_checked_too_and_a_known_face_after_it_is_named() -> None:
    rec = TrackRecognizer(cfg(verify_every_s=1.0), threshold=0.593)
    Feed(rec).run(range(40), lambda s: [person()],
                  lambda s, t: (BIG, FaceMatch(None, 0.9)) if s < 10 else (BIG, FaceMatch("ana", 0.3)))
    segs = named(rec)
    assert segs[0][2:] == (None, END_FACE)
    assert segs[-1][2] == "ana"


def test_the_old_policy_keeps_the_first_name_for_the_whole_track() -> None:
    rec = TrackRecognizer(cfg(enabled=False), threshold=0.593)
    feed = Feed(rec)
    present = [*range(0, 10), *range(13, 23)]
    feed.run(range(23), lambda s: [person()] if s in present else [],
             lambda s, t: (BIG, FaceMatch("ana" if s < 10 else "bo", 0.3)))
    assert named(rec) == [(0, 22, "ana", None)]
    assert [s for s, _ in feed.searched] == [0, 1]


def test_the_appearance_cue_cuts_when_the_torso_colours_change() -> None:
    rec = TrackRecognizer(cfg(cut_appearance=0.5), threshold=0.593)
    red = np.zeros((360, 640, 3), np.uint8)
    red[:, :] = (0, 0, 200)
    blue = np.zeros((360, 640, 3), np.uint8)
    blue[:, :] = (200, 60, 0)
    for seq in range(12):
        rec.observe(frame(seq, person()), red if seq < 6 else blue)
    assert [(s.first_seq, s.end_reason) for s in rec.segments(1)] == [(0, END_APPEARANCE), (6, None)]
    # a loader is only called when someone overlaps nobody
    calls: list[int] = []

    def load() -> np.ndarray:
        calls.append(1)
        return red

    rec.observe(frame(12, person(1), person(2)), load)  # two persons on the same spot: both overlap
    assert calls == []


def test_segment_state_goes_through_the_json_codec() -> None:
    rec = TrackRecognizer(cfg(), threshold=0.593)
    Feed(rec).run(range(20), lambda s: [person()], lambda s, t: (BIG, FaceMatch("ana", 0.3)))
    st = rec.state.tracks[1]
    back = decode(TrackState, encode(st))
    assert segment_identity(back.current) == segment_identity(st.current)
    assert back.current.frames == st.current.frames


@pytest.mark.parametrize("policy", [True, False])
def test_alerts_follow_the_segments_name(policy: bool) -> None:
    """Watch list on bo: with segments, bo's alert is raised when bo takes over ana's track; with the
    old policy the track stays ana and bo is never reported."""
    rec = TrackRecognizer(cfg(enabled=policy, cut_gap_s=0.5), threshold=0.593)
    camera = CameraConfig(id="c", alerts=CameraAlertsConfig(rules=["watchlist"], watchlist=["bo"]))
    from genesis.config.alerts import AlertsConfig

    stage = AlertStage(AlertsConfig(), camera)
    present = [*range(0, 10), *range(13, 23)]
    raised = []
    for seq in range(23):
        f = frame(seq, person()) if seq in present else frame(seq)
        rec.observe(f)
        for p in rec.select(f):
            rec.record(f, p, BIG, FaceMatch("ana" if seq < 10 else "bo", 0.3), np.ones(4, np.float32), SHARP)
        alerts, _ = stage.update(FrameOutcome(tracked=f), lambda t: rec.identity(t).identity)
        raised += alerts
    watch = [a for a in raised if a.kind == AlertKind.WATCHLIST]
    if policy:
        assert [(a.identity, a.seq) for a in watch] == [("bo", 14)]
    else:
        assert watch == []
