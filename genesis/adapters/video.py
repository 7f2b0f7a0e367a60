"""Video sources: files, RTSP/HTTP URLs and webcams through OpenCV, with clear errors."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from genesis.domain.redact import redact


class SourceError(Exception):
    """A source that cannot be opened or read."""


_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)

URL_OPEN_TIMEOUT_MS = 10_000
URL_READ_TIMEOUT_MS = 5_000
"""A network camera that does not answer (a server gone mid-stream) fails a read after this,
instead of OpenCV's default of 30 s, so the capture reconnects sooner."""

MAX_BAD_READS = 250
"""A file's reads that may fail in a row before the file is taken to have ended. OpenCV's reader
fails once per packet it cannot decode and then reads on: damage in the middle of a file (a disk
error, a broken copy) costs the frames it covers, not the rest of the file. Measured on a copy of
a shared clip with 200 KB zeroed (7 % of the file): 23 failed reads, then the remaining frames.
At the real end every read fails at once (250 of them take a few milliseconds), so the bound also
keeps a truncated file finite."""

DAMAGE_CONFIRMED_AFTER = 16
"""Frames that must follow failed reads for them to count as damage: a file cut short fails a read
and then still gives the few frames its decoder held back before it ends — that is its end (the
truncation warning's business), not a damaged place."""


@dataclass(frozen=True, slots=True)
class SourceInfo:
    source: str
    kind: str  # file | url | webcam
    width: int
    height: int
    fps: float
    frame_count: int | None


@dataclass(slots=True)
class SourceDamage:
    """What a file's damage cost (a place where reads failed and later ones succeeded again)."""

    frames: int = 0
    """Frames of the run (after the stride) that fell in damaged places and were skipped."""
    source_frames: int = 0
    """Failed reads of the source (before the stride): about one per undecodable frame."""
    places: int = 0
    """Damaged places read past."""


@dataclass(frozen=True, slots=True)
class RawFrame:
    seq: int
    ts: float
    image: np.ndarray


class VideoSource:
    """Frames of one source with their sequence number and timestamp.

    For files, ``seq`` is the frame index and ``ts`` the position in the video (seconds),
    so the same file always gives the same frames and times. For live sources ``ts`` is
    wall-clock time.
    """

    def __init__(self, source: str, default_fps: float = 25.0, max_width: int | None = None) -> None:
        self.source = source
        self.max_width = max_width
        if source.isdigit():
            kind = "webcam"
            cap = cv2.VideoCapture(int(source))
        elif _URL.match(source):
            kind = "url"
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, URL_OPEN_TIMEOUT_MS,
                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, URL_READ_TIMEOUT_MS]
            cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, timeouts)
        else:
            kind = "file"
            path = Path(source)
            if not path.exists():
                raise SourceError(f"video file not found: {source}")
            if not path.is_file():
                raise SourceError(f"not a file: {source}")
            cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise SourceError(f"cannot open {kind} source {redact(source)}: not a readable video")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise SourceError(f"cannot decode any frame from {redact(source)}: the video is empty or corrupt")
        self._cap = cap
        first = self._shrunk(first)
        self._first: np.ndarray | None = first
        self.damage = SourceDamage()
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0.5 <= fps <= 240.0):
            fps = default_fps
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.info = SourceInfo(
            source=source,
            kind=kind,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            fps=fps,
            frame_count=count if kind == "file" and count > 0 else None,
        )

    def frames(self, stride: int = 1, max_frames: int | None = None) -> Iterator[RawFrame]:
        """Every ``stride``-th frame; at most ``max_frames`` of them.

        A file reads on past damage (see :data:`MAX_BAD_READS`): each failed read counts as one
        frame, so the seqs and times after it stay close to the file's; what was skipped is in
        ``damage``. A live source ends at its first failed read (the caller reconnects).
        """
        seq = 0
        emitted = 0
        live = self.info.kind != "file"
        pending = SourceDamage()  # failed reads not yet confirmed as damage (DAMAGE_CONFIRMED_AFTER)
        since = 0
        while True:
            read: np.ndarray | None
            if self._first is not None:
                read, self._first = self._first, None
            else:
                more, read, failed = self._next(live, seq, stride)
                if not more:
                    return
                if failed:
                    pending.places += 1
                    pending.source_frames += failed
                    pending.frames += damaged_in_stride(seq, failed, stride)
                    seq += failed
                    since = 0
                elif pending.places:
                    since += 1
                    if since >= DAMAGE_CONFIRMED_AFTER:
                        self.damage.places += pending.places
                        self.damage.source_frames += pending.source_frames
                        self.damage.frames += pending.frames
                        pending = SourceDamage()
            if seq % stride == 0:
                assert read is not None  # _next decodes the pixels of every frame the stride keeps
                ts = time.time() if live else round(seq / self.info.fps, 6)
                yield RawFrame(seq=seq, ts=ts, image=read)
                emitted += 1
                if max_frames is not None and emitted >= max_frames:
                    return
            seq += 1

    def _next(self, live: bool, seq: int, stride: int) -> tuple[bool, np.ndarray | None, int]:
        """Past the next frame: (False, None, n) at the end; else (True, pixels, reads that failed before it).

        Every frame is decoded (``grab``), but only one that the stride keeps, at its seq after the failed reads,
        is turned into BGR pixels (``retrieve``); the others give None. At stride 5 on a 1280x720 H.264 file
        that is 1-3 ms less CPU per kept frame here than ``read`` on every frame."""
        tries = 1 if live else MAX_BAD_READS + 1
        for failed in range(tries):
            if not self._cap.grab():
                continue
            if (seq + failed) % stride:
                return True, None, failed
            ok, image = self._cap.retrieve()
            if ok and image is not None:
                return True, self._shrunk(image), failed
        return False, None, tries

    def _shrunk(self, image: np.ndarray) -> np.ndarray:
        return image if self.max_width is None else shrink_to_width(image, self.max_width)

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shrink_to_width(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` at ``width`` px when it is wider (aspect kept), else as it is.

    By the largest whole factor first with ``INTER_AREA`` (each output pixel the mean of a k x k block: fast, and no
    aliasing), then the rest, less than 2x, with ``INTER_LINEAR``. ``INTER_AREA`` at a fractional ratio costs 9 ms
    for 1920x1080 -> 1280x720 here against 2 ms for ``INTER_LINEAR``, more than the shrinking saves downstream."""
    h, w = image.shape[:2]
    if w <= width:
        return image
    size = (width, max(1, round(h * width / w)))
    k = w // width
    if k >= 2:
        if w % k or h % k:  # no whole blocks: area averaging all the way
            return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        image = cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA)
        if (image.shape[1], image.shape[0]) == size:
            return image
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)  # the rest: less than 2x


def damaged_in_stride(seq: int, failed: int, stride: int) -> int:
    """How many of the seqs ``seq`` .. ``seq + failed - 1`` the stride would have kept."""
    if failed <= 0:
        return 0
    return -(-(seq + failed) // stride) - -(-seq // stride)


class ReconnectingSource:
    """A live source (URL, webcam) that reopens itself with exponential backoff when it stops
    delivering frames, for the embedded runner (the distributed capture has its own loop).

    Seqs go on growing across connections; ``reconnects`` and ``outage_s`` (seconds without a
    connection) count the gaps. The first open is not retried: a camera that cannot be reached at
    the start is a ``SourceError``, as before. ``stop`` ends a wait for the source.
    """

    def __init__(self, source: str, *, backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 stop: threading.Event | None = None, max_width: int | None = None) -> None:
        self.source = source
        self.max_width = max_width
        self._video = VideoSource(source, max_width=max_width)
        self.info = self._video.info
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stop = stop or threading.Event()
        self.reconnects = 0
        self.outage_s = 0.0

    def frames(self, stride: int = 1, max_frames: int | None = None) -> Iterator[RawFrame]:
        base = 0
        emitted = 0
        while True:
            last = -1
            for raw in self._video.frames(stride):
                last = raw.seq
                yield RawFrame(seq=base + raw.seq, ts=raw.ts, image=raw.image)
                emitted += 1
                if max_frames is not None and emitted >= max_frames:
                    return
            self._video.close()
            base += last + 1
            if not self._reopen():
                return

    def _reopen(self) -> bool:
        lost = time.monotonic()
        delay = self.backoff_initial_s
        try:
            while not self.stop.wait(delay * (1.0 - 0.2 * random.random())):
                try:
                    self._video = VideoSource(self.source, max_width=self.max_width)
                except SourceError:
                    delay = min(delay * 2.0, self.backoff_max_s)
                    continue
                self.reconnects += 1
                return True
            return False
        finally:
            self.outage_s += time.monotonic() - lost

    def close(self) -> None:
        self._video.close()


def open_video(source: str, max_width: int | None = None) -> VideoSource | ReconnectingSource:
    """A file as it is; a live source that reconnects when it drops. ``max_width``: wider frames are shrunk to it
    as they are read (`CameraConfig.max_width`)."""
    if source.isdigit() or _URL.match(source):
        return ReconnectingSource(source, max_width=max_width)
    return VideoSource(source, max_width=max_width)
