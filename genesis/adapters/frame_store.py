"""Frame store: JPEG bytes of frames by key. In-memory here; Redis in the distributed mode.

Every path through Genesis encodes a captured frame to JPEG once and decodes it for the
stages, embedded or distributed, so both modes see the same pixels and give the same results.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np


class FrameDecodeError(ValueError):
    """Frame bytes that are not a decodable image (a corrupt frame: not retryable)."""


class FrameStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Several frames at once (one round trip on Redis)."""
        ...

    def get(self, key: str) -> bytes | None: ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Several frames at once, in the order of ``keys`` (None for a missing one)."""
        ...

    def delete(self, key: str) -> None: ...


class MemoryFrameStore:
    """A bounded in-memory store; the oldest frames go first when it is full."""

    def __init__(self, max_frames: int = 64) -> None:
        self.max_frames = max_frames
        self._data: OrderedDict[str, bytes] = OrderedDict()

    def put(self, key: str, data: bytes) -> None:
        self._data[key] = data
        self._data.move_to_end(key)
        while len(self._data) > self.max_frames:
            self._data.popitem(last=False)

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        for key, data in items:
            self.put(key, data)

    def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._data.get(k) for k in keys]

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)




def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FrameDecodeError("cannot encode frame as JPEG")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    arr = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(arr, cv2.IMREAD_COLOR) if arr.size else None
    if image is None:
        raise FrameDecodeError(f"frame bytes are not a decodable image ({len(data)} bytes)")
    return image
