"""A short synthetic clip for the MQTT and privacy tests: photos of people "walking" across the frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FPS = 10
W, H = 640, 480
WALK_S = 3.0


def walking_clip(path: Path, photos: list[Path], last_gap: bool = True) -> None:
    """Each photo (scaled to 300 px high) walks from the left edge to the right edge, then a gap
    (after the last one only with ``last_gap``)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (W, H))
    assert writer.isOpened()
    steps = int(FPS * WALK_S)
    for p in photos:
        img = cv2.imread(str(p))
        assert img is not None, p
        h = 300
        w = round(img.shape[1] * h / img.shape[0])
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        for i in range(steps):
            frame = np.full((H, W, 3), 40, dtype=np.uint8)
            x = round(i * (W - w) / (steps - 1))
            frame[H - h - 20 : H - 20, x : x + w] = img
            writer.write(frame)
        if p == photos[-1] and not last_gap:
            break
        blank = np.full((H, W, 3), 40, dtype=np.uint8)
        for _ in range(2 * FPS):  # longer than the tracker keeps a lost track
            writer.write(blank)
    writer.release()


def side_by_side_clip(path: Path, photos: list[Path], seconds: float = 3.0) -> list[tuple[int, int, int, int]]:
    """The photos (300 px high) side by side, standing still; returns where each one is (x1, y1, x2, y2)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (W, H))
    assert writer.isOpened()
    frame = np.full((H, W, 3), 40, dtype=np.uint8)
    boxes = []
    x = 10
    for p in photos:
        img = cv2.imread(str(p))
        assert img is not None, p
        h = 300
        w = min(round(img.shape[1] * h / img.shape[0]), W // len(photos) - 20)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        frame[H - h - 20 : H - 20, x : x + w] = img
        boxes.append((x, H - h - 20, x + w, H - 20))
        x += w + 20
    for _ in range(int(FPS * seconds)):
        writer.write(frame)
    writer.release()
    return boxes


def flicker_clip(path: Path, photo: Path, seconds: float = 4.0, flicker_s: float = 2.0, every: int = 3) -> int:
    """One photo (300 px high) standing in the middle; during the first ``flicker_s`` seconds every
    ``every``-th frame is blank (a detection that drops out), then it stays, then a blank second.
    Returns the number of frames it is in view."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (W, H))
    assert writer.isOpened()
    img = cv2.imread(str(photo))
    assert img is not None, photo
    h = 300
    w = round(img.shape[1] * h / img.shape[0])
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    person = np.full((H, W, 3), 40, dtype=np.uint8)
    x = (W - w) // 2
    person[H - h - 20 : H - 20, x : x + w] = img
    blank = np.full((H, W, 3), 40, dtype=np.uint8)
    shown = 0
    for i in range(int(FPS * seconds)):
        off = i < FPS * flicker_s and i % every == every - 1
        writer.write(blank if off else person)
        shown += not off
    for _ in range(FPS):
        writer.write(blank)
    writer.release()
    return shown
