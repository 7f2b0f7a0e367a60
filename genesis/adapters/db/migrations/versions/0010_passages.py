"""passages, not frames: sightings become sampled track points and hourly heatmap grids

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Hand-written (see 0001). ``sightings`` (one row per person per frame) is replaced by

* ``track_points``: each track's trajectory sampled as the pipeline now samples it
  (``genesis.stages.path`` with the default ``analytics.path`` settings: the first sighting, at most
  one point a second, every zone event or line crossing, every change of direction, the last
  sighting), each point with the number of sightings it stands for;
* ``heatmap_cells``: every sighting's foot point summed per run and hour on the default 8 px grid
  (``analytics.heatmap_cell_px``; runs without a recorded frame size get none);
* the run's ``peak_in_frame`` (most people in one frame) in its meta, which the report reads.

On PostgreSQL both new tables are partitioned by ``day`` (``genesis.adapters.db.partitions``); the
partitions the converted rows need are created here. The conversion reads each run's sightings in
frame order, streamed. Downgrade turns the points back into sightings (the frames between points are
gone: what was sampled away is not restored) and drops the grids.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

log = logging.getLogger("alembic.runtime.migration")  # where Alembic says which migration runs

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CELL_PX = 8
BATCH = 5000


def _box(kind: Any) -> list[sa.Column[Any]]:
    return [sa.Column(n, kind, nullable=False) for n in ("x1", "y1", "x2", "y2")]


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    part: dict[str, Any] = {"postgresql_partition_by": "RANGE (day)"} if pg else {}
    op.create_table(
        "track_points",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        *_box(sa.REAL()),
        sa.Column("score", sa.REAL(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_track_points_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "seq", "track_id", "day", name=op.f("pk_track_points")),
        **part,
    )
    op.create_table(
        "heatmap_cells",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("cell_px", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("cells", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_heatmap_cells_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "hour", "first_seq", "day", name=op.f("pk_heatmap_cells")),
        **part,
    )
    op.create_index(op.f("ix_heatmap_cells_camera_id_hour"), "heatmap_cells", ["camera_id", "hour"])
    _convert(bind)
    op.drop_index(op.f("ix_sightings_run_id_seq"), table_name="sightings")
    op.drop_table("sightings")


def _frames(bind: sa.Connection, run_id: str) -> Iterator[list[tuple[Any, ...]]]:
    """The run's sightings frame by frame, in frame order (streamed)."""
    rows = bind.execute(
        sa.text("SELECT track_id, seq, ts, x1, y1, x2, y2, score FROM sightings WHERE run_id = :r "
                "ORDER BY seq, track_id").execution_options(stream_results=True, yield_per=BATCH), {"r": run_id})
    frame: list[tuple[Any, ...]] = []
    for r in rows:
        if frame and frame[0][1] != r[1]:
            yield frame
            frame = []
        frame.append(tuple(r))
    if frame:
        yield frame


def _convert(bind: sa.Connection) -> None:
    runs = list(bind.execute(sa.text("SELECT id, camera_id, started_at, meta FROM runs ORDER BY started_at, id")))
    t0 = time.monotonic()
    for i, (run_id, camera, raw_started, raw_meta) in enumerate(runs, start=1):
        meta = raw_meta if isinstance(raw_meta, dict) else ({} if raw_meta is None else _json(raw_meta))
        started = datetime.fromisoformat(raw_started) if isinstance(raw_started, str) else raw_started
        start = (started if started.tzinfo else started.replace(tzinfo=UTC)).timestamp()
        _convert_run(bind, str(run_id), str(camera), start, meta)
        log.info("0010: turned the sightings of run %s into trajectory points and heat rows (%d of %d runs, %.0f s)",
                 run_id, i, len(runs), time.monotonic() - t0)


def _convert_run(bind: sa.Connection, run_id: str, camera: str, start: float, meta: dict[str, Any]) -> None:
    # The grid of today's pipeline and a frozen copy of its sampler (genesis.stages.path with the default
    # settings: tests/unit/adapters/test_passages.py checks that they agree), so converted runs read like new ones.
    from genesis.adapters.db.partitions import create_days
    from genesis.adapters.db.tables import UTCDateTime
    from genesis.domain import PathPoint, Sighting
    from genesis.domain.heat import count_feet, encode_cells

    pg = bind.dialect.name == "postgresql"
    points_t = sa.table("track_points", *(sa.column(c) for c in (
        "run_id", "seq", "track_id", "day", "ts", "x1", "y1", "x2", "y2", "score", "frames")))
    heat_t = sa.table("heatmap_cells", sa.column("hour", UTCDateTime()), *(sa.column(c) for c in (
        "run_id", "first_seq", "day", "camera_id", "width", "height", "cell_px", "points", "cells")))
    width, height = int(meta.get("width", 0) or 0), int(meta.get("height", 0) or 0)
    marks: dict[int, set[int]] = {}
    for seq, tid in bind.execute(sa.text(
            "SELECT seq, track_id FROM zone_events WHERE run_id = :r UNION "
            "SELECT seq, track_id FROM line_crossings WHERE run_id = :r"), {"r": run_id}):
        marks.setdefault(int(seq), set()).add(int(tid))
    cuts: dict[int, list[int]] = {}
    for tid, first_seq in bind.execute(sa.text(
            "SELECT track_id, first_seq FROM tracks WHERE run_id = :r ORDER BY track_id, segment"), {"r": run_id}):
        cuts.setdefault(int(tid), []).append(int(first_seq))
    sampler = _Sampler()
    pending: list[dict[str, Any]] = []
    grids: dict[int, tuple[Any, int]] = {}  # hour -> (grid, points)
    days: set[int] = set()
    peak = 0

    def absolute(ts: float) -> float:
        return ts if ts >= 1e9 else start + ts

    def need_day(day: int) -> None:
        if pg and day not in days:
            create_days(bind, [day], ("track_points", "heatmap_cells"))  # the tables of this revision
            days.add(day)

    def flush(points: list[PathPoint], last: bool = False) -> None:
        for p in points:
            day = int(absolute(p.ts) // 86400)
            need_day(day)
            pending.append({"run_id": run_id, "track_id": p.track_id, "seq": p.seq, "day": day, "ts": p.ts,
                            "x1": p.box[0], "y1": p.box[1], "x2": p.box[2], "y2": p.box[3], "score": p.score,
                            "frames": p.frames})
        if pending and (last or len(pending) >= BATCH):
            bind.execute(sa.insert(points_t), pending)
            pending.clear()

    for frame in _frames(bind, run_id):
        seq, ts = int(frame[0][1]), float(frame[0][2])
        sightings = [Sighting(camera, int(t), int(q), float(x), (float(a), float(b), float(c), float(d)), float(sc))
                     for t, q, x, a, b, c, d, sc in frame]
        peak = max(peak, len(sightings))
        segments = {s.track_id: sum(1 for f in cuts.get(s.track_id, [seq]) if f <= seq) or 1 for s in sightings}
        flush(sampler.sample(ts, sightings, marks.get(seq, set()), segments))
        if width > 0 and height > 0:
            hour = int(absolute(ts) // 3600) * 3600
            grid, n = grids.get(hour, (None, 0))
            add = count_feet((s.box for s in sightings), width, height, CELL_PX)
            grids[hour] = (add if grid is None else grid + add, n + len(sightings))
    flush(sampler.tail(), last=True)
    for hour, (grid, n) in sorted(grids.items()):
        need_day(hour // 86400)
        bind.execute(sa.insert(heat_t), [{
            "run_id": run_id, "hour": datetime.fromtimestamp(hour, UTC), "first_seq": -1, "day": hour // 86400,
            "camera_id": camera, "width": width, "height": height, "cell_px": CELL_PX, "points": n,
            "cells": encode_cells(grid)}])
    if "peak_in_frame" not in meta:
        runs_t = sa.table("runs", sa.column("id"), sa.column("meta", sa.JSON().with_variant(
            postgresql.JSONB(), "postgresql")))
        bind.execute(sa.update(runs_t).where(runs_t.c.id == run_id).values(meta={**meta, "peak_in_frame": peak}))


class _Sampler:
    """The trajectory sampling of ``genesis.stages.path`` as of this migration (1 s, 45 degrees, 16 px; the
    first and last sighting, events, turns), frozen here: a migration must not change with later code."""

    INTERVAL_S, TURN_DEG, MIN_MOVE_PX, FORGET_S = 1.0, 45.0, 16.0, 120.0

    def __init__(self) -> None:
        # track -> [point ts, step x, step y, segments, pending, ref dx, ref dy, last sighting]
        self.tracks: dict[int, list[Any]] = {}
        self.next_forget: float | None = None

    def sample(self, ts: float, sightings: list[Any], marked: set[int], segments: dict[int, int]) -> list[Any]:
        from genesis.domain import PathPoint

        out = []
        for s in sightings:
            tid = int(s.track_id)
            x, y = (s.box[0] + s.box[2]) / 2.0, s.box[3]
            nseg = segments.get(tid, 1)
            point = PathPoint(s.camera_id, tid, s.seq, s.ts, s.box, s.score, 1)
            st = self.tracks.get(tid)
            if st is None:
                self.tracks[tid] = [s.ts, x, y, nseg, 0, 0.0, 0.0, point]
                out.append(point)
                continue
            st[4] += 1
            st[7] = point
            dx, dy = x - st[1], y - st[2]
            turn = False
            if math.hypot(dx, dy) >= self.MIN_MOVE_PX:
                if st[5] == 0.0 and st[6] == 0.0:
                    st[5], st[6] = dx, dy
                elif _turned(st[5], st[6], dx, dy, self.TURN_DEG):
                    turn = True
                    st[5], st[6] = dx, dy
                st[1], st[2] = x, y
            if turn or nseg != st[3] or s.ts - st[0] >= self.INTERVAL_S - 1e-9 or tid in marked:
                out.append(PathPoint(s.camera_id, tid, s.seq, s.ts, s.box, s.score, st[4]))
                st[0], st[3], st[4] = s.ts, nseg, 0
        if self.next_forget is None or ts >= self.next_forget:  # tracks gone for FORGET_S: their exits
            out += self.tail(sorted(k for k, v in self.tracks.items() if ts - v[7].ts > self.FORGET_S))
            self.next_forget = ts + self.FORGET_S / 4
        return out

    def tail(self, track_ids: list[int] | None = None) -> list[Any]:
        from genesis.domain import PathPoint

        out = []
        for tid in sorted(self.tracks) if track_ids is None else track_ids:
            st = self.tracks.pop(tid)
            p = st[7]
            if st[4]:
                out.append(PathPoint(p.camera_id, p.track_id, p.seq, p.ts, p.box, p.score, st[4]))
        return out


def _turned(dx0: float, dy0: float, dx1: float, dy1: float, tolerance_deg: float) -> bool:
    n0, n1 = math.hypot(dx0, dy0), math.hypot(dx1, dy1)
    if n0 == 0.0 or n1 == 0.0:
        return False
    cos = max(-1.0, min(1.0, (dx0 * dx1 + dy0 * dy1) / (n0 * n1)))
    return math.degrees(math.acos(cos)) > tolerance_deg


def _json(raw: Any) -> dict[str, Any]:
    import json

    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return value if isinstance(value, dict) else {}


def downgrade() -> None:
    op.create_table(
        "sightings",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        *_box(sa.Double()),
        sa.Column("score", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_sightings_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "track_id", "seq", name=op.f("pk_sightings")),
    )
    op.create_index(op.f("ix_sightings_run_id_seq"), "sightings", ["run_id", "seq"])
    op.execute("INSERT INTO sightings (run_id, track_id, seq, ts, x1, y1, x2, y2, score) "
               "SELECT run_id, track_id, seq, ts, x1, y1, x2, y2, score FROM track_points")
    op.drop_index(op.f("ix_heatmap_cells_camera_id_hour"), table_name="heatmap_cells")
    op.drop_table("heatmap_cells")
    op.drop_table("track_points")
