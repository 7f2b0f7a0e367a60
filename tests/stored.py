"""What the database holds of a run's sightings now that it keeps passages, not frames (issue 21)."""

from __future__ import annotations

from sqlalchemy import create_engine, text


def stored_sightings(url: str, finished: bool = False) -> int:
    """The sightings the stored rows stand for: the foot points of the heatmap grids (every sighting of every
    stored batch). ``finished``: the run has ended, so the ``frames`` of the trajectory points must add up
    to the same number too, or this is -1 (a lost or doubled batch shows either way)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            points = int(conn.execute(text("SELECT coalesce(sum(frames), 0) FROM track_points")).scalar_one())
            heat = int(conn.execute(text("SELECT coalesce(sum(points), 0) FROM heatmap_cells")).scalar_one())
    finally:
        engine.dispose()
    return heat if not finished or points == heat else -1
