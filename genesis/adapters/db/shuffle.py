"""Byte shuffling of fixed-size records before zlib: the one helper of the packed tables (``point_batches``,
``attempt_packs``, ``passage_packs``).

A record's bytes are grouped by their position (every record's first byte, then every second byte, ...): the high
bytes of frame offsets, track ids, times and coordinates are alike from one record to the next, so zlib takes those
planes for almost nothing, while the record bytes one after the other give it few repeats. Lossless: the records come
back bit for bit.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

LEVEL = 6
"""zlib level of packed records."""


def shuffled(records: npt.NDArray[Any]) -> bytes:
    """The bytes of ``records`` (a 1-D array of any fixed-size dtype) grouped by byte position."""
    size = records.dtype.itemsize
    return np.ascontiguousarray(np.ascontiguousarray(records).view(np.uint8).reshape(-1, size).T).tobytes()


def unshuffled(raw: bytes, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """The records of :func:`shuffled` bytes (a writable array of ``dtype``); ValueError when ``raw`` is not a whole
    number of records."""
    size = dtype.itemsize
    if len(raw) % size:
        raise ValueError(f"{len(raw)} shuffled bytes: not a whole number of {size}-byte records")
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(size, len(raw) // size)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(-1)


def compressed(records: npt.NDArray[Any]) -> bytes:
    """``records`` shuffled, then zlib-compressed."""
    return zlib.compress(shuffled(records), LEVEL)


def decompressed(data: bytes, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """The records of :func:`compressed` bytes (zlib.error: not a zlib stream; ValueError: not whole records)."""
    return unshuffled(zlib.decompress(data), dtype)


__all__ = ["LEVEL", "compressed", "decompressed", "shuffled", "unshuffled"]
