"""Trajectory points packed per stored batch (``point_batches``, :class:`~genesis.adapters.db.tables.PointBatchRow`).

A row holds the points one call of ``Repository.save_outcome`` stored for one run and one UTC day (a batch whose
points span midnight gives two rows), every track together, as ``n`` little-endian records of
:data:`POINT_DTYPE` sorted by (seq, track id):

========  ======  ===================================================================
field     type    value
========  ======  ===================================================================
dseq      uint32  the point's frame minus the row's ``first_seq``
track_id  int64   the track
ts        float64 the point's time, exactly as ``PathPoint.ts`` (media or epoch seconds)
x1 .. y2  float32 the box, single precision (what the ``real`` columns of ``track_points`` kept)
score     float32 the detection score, single precision
frames    uint32  the sightings of the track the point stands for
========  ======  ===================================================================

44 bytes a point, stored byte-shuffled and zlib-compressed (`genesis.adapters.db.shuffle`; about 21 bytes a point on
a busy street, half what the raw records took on PostgreSQL after its own TOAST compression): the compressed bytes,
then 0 to 43 zero bytes and their count as a last byte, so that the blob's length is 1 more than a multiple of 44. A
blob whose length is a multiple of 44 holds the records as they are: the rows stored before compression (and a row
that compression would not make smaller). The row's ``first_seq`` / ``last_seq`` (first and last frame) and
``first_ts`` / ``last_ts`` (smallest and largest ``ts``) let the readers pick rows in SQL without unpacking them;
``n`` counts them.

A row is keyed by its run, its first point (``first_seq``, ``first_track``: the smallest (frame, track)) and its day.
A point is stored once in a run, so no two batches share a key, while a retried batch gives the same keys again.
The frame alone would not do: a batch also carries the exit points of tracks gone for a while (``genesis.stages.path``
emits a track's last sighting when it forgets the track, and at the end of the run), whose frames lie before the
batch's, so two batches' frame ranges may overlap and their first frames may be equal.

This module is the codec only (no SQL): the rows a batch becomes (:func:`day_rows`, :func:`row_of`) and the points a
row holds (:func:`stored_points`, :func:`point_keys`, :func:`unpack`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genesis.adapters.db.shuffle import compressed, decompressed
from genesis.domain import PathPoint

POINT_DTYPE = np.dtype([("dseq", "<u4"), ("track_id", "<i8"), ("ts", "<f8"), ("x1", "<f4"), ("y1", "<f4"),
                        ("x2", "<f4"), ("y2", "<f4"), ("score", "<f4"), ("frames", "<u4")])
"""One packed point (44 bytes, no padding)."""

_U32 = 2**32


def real_out(x: float) -> float:
    """A single-precision value read back: the shortest decimal of the float32 (the value the ``real`` columns
    gave back on both backends; ``genesis.adapters.db.repository.real_out``)."""
    return float(str(np.float32(x)))


def pack(points: Sequence[PathPoint], first_seq: int) -> bytes:
    """The records of ``points`` (already in their order) relative to ``first_seq``."""
    arr = np.zeros(len(points), dtype=POINT_DTYPE)
    for i, p in enumerate(points):
        d = int(p.seq) - first_seq
        if not 0 <= d < _U32:
            raise ValueError(f"point at frame {p.seq} is out of its batch's range (first frame {first_seq})")
        arr[i] = (d, int(p.track_id), float(p.ts), p.box[0], p.box[1], p.box[2], p.box[3], p.score, int(p.frames))
    return seal(arr)


def seal(arr: np.ndarray[Any, Any]) -> bytes:
    """The stored form of some records: shuffled and compressed, padded to 1 more than a multiple of the record
    size (the raw records where that is not smaller)."""
    size = POINT_DTYPE.itemsize
    body = compressed(arr)
    pad = -len(body) % size
    if len(body) + pad + 1 >= len(arr) * size:
        return arr.tobytes()
    return body + bytes(pad) + bytes([pad])


def unpack(blob: bytes) -> np.ndarray[Any, Any]:
    """The records of a row (``dseq`` relative to the row's ``first_seq``): compressed (length 1 more than a
    multiple of 44) or as they are (a multiple of 44: rows stored before compression)."""
    size = POINT_DTYPE.itemsize
    if len(blob) % size == 0:
        return np.frombuffer(blob, dtype=POINT_DTYPE)
    if len(blob) % size != 1:
        raise ValueError(f"packed points of {len(blob)} bytes: neither {size}-byte records nor compressed ones")
    body = blob[:len(blob) - 1 - blob[-1]]
    try:
        return decompressed(body, POINT_DTYPE)
    except (zlib.error, ValueError) as exc:
        raise ValueError(f"packed points of {len(blob)} bytes do not decompress: {exc}") from None


def _frames(arr: np.ndarray[Any, Any], first_seq: int) -> list[int]:
    """The frame of each record of a row whose first frame is ``first_seq``."""
    return (arr["dseq"].astype(np.int64) + first_seq).tolist()  # type: ignore[no-any-return]


def point_keys(first_seq: int, blob: bytes) -> list[tuple[int, int]]:
    """(frame, track id) of each point of a row, in its order (what identifies a point in a run)."""
    arr = unpack(blob)
    return list(zip(_frames(arr, first_seq), arr["track_id"].tolist(), strict=True))


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """A point read back, its values as the old one-row-a-point table gave them (``ts`` the float64 stored, the box
    and score the float32 stored through :func:`real_out`)."""

    track_id: int
    seq: int
    ts: float
    box: tuple[float, float, float, float]
    score: float
    frames: int

    def path_point(self, camera_id: str) -> PathPoint:
        return PathPoint(camera_id=camera_id, track_id=self.track_id, seq=self.seq, ts=self.ts, box=self.box,
                         score=self.score, frames=self.frames)


def stored_points(first_seq: int, blob: bytes, keep: Callable[[int, int, float], bool] | None = None
                  ) -> list[StoredPoint]:
    """The points of a row in their order (by seq, track id); only those for which ``keep(track_id, seq, ts)``
    holds, when given (the others are not converted)."""
    arr = unpack(blob)
    seqs = _frames(arr, first_seq)
    tids, tss, frames = arr["track_id"].tolist(), arr["ts"].tolist(), arr["frames"].tolist()
    out = []
    for i, (tid, seq, ts) in enumerate(zip(tids, seqs, tss, strict=True)):
        if keep is not None and not keep(tid, seq, ts):
            continue
        r = arr[i]
        out.append(StoredPoint(int(tid), int(seq), float(ts),
                               (real_out(r["x1"]), real_out(r["y1"]), real_out(r["x2"]), real_out(r["y2"])),
                               real_out(r["score"]), int(frames[i])))
    return out


def day_rows(run_id: str, points: Iterable[PathPoint], day_of: Callable[[float], int]) -> list[dict[str, Any]]:
    """The ``point_batches`` rows of a batch's points: one per UTC day (``day_of(ts)``) they fall in, keyed
    (run, first frame, day), so that the same batch written again gives the same keys. A point given twice (same
    frame and track) is kept once (the first), as the one-row-a-point key did."""
    by_day: dict[int, dict[tuple[int, int], PathPoint]] = {}
    for p in points:
        by_day.setdefault(day_of(float(p.ts)), {}).setdefault((int(p.seq), int(p.track_id)), p)
    out = []
    for day, keyed in sorted(by_day.items()):
        ordered = [keyed[k] for k in sorted(keyed)]
        first = int(ordered[0].seq)
        ts = [float(p.ts) for p in ordered]
        out.append({"run_id": run_id, "first_seq": first, "first_track": int(ordered[0].track_id), "day": day,
                    "last_seq": int(ordered[-1].seq),
                    "first_ts": min(ts), "last_ts": max(ts), "n": len(ordered), "points": pack(ordered, first)})
    return out


def row_of(run_id: str, day: int, points: Sequence[StoredPoint], key: tuple[int, int] | None = None
           ) -> dict[str, Any]:
    """A ``point_batches`` row of points already read back (in their order), e.g. what is left of a row after
    retention or a copy; ``key``: the (first_seq, first_track) to keep (default: the first point's)."""
    base, track = (int(points[0].seq), int(points[0].track_id)) if key is None else key
    as_path = [p.path_point("") for p in points]
    ts = [p.ts for p in points]
    return {"run_id": run_id, "first_seq": base, "first_track": track, "day": day,
            "last_seq": max(p.seq for p in points),
            "first_ts": min(ts), "last_ts": max(ts), "n": len(points), "points": pack(as_path, base)}


__all__ = ["POINT_DTYPE", "StoredPoint", "day_rows", "pack", "point_keys", "row_of", "seal", "stored_points", "unpack"]
