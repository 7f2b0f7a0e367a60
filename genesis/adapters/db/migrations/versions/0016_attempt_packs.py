"""recognition attempts packed per batch: recognition_attempts (a row an attempt) becomes attempt_packs

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

Hand-written (see 0001). ``recognition_attempts`` (one row per face searched on a track at one frame, about 285
bytes an attempt on PostgreSQL with its key) is replaced by ``attempt_packs``: the attempts of a stored batch,
sorted by (seq, track id) as 70-byte little-endian records, byte-shuffled and zlib-compressed
(``genesis.adapters.db.attempts``; the layout is frozen here: a migration must not change with later code):

    dseq uint32 (frame - first_seq), track_id int64, ts x1 y1 x2 y2 face_score distance float64,
    name uint16 (index into the row's names; 0xFFFF: nobody)

with ``first_seq`` / ``last_seq``, ``first_ts`` / ``last_ts``, ``n``, ``named`` (attempts that name someone) and
``names`` (each name between two U+001F) beside them, keyed by (run, first_seq, first_track).

The old rows do not say which batch wrote them: each run's attempts are read in (seq, track) order and cut into
rows of at least ``CHUNK`` attempts, a row always ending at the end of a frame. Values are carried exactly.
Downgrade unpacks every row back into ``recognition_attempts``.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")  # where Alembic says which migration runs

CHUNK = 25
"""A converted row closes at the first frame end once it holds this many attempts (a busy stored batch of 25
frames holds about 15)."""
READ = 5000
_DTYPE = np.dtype([("dseq", "<u4"), ("track_id", "<i8"), ("ts", "<f8"), ("x1", "<f8"), ("y1", "<f8"),
                   ("x2", "<f8"), ("y2", "<f8"), ("face_score", "<f8"), ("distance", "<f8"), ("name", "<u2")])
_NO_NAME = 0xFFFF
_SEP = "\x1f"
_COLUMNS = ("seq", "track_id", "ts", "x1", "y1", "x2", "y2", "face_score", "distance", "identity_name")


def _packs_table() -> None:
    op.create_table(
        "attempt_packs",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("first_track", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("first_ts", sa.Double(), nullable=False),
        sa.Column("last_ts", sa.Double(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("named", sa.Integer(), nullable=False),
        sa.Column("names", sa.String(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_attempt_packs_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "first_seq", "first_track", name=op.f("pk_attempt_packs")),
    )
    # The writer looks up the rows a new batch may repeat attempts of: the recent rows of the run, by last frame.
    op.create_index(op.f("ix_attempt_packs_run_id_last_seq"), "attempt_packs", ["run_id", "last_seq"])


def _attempts_table() -> None:
    op.create_table(
        "recognition_attempts",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        *[sa.Column(n, sa.Double(), nullable=False) for n in ("x1", "y1", "x2", "y2")],
        sa.Column("face_score", sa.Double(), nullable=False),
        sa.Column("identity_name", sa.String(), nullable=True),
        sa.Column("distance", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_recognition_attempts_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "track_id", "seq", name=op.f("pk_recognition_attempts")),
    )


def _pack(rows: list[tuple[Any, ...]], run_id: str) -> dict[str, Any]:
    """An ``attempt_packs`` row of (seq, track_id, ts, x1, y1, x2, y2, face_score, distance, name) in
    (seq, track) order."""
    first = int(rows[0][0])
    names = sorted({str(r[9]) for r in rows if r[9] is not None})
    index = {n: i for i, n in enumerate(names)}
    arr = np.array([(int(seq) - first, int(tid), float(ts), float(x1), float(y1), float(x2), float(y2), float(score),
                     float(distance), _NO_NAME if name is None else index[str(name)])
                    for seq, tid, ts, x1, y1, x2, y2, score, distance, name in rows], dtype=_DTYPE)
    raw = arr.view(np.uint8).reshape(len(rows), _DTYPE.itemsize)
    ts = [float(r[2]) for r in rows]
    return {"run_id": run_id, "first_seq": first, "first_track": int(rows[0][1]), "last_seq": int(rows[-1][0]),
            "first_ts": min(ts), "last_ts": max(ts), "n": len(rows),
            "named": sum(1 for r in rows if r[9] is not None),
            "names": "".join(_SEP + n for n in names) + _SEP if names else "",
            "data": zlib.compress(np.ascontiguousarray(raw.T).tobytes(), 6)}


def _chunks(bind: sa.Connection, run_id: str) -> Iterator[dict[str, Any]]:
    """The packed rows of a run's old attempts, in (seq, track) order, streamed ``READ`` rows at a time by one
    ordered query (one sort of the run's rows: the key is (run, track, seq), so reading pages of them in frame
    order would sort the rest of the run again for each page, a time that grows with the square of a long run's
    attempts); a row closes at the end of a frame once it holds ``CHUNK`` attempts."""
    held: list[tuple[Any, ...]] = []
    for r in bind.execute(sa.text(f"SELECT {', '.join(_COLUMNS)} FROM recognition_attempts WHERE run_id = :r "
                                  "ORDER BY seq, track_id").execution_options(stream_results=True, yield_per=READ),
                          {"r": run_id}):
        if len(held) >= CHUNK and int(r[0]) != int(held[-1][0]):
            yield _pack(held, run_id)
            held = []
        held.append(tuple(r))
    if held:
        yield _pack(held, run_id)


def upgrade() -> None:
    bind = op.get_bind()
    _packs_table()
    table = sa.table("attempt_packs", *(sa.column(c) for c in (
        "run_id", "first_seq", "first_track", "last_seq", "first_ts", "last_ts", "n", "named", "names")),
        sa.column("data", sa.LargeBinary()))
    runs = [(str(r), int(n)) for r, n in bind.execute(sa.text(
        "SELECT run_id, count(*) FROM recognition_attempts GROUP BY run_id ORDER BY run_id"))]
    total = sum(n for _, n in runs)
    done = 0
    t0 = time.monotonic()
    pending: list[dict[str, Any]] = []
    for i, (run_id, n) in enumerate(runs, start=1):
        for row in _chunks(bind, run_id):
            pending.append(row)
            if len(pending) >= 500:
                bind.execute(sa.insert(table), pending)
                pending.clear()
        done += n
        log.info("0016: packed the recognition attempts of run %s (%d of %d runs; %d of %d attempts, %.0f s)",
                 run_id, i, len(runs), done, total, time.monotonic() - t0)
    if pending:
        bind.execute(sa.insert(table), pending)
    op.drop_table("recognition_attempts")


def downgrade() -> None:
    bind = op.get_bind()
    _attempts_table()
    table = sa.table("recognition_attempts", sa.column("run_id"), *(sa.column(c) for c in _COLUMNS))
    runs = [str(r) for (r,) in bind.execute(sa.text("SELECT DISTINCT run_id FROM attempt_packs ORDER BY run_id"))]
    pending: list[dict[str, Any]] = []
    for run_id in runs:
        for first, names, data in bind.execute(sa.text(
                "SELECT first_seq, names, data FROM attempt_packs WHERE run_id = :r ORDER BY first_seq, first_track"),
                {"r": run_id}).all():
            raw = zlib.decompress(bytes(data))
            n = len(raw) // _DTYPE.itemsize
            arr = np.ascontiguousarray(np.frombuffer(raw, dtype=np.uint8).reshape(_DTYPE.itemsize, n).T).view(_DTYPE)
            who = str(names).split(_SEP)[1:-1] if names else []
            for r in arr.reshape(n).tolist():
                dseq, tid, ts, x1, y1, x2, y2, score, distance, name = r
                pending.append({"run_id": run_id, "seq": int(first) + int(dseq), "track_id": int(tid), "ts": ts,
                                "x1": x1, "y1": y1, "x2": x2, "y2": y2, "face_score": score, "distance": distance,
                                "identity_name": None if name == _NO_NAME else who[name]})
            if len(pending) >= READ:
                bind.execute(sa.insert(table), pending)
                pending.clear()
    if pending:
        bind.execute(sa.insert(table), pending)
    op.drop_table("attempt_packs")
