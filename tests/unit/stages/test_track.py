"""Tracking on a real crowd video: ids stay close to the number of people, and are reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesis.adapters.video import VideoSource
from genesis.backends.detectors import build_detector
from genesis.config import DetectorConfig, TrackerConfig
from genesis.domain import FrameDetections, FrameRef
from genesis.stages.detect import detect_frame
from genesis.stages.track import CameraTracker


@pytest.fixture(scope="module")
def crowd_detections(models_dir: Path, data_dir: Path) -> tuple[list[FrameDetections], float]:
    detector = build_detector(DetectorConfig(), models_dir)
    with VideoSource(str(data_dir / "video" / "opencv4nodejs_people.mp4")) as video:
        fps = video.info.fps
        out = [
            detect_frame(detector, FrameRef("cam", f.seq, f.ts, str(f.seq), f.image.shape[1], f.image.shape[0]),
                         f.image)
            for f in video.frames(stride=2, max_frames=120)
        ]
    return out, fps


def run_tracker(dets: list[FrameDetections], fps: float) -> list[tuple[int, tuple[int, ...]]]:
    tracker = CameraTracker(TrackerConfig(), fps)
    return [(fd.frame.seq, tuple(p.track_id for p in tracker.update(fd).persons)) for fd in dets]


def test_track_ids_do_not_explode(crowd_detections: tuple[list[FrameDetections], float]) -> None:
    dets, fps = crowd_detections
    frames = run_tracker(dets, fps)
    ids = {tid for _, tids in frames for tid in tids}
    peak = max(len(tids) for _, tids in frames)
    lengths = {tid: sum(tid in tids for _, tids in frames) for tid in ids}
    print(f"\ntrack ids created: {len(ids)}, peak people in one frame: {peak}, "
          f"frames: {len(frames)}, median track length: {sorted(lengths.values())[len(lengths) // 2]}")
    assert peak >= 8  # a crowd: the detector and tracker see it
    assert len(ids) <= 4 * peak, "track ids explode: the tracker loses people between frames"
    assert min(ids) == 1 and max(ids) == len(ids), "ids are 1..N, one per confirmed track"
    assert sum(1 for n in lengths.values() if n < 3) <= 0.1 * len(ids), "too many flicker tracks"


def test_tracking_is_reproducible(crowd_detections: tuple[list[FrameDetections], float]) -> None:
    dets, fps = crowd_detections
    assert run_tracker(dets, fps) == run_tracker(dets, fps)


def test_two_cameras_do_not_share_ids(crowd_detections: tuple[list[FrameDetections], float]) -> None:
    dets, fps = crowd_detections
    a, b = CameraTracker(TrackerConfig(), fps), CameraTracker(TrackerConfig(), fps)
    for fd in dets[:20]:
        ta, tb = a.update(fd), b.update(fd)
        assert [p.track_id for p in ta.persons] == [p.track_id for p in tb.persons]
