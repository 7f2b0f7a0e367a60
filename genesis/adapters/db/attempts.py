"""Recognition attempts packed per stored batch (``attempt_packs``, :class:`~genesis.adapters.db.tables.AttemptPack`).

A busy camera makes about 0.6 recognition attempts a frame (a face searched on a track at one frame). As rows of
their own (``recognition_attempts`` before migration 0016) they cost about 285 bytes each on PostgreSQL with their
key, 73 MB a busy camera-day kept for 30 days, and nothing reads one attempt alone: the run's attempts are read
whole (:meth:`~genesis.adapters.db.repository.Repository.attempts`), a rename or a forget changes the name of
every attempt of an identity, and retention deletes them by time. So a row holds the attempts one call of
``Repository.save_outcome`` stored for a run and one UTC day, as ``n`` little-endian records of
:data:`ATTEMPT_DTYPE` sorted by (seq, track id), byte-shuffled (the records' first bytes together, then their
second bytes ...: the high bytes of frame offsets, track ids, times and boxes are alike from one record to the
next) and zlib-compressed:

==========  =======  =============================================================================
field       type     value
==========  =======  =============================================================================
dseq        uint32   the attempt's frame minus the row's ``first_seq``
track_id    int64    the track
ts          float64  the attempt's time, exactly as ``RecognitionAttempt.ts``
x1 .. y2    float64  the face box, exact (the old columns were double precision)
face_score  float64  the face detector's score
distance    float64  the distance to the nearest enrolled face
name        uint16   index of the identity in the row's ``names`` (:data:`NO_NAME`: nobody)
==========  =======  =============================================================================

``names`` holds the row's identity names in index order, each between two :data:`NAME_SEP` (a name never holds a
control character: ``genesis.domain.names``), so that a rename or a forget finds the rows that name someone with a
LIKE and rewrites only those; ``named`` counts the attempts that name someone (retention keeps them
``sightings_days``, the others ``unknown_faces_days``); ``first_ts`` / ``last_ts`` are the smallest and largest
``ts``. The key is the first attempt (``first_seq``, ``first_track``): a retried batch gives the same key again,
and an attempt a stored row holds already is left out of a new row (:func:`unstored`), so a batch that repeats
part of an earlier one (a sequencer resumed after it was killed) stores only what is new.

This module owns the table: the codec (:func:`pack_row`, :func:`unpack`) and the statements that write, read,
rename and purge it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
from sqlalchemy import ColumnElement, Connection, delete, func, select, update

from genesis.adapters.db.names_column import SEP, holding, joined, split
from genesis.adapters.db.shuffle import compressed, decompressed
from genesis.adapters.db.tables import AttemptPack
from genesis.domain import RecognitionAttempt

ATTEMPT_DTYPE = np.dtype([("dseq", "<u4"), ("track_id", "<i8"), ("ts", "<f8"), ("x1", "<f8"), ("y1", "<f8"),
                          ("x2", "<f8"), ("y2", "<f8"), ("face_score", "<f8"), ("distance", "<f8"),
                          ("name", "<u2")])
"""One packed attempt (70 bytes before compression, no padding)."""
NO_NAME = 0xFFFF
"""``name`` of an attempt that matched nobody."""
NAME_SEP = SEP
"""Separates the names of ``attempt_packs.names`` (a names column: `genesis.adapters.db.names_column`)."""
_U32 = 2**32


@dataclass(frozen=True, slots=True)
class StoredAttempt:
    """An attempt read back, its values exactly as stored; the camera is the run's."""

    track_id: int
    seq: int
    ts: float
    box: tuple[float, float, float, float]
    face_score: float
    identity: str | None
    distance: float

    def attempt(self, camera_id: str) -> RecognitionAttempt:
        return RecognitionAttempt(camera_id=camera_id, track_id=self.track_id, seq=self.seq, ts=self.ts,
                                  face_box=self.box, face_score=self.face_score, identity=self.identity,
                                  distance=self.distance)

    @staticmethod
    def of(a: RecognitionAttempt) -> StoredAttempt:
        box = (float(a.face_box[0]), float(a.face_box[1]), float(a.face_box[2]), float(a.face_box[3]))
        return StoredAttempt(int(a.track_id), int(a.seq), float(a.ts), box, float(a.face_score), a.identity,
                             float(a.distance))


names_column = joined
"""``attempt_packs.names`` of the names in index order."""
names_of = split
"""The names of an ``attempt_packs.names`` value, in index order."""


def holding_name(name: str) -> ColumnElement[bool]:
    """SQL: the rows with attempts that name ``name``."""
    return cast("ColumnElement[bool]", holding(AttemptPack.names, name))


def unpack(data: bytes) -> np.ndarray[Any, Any]:
    """The records of a row (``dseq`` relative to the row's ``first_seq``)."""
    return decompressed(data, ATTEMPT_DTYPE)


def pack_row(run_id: str, attempts: Iterable[StoredAttempt], key: tuple[int, int] | None = None) -> dict[str, Any]:
    """The ``attempt_packs`` row of some attempts of a run (not empty; given twice at the same frame and track:
    the first kept), sorted by (seq, track id); ``key``: the (first_seq, first_track) to keep (default: the first
    attempt's), e.g. for what is left of a row after retention or a rename."""
    keyed: dict[tuple[int, int], StoredAttempt] = {}
    for a in attempts:
        keyed.setdefault((a.seq, a.track_id), a)
    if not keyed:
        raise ValueError("an attempt pack holds at least one attempt")
    ordered = [keyed[k] for k in sorted(keyed)]
    first_seq, first_track = (ordered[0].seq, ordered[0].track_id) if key is None else key
    names = sorted({a.identity for a in ordered if a.identity is not None})
    index = {n: i for i, n in enumerate(names)}
    arr = np.zeros(len(ordered), dtype=ATTEMPT_DTYPE)
    for i, a in enumerate(ordered):
        d = a.seq - first_seq
        if not 0 <= d < _U32:
            raise ValueError(f"attempt at frame {a.seq} is out of its row's range (first frame {first_seq})")
        arr[i] = (d, a.track_id, a.ts, *a.box, a.face_score, a.distance,
                  NO_NAME if a.identity is None else index[a.identity])
    ts = [a.ts for a in ordered]
    return {"run_id": run_id, "first_seq": first_seq, "first_track": first_track, "last_seq": ordered[-1].seq,
            "first_ts": min(ts), "last_ts": max(ts), "n": len(ordered),
            "named": sum(1 for a in ordered if a.identity is not None), "names": names_column(names),
            "data": compressed(arr)}


def stored_attempts(first_seq: int, names: str, data: bytes,
                    keep: Callable[[StoredAttempt], bool] | None = None) -> list[StoredAttempt]:
    """The attempts of a row in their order (by seq, track id); only those ``keep`` holds for, when given."""
    arr = unpack(data)
    who = names_of(names)
    out = []
    for r in arr.tolist():
        dseq, tid, ts, x1, y1, x2, y2, score, distance, name = r
        a = StoredAttempt(int(tid), int(dseq) + first_seq, float(ts), (x1, y1, x2, y2), float(score),
                          None if name == NO_NAME else who[name], float(distance))
        if keep is None or keep(a):
            out.append(a)
    return out


def attempt_keys(first_seq: int, data: bytes) -> list[tuple[int, int]]:
    """(frame, track id) of each attempt of a row, in its order (what identifies an attempt in a run)."""
    arr = unpack(data)
    return list(zip((arr["dseq"].astype(np.int64) + first_seq).tolist(), arr["track_id"].tolist(), strict=True))


# -- statements ---------------------------------------------------------------------------------


def unstored(conn: Connection, run_id: str, attempts: Sequence[RecognitionAttempt]) -> list[StoredAttempt]:
    """The attempts of a batch that no stored row of the run holds yet (by frame and track). The caller holds
    the run's write lock (``repository._lock_run_writes``), as for the points."""
    if not attempts:
        return []
    lo, hi = min(int(a.seq) for a in attempts), max(int(a.seq) for a in attempts)
    t = AttemptPack
    held: set[tuple[int, int]] = set()
    for first, data in conn.execute(select(t.first_seq, t.data).where(
            t.run_id == run_id, t.last_seq >= lo, t.first_seq <= hi)):
        held.update(attempt_keys(int(first), bytes(data)))
    return [StoredAttempt.of(a) for a in attempts if (int(a.seq), int(a.track_id)) not in held]


def batch_rows(conn: Connection, run_id: str, attempts: Sequence[RecognitionAttempt],
               day_of: Callable[[float], int]) -> list[dict[str, Any]]:
    """The rows a batch's attempts become: those no stored row holds yet, one row per UTC day (``day_of(ts)``)
    they fall in (as the points: a camera-day's rows are its own, and retention meets whole rows)."""
    by_day: dict[int, list[StoredAttempt]] = {}
    for a in unstored(conn, run_id, attempts):
        by_day.setdefault(day_of(a.ts), []).append(a)
    return [pack_row(run_id, held) for _, held in sorted(by_day.items())]


def run_attempts(conn: Connection, run_id: str) -> list[StoredAttempt]:
    """The attempts of a run by (seq, track id)."""
    t = AttemptPack
    out = [a for first, names, data in conn.execute(
        select(t.first_seq, t.names, t.data).where(t.run_id == run_id).order_by(t.first_seq, t.first_track))
        for a in stored_attempts(int(first), names, bytes(data))]
    out.sort(key=lambda a: (a.seq, a.track_id))  # rows' frame ranges may overlap (a resumed batch)
    return out


def rename(conn: Connection, old: str, new: str | None) -> int:
    """Every attempt that names ``old`` names ``new`` instead (None: nobody, for a forgotten identity); the
    attempts renamed. Only the rows whose ``names`` hold ``old`` are read and rewritten."""
    t = AttemptPack
    n = 0
    for run_id, first, track, names, data in conn.execute(select(
            t.run_id, t.first_seq, t.first_track, t.names, t.data).where(holding_name(old))).all():
        held = stored_attempts(int(first), names, bytes(data))
        moved = [replace(a, identity=new) if a.identity == old else a for a in held]
        n += sum(1 for a in held if a.identity == old)
        _rewrite(conn, run_id, int(first), int(track), moved)
    return n


def _rewrite(conn: Connection, run_id: str, first: int, track: int, kept: Sequence[StoredAttempt]) -> None:
    t = AttemptPack
    where = (t.run_id == run_id, t.first_seq == first, t.first_track == track)
    if not kept:
        conn.execute(delete(t).where(*where))
        return
    row = pack_row(run_id, kept, (first, track))
    conn.execute(update(t).where(*where).values(
        {k: v for k, v in row.items() if k not in ("run_id", "first_seq", "first_track")}))


def purge(conn: Connection, run_id: str, absolute: Callable[[Any], Any], to_abs: Callable[[float], float],
          named_cutoff: float, unnamed_cutoff: float) -> tuple[int, int]:
    """Retention of a run's attempts: those that name someone older than ``named_cutoff``, the others older
    than ``unnamed_cutoff`` (absolute times; ``absolute``: a column's absolute time in SQL, ``to_abs`` a value's).
    Rows with nothing left to keep are deleted in SQL; a row that holds attempts on both sides of a cutoff is
    rewritten with the rest (same key). Returns (named, unnamed) attempts removed."""
    t = AttemptPack
    old_named = (t.named == 0) | (absolute(t.last_ts) < named_cutoff)
    old_unnamed = (t.named == t.n) | (absolute(t.last_ts) < unnamed_cutoff)
    gone = (t.run_id == run_id, old_named, old_unnamed)
    named, total = conn.execute(select(func.coalesce(func.sum(t.named), 0), func.coalesce(func.sum(t.n), 0))
                                .where(*gone)).one()
    removed = [int(named), int(total) - int(named)]
    conn.execute(delete(t).where(*gone))
    some = (((t.named > 0) & (absolute(t.first_ts) < named_cutoff))
            | ((t.named < t.n) & (absolute(t.first_ts) < unnamed_cutoff)))
    for first, track, names, data in conn.execute(select(t.first_seq, t.first_track, t.names, t.data).where(
            t.run_id == run_id, some)).all():
        held = stored_attempts(int(first), names, bytes(data))
        old = {(a.seq, a.track_id) for a in held
               if to_abs(a.ts) < (unnamed_cutoff if a.identity is None else named_cutoff)}
        if not old:
            continue
        for a in held:
            removed[a.identity is None] += (a.seq, a.track_id) in old
        _rewrite(conn, run_id, int(first), int(track), [a for a in held if (a.seq, a.track_id) not in old])
    return removed[0], removed[1]


__all__ = [
    "ATTEMPT_DTYPE",
    "NAME_SEP",
    "NO_NAME",
    "StoredAttempt",
    "attempt_keys",
    "batch_rows",
    "holding_name",
    "names_column",
    "names_of",
    "pack_row",
    "purge",
    "rename",
    "run_attempts",
    "stored_attempts",
    "unpack",
    "unstored",
]
