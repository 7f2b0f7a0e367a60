"""Motion gating: static frames skip detection, tracks live on through them, a forced detection comes
at least every ``force_every_s``, and moving scenes are detected as before."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from genesis.adapters.video import VideoSource
from genesis.backends.detectors import PersonDetector, build_detector
from genesis.config import CameraConfig, DetectorConfig, MotionConfig, Settings
from genesis.domain import Detection, FrameDetections, FrameRef
from genesis.stages.camera import CameraState
from genesis.stages.detect import detect_frame
from genesis.stages.motion import HeldDetections, MotionGate, motion_gate

FPS = 5.0


def _noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    return np.clip(image.astype(np.float32) + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def test_still_noisy_frames_are_static_and_a_full_detection_is_forced() -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (450, 800, 3), dtype=np.uint8)
    base = cv2.GaussianBlur(base, (9, 9), 0)
    gate = MotionGate(MotionConfig(enabled=True, force_every_s=2.0))
    decisions = [gate.check(_noisy(base, rng), i / FPS) for i in range(30)]  # 6 s of a still scene at 5 fps
    detected = [i for i, static in enumerate(decisions) if not static]
    # the first two frames, the settle look 3 frames after the second (the first "moved": nothing to compare it
    # with), then every 2 s exactly
    assert detected == [0, 1, 4, 15, 25], detected  # 14 / 5 - 4 / 5 is a hair under 2.0 in floats
    assert gate.static_frames == 25


@pytest.mark.parametrize("settle_frames", [3, 0])
def test_someone_who_arrives_and_stands_still_is_confirmed_and_looked_at_again(settle_frames: int) -> None:
    """The frame where a person appears is detected for its motion; once the picture is still again, its first
    still frame (two detections in a row make a confirmed track: after a single moving frame only) and the still
    frame ``settle_frames`` after it (a second face attempt: naming takes two votes), then none until the forced
    one. 0 turns both off."""
    frame = np.full((450, 800, 3), 90, dtype=np.uint8)
    arrived = frame.copy()
    cv2.rectangle(arrived, (300, 100), (380, 400), (230, 230, 230), -1)  # a person walked in and stopped
    # window 0: at these 10 fps the window (test below) would count the frame after each movement as moving too
    gate = MotionGate(MotionConfig(enabled=True, force_every_s=60, settle_frames=settle_frames, window_s=0))
    # two still frames of the empty scene, then the person on every frame
    images = [frame, frame] + [arrived] * 28
    detected = [i for i, image in enumerate(images) if not gate.check(image, i / 10)]
    # the first two frames always; the arrival (frame 2); with settling its first still frame (3) and the one 3
    # frames later (6); nothing after
    assert detected == ([0, 1, 2, 3, 6] if settle_frames else [0, 1, 2]), detected
    # moving again owes new looks
    moved = arrived.copy()
    cv2.rectangle(moved, (380, 100), (460, 400), (230, 230, 230), -1)
    more = [gate.check(image, 4.0 + i / 10) is False for i, image in enumerate([moved] * 10)]
    assert [i for i, d in enumerate(more) if d] == ([0, 1, 4] if settle_frames else [0])
    # a walk (moving on several detected frames in a row: whoever walks is confirmed) owes only the settle look
    walk = [arrived.copy() for _ in range(4)]
    for i, image in enumerate(walk):
        cv2.rectangle(image, (100 + 60 * i, 100), (180 + 60 * i, 400), (30, 30, 30), -1)
    after = [gate.check(image, 6.0 + i / 10) is False for i, image in enumerate(walk + [walk[-1]] * 8)]
    assert [i for i, d in enumerate(after) if d] == ([0, 1, 2, 3, 7] if settle_frames else [0, 1, 2, 3])


def test_sensitivity_counts_the_changed_area() -> None:
    frame = np.full((450, 800, 3), 90, dtype=np.uint8)
    for min_changed, expect_static in ((0.0005, False), (0.01, True)):
        gate = MotionGate(MotionConfig(enabled=True, min_changed=min_changed, force_every_s=60))
        assert gate.check(frame, 0.0) is False and gate.check(frame, 0.2) is False  # the first two: always
        moved = frame.copy()
        cv2.rectangle(moved, (400, 200), (440, 260), (250, 250, 250), -1)  # 40x60 px: about 0.3 % of the image
        assert gate.check(moved, 0.4) is expect_static
    # slow movement adds up: compared with the last detected frame, not the previous one
    gate = MotionGate(MotionConfig(enabled=True, min_changed=0.005, force_every_s=60))
    assert gate.check(frame, 0.0) is False and gate.check(frame, 0.1) is False
    results = []
    for step in range(1, 8):
        moved = frame.copy()
        cv2.rectangle(moved, (100, 100), (100 + 6 * step, 180), (250, 250, 250), -1)
        results.append(gate.check(moved, 0.1 + step / FPS))
    assert results[0] is True and False in results  # the first small step is static, the sum is not


def test_static_frames_get_the_confirmed_detections_of_the_last_detected_frame() -> None:
    from genesis.config import TrackerConfig
    from genesis.stages.track import CameraTracker

    tracker = CameraTracker(TrackerConfig(), FPS)
    held = HeldDetections()
    person = Detection((100.0, 50.0, 160.0, 230.0), 0.9)
    noise = Detection((400.0, 300.0, 420.0, 340.0), 0.6)  # a one-frame false detection

    def frame(seq: int, static: bool, dets: tuple[Detection, ...] = ()) -> FrameDetections:
        return FrameDetections(FrameRef("c", seq, seq / FPS, f"k{seq}", 640, 480, static=static), dets)

    for seq in range(3):  # the person is confirmed (2 consecutive frames)
        held.track(frame(seq, False, (person,)), tracker.update)
    out = held.track(frame(3, False, (person, noise)), tracker.update)
    assert [p.track_id for p in out.persons] == [1]  # the noise box is not a confirmed track
    ids = [tuple(p.track_id for p in held.track(frame(seq, True), tracker.update).persons) for seq in range(4, 30)]
    assert all(t == (1,) for t in ids), ids  # the standing person stays, the noise never becomes a track
    assert held.last and held.last[0].box == pytest.approx(person.box, abs=2)


def test_on_by_default_and_a_camera_can_opt_out() -> None:
    s = Settings()
    assert motion_gate(s, CameraConfig(id="a")) is not None
    assert motion_gate(s, CameraConfig(id="b", motion=MotionConfig(enabled=False))) is None
    s = Settings.model_validate({"detector": {"motion": {"enabled": False}}})
    assert motion_gate(s, CameraConfig(id="a")) is None
    assert motion_gate(s, CameraConfig(id="c", motion=MotionConfig(enabled=True))) is not None


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> PersonDetector:
    return build_detector(DetectorConfig(), models_dir)


class CountingDetector:
    def __init__(self, inner: PersonDetector) -> None:
        self.inner, self.name, self.calls = inner, inner.name, 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.calls += 1
        return self.inner.detect(image)


def _run(frames: list[tuple[np.ndarray, float]], detector: PersonDetector, gated: bool, force_s: float = 2.0,
         ) -> tuple[list[tuple[int, ...]], int]:
    settings = Settings.model_validate({"detector": {"motion": {"enabled": gated, "force_every_s": force_s}}})
    camera = CameraConfig(id="cam")
    h, w = frames[0][0].shape[:2]
    state = CameraState(settings, camera, w, h, FPS, None)
    gate = motion_gate(settings, camera)
    counting = CountingDetector(detector)
    ids = []
    for seq, (image, ts) in enumerate(frames):
        static = gate.check(image, ts) if gate is not None else False
        ref = FrameRef("cam", seq, ts, str(seq), w, h, static=static)
        outcome = state.process(detect_frame(counting, ref, image), image)
        ids.append(tuple(p.track_id for p in outcome.tracked.persons))
    return ids, counting.calls


def test_standing_people_keep_their_tracks_through_a_still_stretch(detector: PersonDetector,
                                                                   data_dir: Path) -> None:
    """20 s of a frozen crowd frame (with sensor noise) at 5 fps: about 11 detections instead of 100, and
    every person tracked after the first frames is still tracked, with the same id, at the end."""
    with VideoSource(str(data_dir / "video" / "opencv4nodejs_people.mp4")) as video:
        still = next(iter(video.frames())).image
    rng = np.random.default_rng(3)
    frames = [(_noisy(still, rng), i / FPS) for i in range(100)]
    ids, calls = _run(frames, detector, gated=True)
    assert calls <= 2 + math.ceil(20 / 2.0), calls
    assert len(ids[2]) >= 5
    for tids in ids[2:]:
        assert set(ids[2]) <= set(tids), (ids[2], tids)  # nobody standing is lost, beyond any interval
    # a longer forced interval than the tracker's memory (lost_track_buffer 30 frames at 30 fps = 1 s) is fine:
    ids_long, calls_long = _run(frames[:40], detector, gated=True, force_s=60.0)
    # the first two frames and the settle look 3 frames after them
    assert calls_long == 3 and all(set(ids_long[2]) <= set(t) for t in ids_long[2:])


def test_moving_crowd_is_detected_on_every_frame(detector: PersonDetector, data_dir: Path) -> None:
    """The crowd video at 5 fps (stride 5): every frame moves, so gating changes nothing at all."""
    with VideoSource(str(data_dir / "video" / "opencv4nodejs_people.mp4")) as video:
        frames = [(f.image, f.ts) for f in video.frames(stride=5, max_frames=30)]
    ids_on, calls_on = _run(frames, detector, gated=True)
    ids_off, calls_off = _run(frames, detector, gated=False)
    assert calls_on == calls_off == 30
    assert ids_on == ids_off


def _walker(x: float) -> np.ndarray:
    """A dark scene with a small, dim person (12 x 80 px) whose left edge is at ``x`` (sub-pixel: drawn at four
    times the width, then shrunk)."""
    big = np.full((450, 800 * 4), 60, dtype=np.uint8)
    left = round(x * 4)
    big[200:280, left:left + 48] = 110
    return cv2.cvtColor(cv2.resize(big, (800, 450), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)


def test_a_slow_walker_at_a_high_frame_rate_is_detected_on_every_frame() -> None:
    """At 25 fps a distant walker (1.5 px a frame) changes too few pixels of the small image from one frame to the
    next: compared with the last detected frame alone, the frame after a detection often looked still and was held
    (half the walk here). Compared with the frame ``window_s`` earlier too, every frame of the walk after the first
    still look is detected; window 0 is the former behaviour."""
    fps = 25.0
    images = [_walker(100 + 1.5 * i) for i in range(50)]

    def detected(window_s: float) -> list[int]:
        gate = MotionGate(MotionConfig(enabled=True, force_every_s=60, window_s=window_s))
        return [i for i, image in enumerate(images) if not gate.check(image, i / fps)]

    held_before = sorted(set(range(4, 50)) - set(detected(0.0)))
    assert len(held_before) >= 15, held_before
    assert [i for i in range(4, 50) if i not in detected(0.15)] == []


def test_at_5_fps_the_window_changes_no_decision() -> None:
    """At 5 fps the newest frame 0.15 s older is the previous one, never older than the last detected frame: the
    same decisions with the window as without it, on a scene that walks, stops and walks again."""
    rng = np.random.default_rng(3)
    xs = [100 + 6.0 * i for i in range(15)] + [190.0] * 15 + [190 + 1.5 * i for i in range(20)]
    images = [_noisy(_walker(x), rng) for x in xs]

    def decisions(window_s: float) -> list[bool]:
        gate = MotionGate(MotionConfig(enabled=True, window_s=window_s))
        return [gate.check(image, round(i / FPS, 6)) for i, image in enumerate(images)]

    assert decisions(0.15) == decisions(0.0)
    assert any(decisions(0.15)) and not all(decisions(0.15))  # some frames held, some detected


def test_the_window_counts_a_movement_for_its_span_after_it_stops() -> None:
    """The price of the window at a high frame rate: the frames within ``window_s`` after a movement stops still
    differ from the frame ``window_s`` before them, so they are detected too (then the settle look, then nothing)."""
    frame = np.full((450, 800, 3), 90, dtype=np.uint8)
    arrived = frame.copy()
    cv2.rectangle(arrived, (300, 100), (380, 400), (230, 230, 230), -1)
    images = [frame] * 10 + [arrived] * 20
    gate = MotionGate(MotionConfig(enabled=True, force_every_s=60, window_s=0.15))
    detected = [i for i, image in enumerate(images) if not gate.check(image, i / 25)]
    # 0, 1 always, 4 the settle look of the start; the arrival at 10 and the frames up to 0.15 s after it (11-13:
    # the frame 4 back is still the empty scene), then the settle look 3 still frames later (17)
    assert detected == [0, 1, 4, 10, 11, 12, 13, 17], detected
