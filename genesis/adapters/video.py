"""Video sources: files, RTSP/HTTP URLs and webcams through OpenCV, with clear errors."""

from __future__ import annotations

import re
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


@dataclass(frozen=True, slots=True)
class SourceInfo:
    source: str
    kind: str  # file | url | webcam
    width: int
    height: int
    fps: float
    frame_count: int | None


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

    def __init__(self, source: str, default_fps: float = 25.0) -> None:
        self.source = source
        if source.isdigit():
            kind = "webcam"
            cap = cv2.VideoCapture(int(source))
        elif _URL.match(source):
            kind = "url"
            cap = cv2.VideoCapture(source)
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
        self._first: np.ndarray | None = first
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
        """Every ``stride``-th frame; at most ``max_frames`` of them."""
        seq = 0
        emitted = 0
        live = self.info.kind != "file"
        while True:
            if self._first is not None:
                image: np.ndarray | None = self._first
                self._first = None
            else:
                ok, image = self._cap.read()
                if not ok:
                    image = None
            if image is None:
                return
            if seq % stride == 0:
                ts = time.time() if live else round(seq / self.info.fps, 6)
                yield RawFrame(seq=seq, ts=ts, image=image)
                emitted += 1
                if max_frames is not None and emitted >= max_frames:
                    return
            seq += 1

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
