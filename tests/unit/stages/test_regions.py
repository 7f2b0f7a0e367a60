"""Region detection (genesis.stages.regions): motion boxes -> one window at the model's input size -> detections
mapped back and merged with the held boxes outside the window."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from genesis.backends.detectors import PersonDetector, build_detector
from genesis.config import MotionConfig, YoloDetectorConfig
from genesis.domain import Detection, FrameDetections, FrameRef, TrackedFrame
from genesis.stages.motion import HeldDetections, MotionGate
from genesis.stages.regions import _iou, detect_window, gate_window, merge_outside, region_window, window_size

WINDOW = (640, 640)


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> PersonDetector:
    return build_detector(YoloDetectorConfig(), models_dir)


def test_person_moving_in_a_corner_same_box_from_the_window_as_from_the_full_frame(
        detector: PersonDetector, data_dir: Path) -> None:
    """A 1920x1080 street frame in which one person, at the left edge, moves 40 px (their own pixels, moved):
    the gate's motion gives a 640x640 window around them, and the detector on that window finds them with the
    box it finds on the whole frame (IoU >= 0.9), mapped back to frame pixels."""
    video = cv2.VideoCapture(str(data_dir / "video" / "mmtracking_demo.mp4"))
    ok, still = video.read()
    video.release()
    assert ok and still.shape == (1080, 1920, 3)
    moved = still.copy()
    moved[520:820, 100:280] = still[520:820, 60:240]  # the person at x 104-176 walks 40 px to the right
    motion = MotionConfig(enabled=True, regions=True)
    gate = MotionGate(motion)
    assert [gate.check(f, 0.2 * t) for t, f in enumerate((still, still, moved))] == [False, False, False]
    window = gate_window(gate.changed, 1920, 1080, window_size(YoloDetectorConfig()), motion)
    assert window is not None
    x1, y1, x2, y2 = window
    assert (x2 - x1, y2 - y1) == WINDOW and x1 == 0 and y1 <= 520 and y2 >= 820, window
    full = detector.detect(moved)
    person = max(full, key=lambda d: _iou(d.box, (144, 546, 218, 794)))
    assert _iou(person.box, (144, 546, 218, 794)) >= 0.8, person  # the full frame sees the moved person there
    found = detect_window(detector, moved, window)
    assert all(x1 <= d.box[0] and d.box[2] <= x2 and y1 <= d.box[1] and d.box[3] <= y2 for d in found), found
    best = max(found, key=lambda d: _iou(d.box, person.box))
    assert _iou(best.box, person.box) >= 0.9, (best, person)
    # A window that is not one of this frame (a hostile or stale message): clipped, or the whole frame.
    whole = sorted(d.box for d in full)
    assert sorted(d.box for d in detect_window(detector, moved, (-5000, -5000, 10**9, 10**9))) == whole
    assert sorted(d.box for d in detect_window(detector, moved, (900, 900, 100, 100))) == whole
    # No motion (the gate forced the frame, or nothing moved): the whole frame.
    assert gate_window(None, 1920, 1080, WINDOW, motion) is None
    assert gate_window(gate.changed, 1920, 1080, WINDOW, MotionConfig(enabled=True)) is None  # regions off


def test_window_only_when_the_motion_fits_in_one() -> None:
    # Motion in one corner: a window of the model's size, inside the frame, holding the padded motion.
    assert region_window([(1800, 1000, 1850, 1070)], 1920, 1080, WINDOW, 0.6) == (1280, 440, 1920, 1080)
    # Motion at two far ends of the frame: no one window holds both, the whole frame is detected.
    assert region_window([(10, 10, 60, 100), (1800, 900, 1850, 1000)], 1920, 1080, WINDOW, 0.6) is None
    # A frame hardly larger than the window: not worth it.
    assert region_window([(10, 10, 60, 100)], 800, 450, WINDOW, 0.6) is None
    assert region_window([], 1920, 1080, WINDOW, 0.6) is None
    # A motion box larger than a window.
    assert region_window([(100, 100, 900, 300)], 1920, 1080, WINDOW, 0.6) is None
    assert window_size(YoloDetectorConfig(input_size=320)) == (320, 320)


def test_window_frame_keeps_the_still_people_outside_it() -> None:
    """A person standing still outside the window keeps their box (and track); one inside the window is the
    window's to find; a held box that the window's detector found again is not doubled."""
    window = (0, 0, 640, 640)
    still_outside = Detection((1000.0, 500.0, 1060.0, 700.0), 0.8)
    inside = Detection((100.0, 100.0, 160.0, 300.0), 0.8)
    cut = Detection((600.0, 100.0, 700.0, 300.0), 0.7)  # centre outside the window: held
    fresh = (Detection((104.0, 102.0, 164.0, 302.0), 0.9), Detection((610.0, 101.0, 700.0, 299.0), 0.75))
    merged = merge_outside(fresh, (still_outside, inside, cut), window, 0.5)
    assert merged == (*fresh, still_outside)

    held = HeldDetections()
    seen: list[tuple[Detection, ...]] = []

    def update(d: FrameDetections) -> TrackedFrame:
        seen.append(d.detections)
        return TrackedFrame(d.frame, ())

    ref = FrameRef("c", 0, 0.0, "k", 1920, 1080)
    held.track(FrameDetections(ref, (still_outside, inside)), update)
    held.track(FrameDetections(ref, (still_outside, inside)), update)  # seen twice: held from now on
    window_ref = FrameRef("c", 1, 0.2, "k", 1920, 1080, window=window)
    held.track(FrameDetections(window_ref, (fresh[0],)), update)
    assert seen[-1] == (fresh[0], still_outside)
