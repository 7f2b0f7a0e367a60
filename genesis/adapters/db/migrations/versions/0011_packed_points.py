"""trajectory points packed per batch: track_points (a row a point) becomes point_batches

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

Hand-written (see 0001). ``track_points`` (one row per sampled trajectory point, about 220 bytes a point on
PostgreSQL with its key) is replaced by ``point_batches``: the points one stored batch holds for a run and a UTC
day, packed as 44-byte little-endian records sorted by (seq, track id) (``genesis.adapters.db.points``; the record
layout is frozen here: a migration must not change with later code):

    dseq uint32 (frame - first_seq), track_id int64, ts float64, x1 y1 x2 y2 score float32, frames uint32

with ``first_seq`` / ``last_seq``, ``first_ts`` / ``last_ts`` (smallest / largest ts) and ``n`` beside them, keyed by
(run, first_seq, first_track, day): the first point's frame and track (a batch's exit points carry older frames,
so the first frame alone is not unique).
On PostgreSQL the table is partitioned by ``day`` like the old one; the partitions the converted rows need are
created here.

The old rows do not say which batch wrote them: each run's points are read per day in (seq, track) order and cut
into rows of at least ``CHUNK`` points, a row always ending at the end of a frame (so a frame's points are in one
row). Values are carried exactly (the old ``real`` columns were single precision already). Downgrade unpacks every
row back into ``track_points``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

log = logging.getLogger("alembic.runtime.migration")  # where Alembic says which migration runs

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 100
"""A converted row closes at the first frame end once it holds this many points (a busy stored batch of 25
frames holds about 90)."""
READ = 5000
_DTYPE = np.dtype([("dseq", "<u4"), ("track_id", "<i8"), ("ts", "<f8"), ("x1", "<f4"), ("y1", "<f4"),
                   ("x2", "<f4"), ("y2", "<f4"), ("score", "<f4"), ("frames", "<u4")])
_POINT_COLUMNS = ("run_id", "seq", "track_id", "day", "ts", "x1", "y1", "x2", "y2", "score", "frames")


def _batches_table(pg: bool) -> None:
    part: dict[str, Any] = {"postgresql_partition_by": "RANGE (day)"} if pg else {}
    op.create_table(
        "point_batches",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("first_track", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("first_ts", sa.Double(), nullable=False),
        sa.Column("last_ts", sa.Double(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("points", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_point_batches_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "first_seq", "first_track", "day", name=op.f("pk_point_batches")),
        **part,
    )
    # The writer looks up the rows a new batch may repeat points of (frames up to its last, ending at or after
    # its first): the recent rows of the run, by their last frame.
    op.create_index(op.f("ix_point_batches_run_id_last_seq"), "point_batches", ["run_id", "last_seq"])


def _points_table(pg: bool) -> None:
    part: dict[str, Any] = {"postgresql_partition_by": "RANGE (day)"} if pg else {}
    op.create_table(
        "track_points",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        *[sa.Column(n, sa.REAL(), nullable=False) for n in ("x1", "y1", "x2", "y2", "score")],
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_track_points_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "seq", "track_id", "day", name=op.f("pk_track_points")),
        **part,
    )


def _create_days(bind: sa.Connection, table: str, days: set[int]) -> None:
    if bind.dialect.name == "postgresql" and days:
        from genesis.adapters.db.partitions import create_days

        create_days(bind, days, (table,))


def _pack(points: list[tuple[Any, ...]], run_id: str, day: int) -> dict[str, Any]:
    """A ``point_batches`` row of (seq, track_id, ts, x1, y1, x2, y2, score, frames) in (seq, track) order."""
    first = int(points[0][0])
    arr = np.zeros(len(points), dtype=_DTYPE)
    for i, (seq, tid, ts, x1, y1, x2, y2, score, frames) in enumerate(points):
        arr[i] = (int(seq) - first, int(tid), float(ts), float(x1), float(y1), float(x2), float(y2), float(score),
                  int(frames))
    ts = [float(p[2]) for p in points]
    return {"run_id": run_id, "first_seq": first, "first_track": int(points[0][1]), "day": day,
            "last_seq": int(points[-1][0]), "first_ts": min(ts),
            "last_ts": max(ts), "n": len(points), "points": arr.tobytes()}


def _frames(bind: sa.Connection, run_id: str, day: int) -> Iterator[list[tuple[Any, ...]]]:
    """The old points of a run and day in (seq, track) order, whole frames at a time, read ``READ`` rows at a
    time by key (nothing held open while the packed rows are written)."""
    cols = "seq, track_id, ts, x1, y1, x2, y2, score, frames FROM track_points WHERE run_id = :r AND day = :d"
    after: int | None = None
    while True:
        where = "" if after is None else " AND seq > :a"
        rows = [tuple(r) for r in bind.execute(sa.text(f"SELECT {cols}{where} ORDER BY seq, track_id LIMIT {READ}"),
                                               {"r": run_id, "d": day, "a": after})]
        if not rows:
            return
        if len(rows) < READ:
            yield rows
            return
        last = int(rows[-1][0])
        whole = [r for r in rows if int(r[0]) != last]
        if not whole:  # one frame of READ points or more: that frame alone
            whole = [tuple(r) for r in bind.execute(sa.text(f"SELECT {cols} AND seq = :a ORDER BY track_id"),
                                                    {"r": run_id, "d": day, "a": last})]
        yield whole
        after = int(whole[-1][0])


def _chunks(bind: sa.Connection, run_id: str, day: int) -> Iterator[dict[str, Any]]:
    """The packed rows of a run's old points of one day: in (seq, track) order, a row closing at the end of a
    frame once it holds ``CHUNK`` points."""
    held: list[tuple[Any, ...]] = []
    for rows in _frames(bind, run_id, day):
        for r in rows:
            if len(held) >= CHUNK and int(r[0]) != int(held[-1][0]):
                yield _pack(held, run_id, day)
                held = []
            held.append(r)
    if held:
        yield _pack(held, run_id, day)


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    _batches_table(pg)
    keys = [(str(r), int(d)) for r, d in bind.execute(sa.text(
        "SELECT DISTINCT run_id, day FROM track_points ORDER BY run_id, day"))]
    _create_days(bind, "point_batches", {d for _, d in keys})
    batches = sa.table("point_batches", *(sa.column(c) for c in (
        "run_id", "first_seq", "first_track", "day", "last_seq", "first_ts", "last_ts", "n")),
        sa.column("points", sa.LargeBinary()))
    pending: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for i, (run_id, day) in enumerate(keys, start=1):
        for row in _chunks(bind, run_id, day):
            pending.append(row)
            if len(pending) >= 500:
                bind.execute(sa.insert(batches), pending)
                pending.clear()
        log.info("0011: packed the trajectory points of run %s, day %d (%d of %d run-days, %.0f s)", run_id, day, i,
                 len(keys), time.monotonic() - t0)
    if pending:
        bind.execute(sa.insert(batches), pending)
    op.drop_table("track_points")


def downgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    _points_table(pg)
    days = {int(d) for (d,) in bind.execute(sa.text("SELECT DISTINCT day FROM point_batches"))}
    _create_days(bind, "track_points", days)
    points = sa.table("track_points", *(sa.column(c) for c in _POINT_COLUMNS))
    runs = [str(r) for (r,) in bind.execute(sa.text("SELECT DISTINCT run_id FROM point_batches ORDER BY run_id"))]
    pending: list[dict[str, Any]] = []
    for run_id, first, day, blob in (row for r in runs for row in bind.execute(sa.text(
            "SELECT run_id, first_seq, day, points FROM point_batches WHERE run_id = :r ORDER BY first_seq, day"),
            {"r": r}).all()):
        arr = np.frombuffer(bytes(blob), dtype=_DTYPE)
        for r in arr:
            # float(np.float32): the double nearest the stored single, which a ``real`` column stores exactly
            pending.append({"run_id": run_id, "seq": int(first) + int(r["dseq"]), "track_id": int(r["track_id"]),
                            "day": int(day), "ts": float(r["ts"]), "x1": float(r["x1"]), "y1": float(r["y1"]),
                            "x2": float(r["x2"]), "y2": float(r["y2"]), "score": float(r["score"]),
                            "frames": int(r["frames"])})
        if len(pending) >= READ:
            bind.execute(sa.insert(points), pending)
            pending.clear()
    if pending:
        bind.execute(sa.insert(points), pending)
    op.drop_table("point_batches")
