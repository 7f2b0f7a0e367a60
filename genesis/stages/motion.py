"""Motion gating: detect only when the picture changed since the last detection.

As the mature NVRs do, a frame is shrunk to a small grey image (``motion.width`` px wide, light blur) and
compared with the small image of the last *detected* frame: when fewer than ``motion.min_changed`` of its
pixels changed by ``motion.pixel_threshold`` grey levels or more, nothing moved and the frame is *static*.
Comparing with the last detected frame (not the previous frame) means slow movement adds up until it counts.
At a high frame rate that is not enough: a walker changes few pixels between two frames 40 ms apart, so the
frame after each detection looked still and was held. So movement is also judged over a fixed span of time: the
frame is compared with the newest frame at least ``motion.window_s`` seconds older too, when that frame is older
than the last detected one (else the last detected frame spans more time). At 5 fps and the default 0.15 s that
frame is the previous one, never older than the last detected frame: the decisions are the former ones.
A full detection still runs at least every ``motion.force_every_s`` seconds of video, so a person who
stands still is re-detected. Once the picture stops changing, the still frame ``motion.settle_frames`` after the
last moving one is detected, and its first still frame too when the movement was a single detected frame:
someone who walked in and stopped (at a counter, a door, a kiosk) is confirmed as a track (two detections in a
row) and gets the second face attempt that naming takes (``recognition.min_votes``) within a second, not at the
next forced detection.

A static frame is marked on its ``FrameRef`` (``static=True``). The detect stage then skips inference, and
the ordered per-camera stage (``HeldDetections``, called by ``CameraState.process``) gives the tracker the
boxes of the tracks confirmed on the last detected frame, so tracks, zones and lines live on through still
stretches. The first two frames are always detected. The gate must see the frames in order: in the
embedded runner it runs in the frame loop, in the distributed mode in the capture process (detect tasks
are stateless). It uses the source's own pixels and timestamps only, so both modes
take the same decisions on the same video.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from genesis.config import CameraConfig, MotionConfig, Settings
from genesis.domain import Detection, FrameDetections, TrackedFrame
from genesis.stages.regions import merge_outside


def small_grey(image: np.ndarray, width: int) -> np.ndarray:
    """The frame as a small blurred grey image (int16, so differences do not wrap)."""
    h, w = image.shape[:2]
    height = max(1, round(h * width / w))
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (3, 3), 0).astype(np.int16)


def changed_share(a: np.ndarray, b: np.ndarray, pixel_threshold: int) -> float:
    """Share of the pixels whose grey level differs by ``pixel_threshold`` or more."""
    return float(np.count_nonzero(np.abs(a - b) >= pixel_threshold)) / a.size


@dataclass(slots=True)
class MotionGate:
    """One camera's gate; ``check`` must see the frames in order. State is the reference image and time."""

    config: MotionConfig
    reference: np.ndarray | None = None
    """Small grey image of the last detected frame."""
    detected_ts: float | None = None
    """Video time of the last detected frame."""
    frames: int = 0
    static_frames: int = 0
    last_share: float = field(default=0.0)
    still_run: int | None = None
    """Frames since the last detected frame that moved (None before one did)."""
    moved_in_row: int = 0
    """Detected frames in a row that moved (the last detected one included)."""
    recent: deque[tuple[float, np.ndarray]] = field(default_factory=deque, repr=False)
    """(time, small image) of the last frames, detected or not, the newest last: those within ``window_s`` of the
    newest and the newest one before them (the window's reference)."""
    changed: np.ndarray | None = field(default=None, repr=False)
    """The changed pixels (bool, small image) of the last frame let through for its motion; None when the last
    frame was forced (or static): region detection (genesis.stages.regions) detects the whole frame then."""

    def check(self, image: np.ndarray, ts: float) -> bool:
        """True when ``image`` is static (no detection needed), False when it must be detected."""
        c = self.config
        small = small_grey(image, c.width)
        self.frames += 1
        # The first two frames are detected, so people standing still from the start are confirmed tracks
        # (a track needs two consecutive detections) before the first static frame.
        forced = self.frames <= 2 or self.detected_ts is None or ts - self.detected_ts >= c.force_every_s \
            or ts < self.detected_ts
        self.changed = None
        if self.reference is None or self.reference.shape != small.shape:
            forced = True
            self.last_share = 1.0
        else:
            mask = np.abs(small - self.reference) >= c.pixel_threshold
            window = self._window_reference(ts)
            if window is not None:
                mask |= np.abs(small - window) >= c.pixel_threshold
            self.last_share = float(np.count_nonzero(mask)) / mask.size
            if not forced:
                self.changed = mask
        moved = self.last_share >= c.min_changed
        if moved:
            self.still_run = 0
        elif self.still_run is not None:
            self.still_run += 1
        # The first still frame confirms whoever appeared in a single moving frame (a track needs two detections in
        # a row; after a longer movement they have them); the look settle_frames later is a second face attempt.
        settling = c.settle_frames > 0 and (
            (self.still_run == 1 and self.moved_in_row < 2) or self.still_run == 1 + c.settle_frames)
        if not forced and not moved:
            self.changed = None
        static = not forced and not moved and not settling
        if static:
            self.static_frames += 1
        else:
            self.reference, self.detected_ts = small, ts
            self.moved_in_row = self.moved_in_row + 1 if moved else 0
        self._remember(ts, small)
        return static

    def _remember(self, ts: float, small: np.ndarray) -> None:
        if self.config.window_s > 0:
            if self.recent and (ts < self.recent[-1][0] or self.recent[-1][1].shape != small.shape):
                self.recent.clear()  # time went back (a new source) or the picture's size changed
            self.recent.append((ts, small))

    def _window_reference(self, ts: float) -> np.ndarray | None:
        """The newest frame at least ``window_s`` before ``ts`` when it is older than the last detected frame (older
        ones are dropped), or None."""
        span = self.config.window_s
        if span <= 0:
            return None
        while len(self.recent) >= 2 and self.recent[1][0] <= ts - span:
            self.recent.popleft()
        if self.recent and self.recent[0][0] <= ts - span and self.detected_ts is not None \
                and self.recent[0][0] < self.detected_ts:
            return self.recent[0][1]
        return None


def camera_motion(settings: Settings, camera: CameraConfig) -> MotionConfig:
    """The camera's own motion settings, else the detector's default."""
    return camera.motion if camera.motion is not None else settings.detector.motion


def motion_gate(settings: Settings, camera: CameraConfig) -> MotionGate | None:
    """A gate for the camera, or None when gating is off for it."""
    config = camera_motion(settings, camera)
    return MotionGate(config) if config.enabled else None


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


SAME_BOX_IOU = 0.5


@dataclass(slots=True)
class HeldDetections:
    """The ordered stage's side of gating: what a static frame gives the tracker.

    The detections of the last detected frame that belong to a confirmed track (overlap one of its boxes)
    or that the detected frame before it had too. Not simply all of them: a one-frame false detection (noise)
    would be fed to the tracker on every static frame until the next detection and become a confirmed track,
    which it never does without gating (a track needs two consecutive detections).
    """

    last: tuple[Detection, ...] = ()
    previous: tuple[Detection, ...] = ()
    """Raw detections of the last detected frame."""

    def track(self, detections: FrameDetections, update: Callable[[FrameDetections], TrackedFrame]) -> TrackedFrame:
        """``update`` (the tracker) on this frame's detections, or on the held ones for a static frame."""
        if detections.frame.static:
            return update(FrameDetections(detections.frame, self.last, 0.0))
        window = detections.frame.window
        if window is not None:  # region detection: the held boxes outside the window stand for what it did not see
            detections = FrameDetections(detections.frame, merge_outside(detections.detections, self.last, window,
                                                                         SAME_BOX_IOU), detections.inference_ms)
        tracked = update(detections)
        confirmed = [p.box for p in tracked.persons]
        held = [d for d in detections.detections
                if any(_iou(d.box, box) >= SAME_BOX_IOU for box in confirmed)
                or any(_iou(d.box, q.box) >= SAME_BOX_IOU for q in self.previous)]
        self.previous, self.last = detections.detections, tuple(held)
        return tracked
