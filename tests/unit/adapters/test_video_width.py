"""``VideoSource(max_width=...)`` (``cameras[].max_width``): frames wider than that are shrunk as they are read,
aspect kept (`shrink_to_width`); narrower frames are as the camera sends them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from genesis.adapters.video import VideoSource, open_video, shrink_to_width
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


def test_shrinking_averages_whole_blocks_then_interpolates_the_rest() -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    # a whole factor: the mean of each 2 x 2 block, nothing else
    assert np.array_equal(shrink_to_width(image, 960), cv2.resize(image, (960, 540), interpolation=cv2.INTER_AREA))
    # 1.5x: linear interpolation (area averaging at a fractional ratio costs four times as much)
    assert np.array_equal(shrink_to_width(image, 1280), cv2.resize(image, (1280, 720), interpolation=cv2.INTER_LINEAR))
    # 3840 -> 1280 is whole blocks of 3; 3840 -> 1000: blocks of 3, then the rest linearly
    big = cv2.resize(image, (3840, 2160), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(shrink_to_width(big, 1280), cv2.resize(big, (1280, 720), interpolation=cv2.INTER_AREA))
    thirds = cv2.resize(big, (1280, 720), interpolation=cv2.INTER_AREA)
    assert np.array_equal(shrink_to_width(big, 1000), cv2.resize(thirds, (1000, 562), interpolation=cv2.INTER_LINEAR))
    odd = image[:1079, :1917]  # no whole blocks of 2 (and 1917 / 2 is not whole): area averaging all the way
    assert np.array_equal(shrink_to_width(odd, 900), cv2.resize(odd, (900, 507), interpolation=cv2.INTER_AREA))
    assert shrink_to_width(image, 1920) is image and shrink_to_width(image, 4000) is image
