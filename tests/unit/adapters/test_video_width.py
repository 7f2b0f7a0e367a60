"""``VideoSource(max_width=...)`` (``cameras[].max_width``): frames wider than that are shrunk as they are read,
aspect kept, the same pixels as shrinking the full frame; narrower frames are as the camera sends them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from genesis.adapters.video import VideoSource, open_video
from genesis.config import CameraConfig


def test_frames_are_shrunk_as_they_are_read(data_dir: Path) -> None:
    path = str(data_dir / "video" / "opencv4nodejs_people.mp4")  # 800 x 450
    with VideoSource(path) as full, VideoSource(path, max_width=400) as small:
        assert (small.info.width, small.info.height) == (400, 225)
        assert (small.info.fps, small.info.frame_count) == (full.info.fps, full.info.frame_count)
        pairs = list(zip(full.frames(stride=7, max_frames=4), small.frames(stride=7, max_frames=4), strict=True))
    assert len(pairs) == 4
    for a, b in pairs:
        assert (a.seq, a.ts) == (b.seq, b.ts)
        assert b.image.shape == (225, 400, 3)
        assert np.array_equal(b.image, cv2.resize(a.image, (400, 225), interpolation=cv2.INTER_AREA))


def test_a_frame_narrower_than_max_width_is_left_as_it_is(data_dir: Path) -> None:
    path = str(data_dir / "video" / "opencv4nodejs_people.mp4")
    with VideoSource(path, max_width=800) as same, VideoSource(path) as full:
        assert (same.info.width, same.info.height) == (800, 450)
        a, b = next(same.frames()), next(full.frames())
        assert np.array_equal(a.image, b.image)
    video = open_video(path, 640)
    try:
        assert (video.info.width, video.info.height) == (640, 360)
    finally:
        video.close()


@pytest.mark.parametrize("width", [0, 100, 10_000])
def test_max_width_out_of_range_is_a_config_error(width: int) -> None:
    with pytest.raises(ValueError, match="max_width"):
        CameraConfig(id="cam", max_width=width)
