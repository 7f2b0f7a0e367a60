"""Region detection: detect only where something moved, in one window at the model's input size.

As the mature NVRs do it: the motion gate's changed pixels (its small grey difference image) give motion boxes;
they are padded (a moving arm is part of a whole person) and merged into one region; when that region fits in
one window of the detector's input size (``window_size``) and covers at most ``regions_max_share`` of the frame,
the detector runs on that window, cut from the frame at full resolution (no downscaling: a small person far away
is seen at the model's native scale), and the boxes are mapped back to the frame. Otherwise (the motion is
spread over the frame, or the frame is not larger than the window) the frame is detected whole. A frame the gate
forces (the first two, then every ``force_every_s``) is always detected whole.

The detector's cost does not depend on what it is given (a fixed-size input), so a window costs what the whole
frame costs: regions change *what* is detected (more pixels per person), never add an inference.

The ordered stage (``HeldDetections``) merges: the window's detections, and the held detections of the last
detected frame that lie outside the window (a person standing still elsewhere keeps their track), with
class-agnostic NMS across the two (:func:`merge_outside`).
"""

from __future__ import annotations

import cv2
import numpy as np

from genesis.backends.detectors import PersonDetector
from genesis.config import AnyDetectorConfig, MotionConfig, YoloDetectorConfig
from genesis.domain import Detection

Box = tuple[int, int, int, int]
"""x1, y1, x2, y2 in frame pixels (x2, y2 exclusive)."""

REGION_PAD = 0.25
"""A motion box is padded by this share of its larger side on every side (the rest of the moving person)."""
MIN_PAD_PX = 32
MIN_WINDOW_PX = 32
"""A window narrower or lower than this (after clipping to the frame) is not one: the whole frame is detected."""
EDGE_PX = 2.0
"""A box within this of an inner window edge was cut by the window."""


def window_size(config: AnyDetectorConfig | YoloDetectorConfig) -> tuple[int, int] | None:
    """(width, height) of the detector's network input, or None when the settings do not say it (a YOLOX
    model's own fixed shape: regions are then off)."""
    size = config.input_size
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(w), int(h)


def motion_boxes(changed: np.ndarray, width: int, height: int) -> list[Box]:
    """Boxes of the changed areas of the gate's small mask (``changed``: bool, small image), in frame pixels."""
    mask = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    sx, sy = width / mask.shape[1], height / mask.shape[0]
    out: list[Box] = []
    for x, y, w, h, _area in stats[1:n]:
        out.append((int(x * sx), int(y * sy), min(width, int(np.ceil((x + w) * sx))),
                    min(height, int(np.ceil((y + h) * sy)))))
    return out


def region_window(boxes: list[Box], width: int, height: int, window: tuple[int, int],
                  max_share: float) -> Box | None:
    """The one window of ``window`` size (clipped to the frame) holding every padded motion box, or None: detect
    the whole frame (no motion, motion spread wider than a window, or a window that would cover more than
    ``max_share`` of the frame)."""
    if not boxes:
        return None
    ww, wh = min(window[0], width), min(window[1], height)
    if ww * wh > max_share * width * height:
        return None
    x1 = y1 = 10**9
    x2 = y2 = -1
    for bx1, by1, bx2, by2 in boxes:
        pad = max(MIN_PAD_PX, round(REGION_PAD * max(bx2 - bx1, by2 - by1)))
        x1, y1 = min(x1, bx1 - pad), min(y1, by1 - pad)
        x2, y2 = max(x2, bx2 + pad), max(y2, by2 + pad)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    if x2 - x1 > ww or y2 - y1 > wh:
        return None
    # Centre the window on the motion, then shift it inside the frame.
    wx1 = min(max(0, (x1 + x2 - ww) // 2), width - ww)
    wy1 = min(max(0, (y1 + y2 - wh) // 2), height - wh)
    return wx1, wy1, wx1 + ww, wy1 + wh


def gate_window(changed: np.ndarray | None, width: int, height: int, window: tuple[int, int] | None,
                motion: MotionConfig) -> Box | None:
    """The window to detect for a frame the gate let through (``changed``: its mask, None when the gate forced
    the frame), or None for the whole frame."""
    if changed is None or window is None or not motion.regions:
        return None
    return region_window(motion_boxes(changed, width, height), width, height, window, motion.regions_max_share)


def detect_window(detector: PersonDetector, image: np.ndarray, window: Box) -> list[Detection]:
    """The detector on the window cut from ``image``, boxes in frame pixels.
    A box that an inner window edge cut (one that is not the frame's edge) is dropped: the person goes on
    outside the window, and the held detection there (or the next full frame) gives the whole box."""
    h, w = image.shape[:2]
    # A window comes in a message: whatever it says, it is clipped to the frame, and one that is not a window
    # of it (empty, inverted, a sliver) means the whole frame.
    x1, y1 = max(0, int(window[0])), max(0, int(window[1]))
    x2, y2 = min(w, int(window[2])), min(h, int(window[3]))
    if x2 - x1 < MIN_WINDOW_PX or y2 - y1 < MIN_WINDOW_PX:
        return detector.detect(image)
    crop = np.ascontiguousarray(image[y1:y2, x1:x2])
    out = []
    for d in detector.detect(crop):
        bx1, by1, bx2, by2 = d.box
        cut = ((x1 > 0 and bx1 <= EDGE_PX) or (y1 > 0 and by1 <= EDGE_PX)
               or (x2 < w and bx2 >= (x2 - x1) - EDGE_PX) or (y2 < h and by2 >= (y2 - y1) - EDGE_PX))
        if not cut:
            out.append(Detection((bx1 + x1, by1 + y1, bx2 + x1, by2 + y1), d.score, d.class_id))
    return out


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _inside(box: tuple[float, float, float, float], window: Box) -> bool:
    """Whether the box's centre lies in the window (the window's detector saw that person)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return window[0] <= cx < window[2] and window[1] <= cy < window[3]


def merge_outside(fresh: tuple[Detection, ...], held: tuple[Detection, ...], window: Box,
                  iou: float) -> tuple[Detection, ...]:
    """A window frame's detections: the window's own, and the held ones whose centre lies outside the window,
    merged by class-agnostic NMS (a held box that overlaps a fresh one by ``iou`` or more is the same person)."""
    out = list(fresh)
    for d in held:
        if not _inside(d.box, window) and all(_iou(d.box, f.box) < iou for f in fresh):
            out.append(d)
    return tuple(out)
