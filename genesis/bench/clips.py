"""Test clips made from the shared videos (for ``python -m genesis.bench cameras`` and the tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from genesis.adapters.video import VideoSource


def make_static_clip(
    source: str,
    path: Path,
    *,
    width: int = 800,
    still_s: float = 8.0,
    walk_s: float = 2.0,
    cycles: int = 3,
    noise: float = 2.0,
    seed: int = 7,
) -> dict[str, Any]:
    """A mostly-static clip: ``cycles`` times a still stretch of ``still_s`` seconds then a walk of ``walk_s``.

    The still stretch repeats the last frame shown (the people in it stand still), with Gaussian sensor noise
    of ``noise`` grey levels on each copy, as a real fixed camera has; the walk goes on with the source's next
    frames, so the video is continuous. Written as MJPG AVI at the source's frame rate, ``width`` px wide.
    Returns the layout: fps, frames, and the (first, last) frame index of each walk.
    """
    rng = np.random.default_rng(seed)
    writer: Any = None
    walks: list[tuple[int, int]] = []
    written = 0
    with VideoSource(source) as video:
        fps = video.info.fps
        still_n, walk_n = round(still_s * fps), round(walk_s * fps)
        frames = video.frames()
        current: np.ndarray | None = None

        def put(image: np.ndarray) -> None:
            nonlocal writer, written
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps,
                                         (image.shape[1], image.shape[0]))
                if not writer.isOpened():
                    raise OSError(f"cannot write {path}")
            writer.write(image)
            written += 1

        def scaled(image: np.ndarray) -> np.ndarray:
            h, w = image.shape[:2]
            size = (width, max(2, round(h * width / w / 2) * 2))
            return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

        try:
            for _ in range(cycles):
                if current is None:
                    raw = next(frames, None)
                    if raw is None:
                        raise OSError(f"no frame read from {source}")
                    current = scaled(raw.image)
                for _ in range(still_n):
                    noisy = current.astype(np.float32) + rng.normal(0.0, noise, current.shape).astype(np.float32)
                    put(np.clip(noisy, 0, 255).astype(np.uint8))
                first = written
                for _ in range(walk_n):
                    raw = next(frames, None)
                    if raw is None:
                        raise OSError(f"{source} is too short for {cycles} walks of {walk_s} s")
                    current = scaled(raw.image)
                    put(current)
                walks.append((first, written - 1))
        finally:
            if writer is not None:
                writer.release()
    return {"fps": fps, "frames": written, "walks": walks}


def make_corner_clip(
    source: str,
    path: Path,
    *,
    width: int = 1280,
    corner: tuple[float, float, float, float] = (0.6, 0.3, 1.0, 1.0),
    seconds: float = 4.0,
    noise: float = 2.0,
    seed: int = 7,
) -> dict[str, Any]:
    """A fixed camera on which people move in one corner only: the source's first frame, still (with sensor
    noise), except in ``corner`` (x1, y1, x2, y2 as shares of the frame), where the source plays on — real
    people walking, at the place the source has them. Written as MJPG AVI, ``width`` px wide, ``seconds``
    long. Returns fps, frames and the corner in pixels."""
    rng = np.random.default_rng(seed)
    writer: Any = None
    written = 0
    with VideoSource(source) as video:
        fps = video.info.fps
        base: np.ndarray | None = None
        box = (0, 0, 0, 0)
        try:
            for raw in video.frames(max_frames=round(seconds * fps)):
                h, w = raw.image.shape[:2]
                image = cv2.resize(raw.image, (width, max(2, round(h * width / w / 2) * 2)),
                                   interpolation=cv2.INTER_AREA)
                if base is None:
                    base = image
                    fh, fw = image.shape[:2]
                    box = (round(corner[0] * fw), round(corner[1] * fh), round(corner[2] * fw), round(corner[3] * fh))
                    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (fw, fh))
                    if not writer.isOpened():
                        raise OSError(f"cannot write {path}")
                frame = np.clip(base.astype(np.float32) + rng.normal(0.0, noise, base.shape).astype(np.float32),
                                0, 255).astype(np.uint8)
                x1, y1, x2, y2 = box
                frame[y1:y2, x1:x2] = image[y1:y2, x1:x2]
                writer.write(frame)
                written += 1
        finally:
            if writer is not None:
                writer.release()
    return {"fps": fps, "frames": written, "corner": box}
