"""What the database holds of a run's sightings now that it keeps passages, not frames (issue 21)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, create_engine, text

from genesis.adapters.db.points import stored_points


def point_rows(conn: Connection, where: str = "", **params: Any) -> list[tuple[str, Any]]:
    """(run, point) of every stored trajectory point (``point_batches`` unpacked), of the packed rows ``where``
    (SQL on ``point_batches``) selects; the point has ``track_id``, ``seq``, ``ts``, ``box``, ``score`` and
    ``frames``."""
    rows = conn.execute(text(f"SELECT run_id, first_seq, points FROM point_batches {where}"), params)
    return [(str(r), p) for r, first, blob in rows for p in stored_points(int(first), bytes(blob))]


def point_frames(conn: Connection) -> int:
    """The sightings every stored trajectory point stands for (the sum of their ``frames``)."""
    return sum(p.frames for _, p in point_rows(conn))


def stored_sightings(url: str, finished: bool = False) -> int:
    """The sightings the stored rows stand for: the foot points of the heatmap grids (every sighting of every
    stored batch). ``finished``: the run has ended, so the ``frames`` of the trajectory points must add up
    to the same number too, or this is -1 (a lost or doubled batch shows either way)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            points = point_frames(conn)
            heat = int(conn.execute(text("SELECT coalesce(sum(points), 0) FROM heatmap_cells")).scalar_one())
    finally:
        engine.dispose()
    return heat if not finished or points == heat else -1
