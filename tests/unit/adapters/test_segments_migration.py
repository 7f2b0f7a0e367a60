"""Migration 0006 on an existing database: every stored track becomes one segment (0) of itself."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from genesis.adapters.db import Repository, TrackRecord
from tests.unit.adapters.test_repository import db_url  # noqa: F401  (the sqlite + postgresql fixture)


def test_existing_tracks_become_one_segment_each(db_url: str) -> None:  # noqa: F811
    with Repository(db_url, migrate=False) as repo:
        repo.upgrade("0003")  # the schema before identity segments
        now = datetime(2026, 11, 30, tzinfo=UTC)
        with repo.engine.begin() as conn:
            # The run as the code of that schema wrote it (today's start_run writes later columns too).
            conn.execute(text("INSERT INTO cameras (id, name, created_at) VALUES ('cam', 'cam', :at)"), {"at": now})
            conn.execute(text(
                "INSERT INTO runs (id, camera_id, source, status, started_at, frames, meta)"
                " VALUES ('r1', 'cam', 'video.mp4', 'running', :at, 0, '{}')"), {"at": now})
            for tid, name in ((1, "ana"), (2, None)):
                conn.execute(text(
                    "INSERT INTO tracks (run_id, track_id, camera_id, first_seq, last_seq, first_ts, last_ts, frames,"
                    " identity_id, identity_name, votes, attempts, best_distance)"
                    " VALUES ('r1', :tid, 'cam', 0, 9, 0.0, 0.9, 10, NULL, :name, 2, 3, 0.31)"),
                    {"tid": tid, "name": name})
            conn.execute(text(
                "INSERT INTO track_faces (run_id, track_id, camera_id, ts, model, dim, vector, distance, cluster_id,"
                " created_at) VALUES ('r1', 1, 'cam', 0.5, 'SFace', 2, :v, 0.31, NULL, :at)"),
                {"v": b"\x00" * 8, "at": now})

        repo.upgrade()
        assert repo.tracks("r1") == [
            TrackRecord("cam", 1, 0, 9, 0.0, 0.9, 10, "ana", 2, 3, 0.31, 0, None, None),
            TrackRecord("cam", 2, 0, 9, 0.0, 0.9, 10, None, 2, 3, 0.31, 0, None, None),
        ]
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT track_id, segment FROM track_faces")).all() == [(1, 0)]

        # A track can now hold several segments; re-saving a track with fewer removes the stale ones.
        repo.save_tracks("r1", [TrackRecord("cam", 1, 0, 4, 0.0, 0.4, 5, "ana", 2, 2, 0.3, 0, 0.2, "gap"),
                                TrackRecord("cam", 1, 8, 9, 0.8, 0.9, 2, "bo", 2, 2, 0.3, 1, 0.9, None)])
        assert [(t.track_id, t.segment, t.identity, t.end_reason) for t in repo.tracks("r1")] == [
            (1, 0, "ana", "gap"), (1, 1, "bo", None), (2, 0, None, None)]
        repo.save_tracks("r1", [TrackRecord("cam", 1, 0, 9, 0.0, 0.9, 10, "ana", 2, 3, 0.3, 0, 0.2, None)])
        assert [(t.track_id, t.segment) for t in repo.tracks("r1")] == [(1, 0), (2, 0)]

        # Downgrading keeps the first segment of each track.
        repo.save_tracks("r1", [TrackRecord("cam", 1, 0, 4, 0.0, 0.4, 5, "ana", 2, 2, 0.3, 0, 0.2, "gap"),
                                TrackRecord("cam", 1, 8, 9, 0.8, 0.9, 2, "bo", 2, 2, 0.3, 1, 0.9, None)])
        repo.downgrade("0003")
        with repo.engine.connect() as conn:
            rows = conn.execute(text("SELECT track_id, identity_name FROM tracks ORDER BY track_id")).all()
        assert rows == [(1, "ana"), (2, None)]
        repo.upgrade()
        assert [(t.track_id, t.segment) for t in repo.tracks("r1")] == [(1, 0), (2, 0)]
