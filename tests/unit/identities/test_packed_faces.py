"""Tracks that keep a face are packed a day later like the others (``retention.pack_after_days``); review and
clustering still name them: naming a packed segment takes its track out of its pack first, and a track unnamed
again is packed by the next upkeep. SQLite and PostgreSQL, real photos and the real face models."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from genesis.adapters.db import Repository, TrackRecord
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.db.tables import PassagePack, Track
from genesis.identities import review
from genesis.identities.store import IdentityStore
from genesis.identities.tracks import TrackFaceRecord, save_track_faces
from tests.unit.adapters.test_repository import db_url  # noqa: F401  (the sqlite + postgresql fixture)
from tests.unit.identities.test_review import STEMS, _cluster_of, faces  # noqa: F401  (the photos' faces)

THRESHOLD = 0.593


def _rows(repo: Repository) -> int:
    with repo.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Track)).scalar_one())


def _packs(repo: Repository) -> int:
    with repo.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(PassagePack)).scalar_one())


def test_a_packed_face_is_named_unnamed_and_packed_again(db_url: str,  # noqa: F811
                                                         faces: dict[str, tuple[np.ndarray, bytes]]) -> None:  # noqa: F811
    with Repository(db_url) as repo:
        repo.start_run("run-a", "door", "clip.mp4", {})
        repo.save_tracks("run-a", [TrackRecord("door", i + 1, 0, 10, float(i), float(i) + 1, 10, None, 0, 3, 0.7)
                                   for i in range(len(STEMS))])
        repo.finish_run("run-a", "finished", len(STEMS) * 10, {})
        store = IdentityStore(repo)
        save_track_faces(store, "run-a", [
            TrackFaceRecord("door", i + 1, float(i), "SFace", [float(x) for x in faces[s][0]], None, 0.7, faces[s][1])
            for i, s in enumerate(STEMS)], THRESHOLD)
        before = repo.tracks("run-a")
        upkeep = AnalyticsStore(repo)
        # A day later every track is packed, the six that keep a face among them.
        assert upkeep.pack_passages(repo.run("run-a").started_at.timestamp() + 86400)["tracks"] == 6  # type: ignore[union-attr]
        assert _rows(repo) == 0 and _packs(repo) == 1 and repo.tracks("run-a") == before
        with store._read() as db:  # what review reads of a packed track
            assert db.track_segments("run-a", 5) == [(0, None)] and db.segment_identity("run-a", 5, 0) == (None, None)
            assert db.segment_identity("run-a", 5, 1) is None and db.track_segments("run-a", 99) == []
        assert review.one_segment(store, "run-a", 5, None) == 0
        assert {f.track_id for f in review.cluster_faces(store, _cluster_of(repo, 1))} == {1, 2}

        # Assigning one face takes its track out of the pack; the others stay packed.
        review.assign_segment(store, "run-a", 3, 0, "John", "test", create=True)
        assert _rows(repo) == 1 and _packs(repo) == 1
        named = {t.track_id: t.identity for t in repo.tracks("run-a")}
        assert named == {t.track_id: "John" if t.track_id == 3 else None for t in before}

        # Naming a cluster takes its tracks out together (the pack written again once).
        done = review.name_cluster(store, _cluster_of(repo, 1), "Eric", "test")
        assert _rows(repo) == 3 and _packs(repo) == 1
        assert {t.track_id: t.identity for t in repo.tracks("run-a")} == {1: "Eric", 2: "Eric", 3: "John", 4: None,
                                                                          5: None, 6: None}
        assert [(t.track_id, t.first_seq, t.last_seq, t.frames) for t in repo.tracks("run-a")] == [
            (t.track_id, t.first_seq, t.last_seq, t.frames) for t in before]
        # Named tracks stay rows at the next upkeep; undone, they are packed again.
        assert upkeep.pack_passages(repo.run("run-a").started_at.timestamp() + 86400)["tracks"] == 0  # type: ignore[union-attr]
        review.undo(store, done.entry, "test")
        assert {t.track_id: t.identity for t in repo.tracks("run-a")}[1] is None
        assert upkeep.pack_passages(repo.run("run-a").started_at.timestamp() + 86400)["tracks"] == 2  # type: ignore[union-attr]
        assert _rows(repo) == 1 and {t.track_id: t.identity for t in repo.tracks("run-a")} == {
            t.track_id: "John" if t.track_id == 3 else None for t in before}

        # "Not this person" on the last named one, then undo on a packed segment: the name comes back as a row.
        done = review.reject_segment(store, "run-a", 3, 0, "test")
        assert upkeep.pack_passages(repo.run("run-a").started_at.timestamp() + 86400)["tracks"] == 1  # type: ignore[union-attr]
        assert _rows(repo) == 0
        review.undo(store, done.entry, "test")
        assert _rows(repo) == 1 and {t.track_id: t.identity for t in repo.tracks("run-a")}[3] == "John"


def test_a_name_given_while_the_upkeep_packs_the_run_is_not_lost(db_url: str) -> None:  # noqa: F811
    """Naming a segment and packing its run at once (PostgreSQL: two connections): the packer waits for the name's
    transaction (the run's passage lock) and then leaves the named track a row. Without the lock it would have read
    the track unnamed and deleted its rows, the name with them."""
    import threading
    from datetime import UTC, datetime

    from genesis.adapters.db.identities import IdentityRows

    with Repository(db_url) as repo:
        repo.start_run("run-b", "door", "clip.mp4", {})
        repo.save_tracks("run-b", [TrackRecord("door", t, 0, 10, float(t), float(t) + 1, 10, None, 0, 3, 0.7)
                                   for t in (1, 2, 3)])
        before = repo.run("run-b").started_at.timestamp() + 86400  # type: ignore[union-attr]
        packed: dict[str, int] = {}
        with repo.engine.begin() as conn:  # review names track 2, not committed yet
            rows = IdentityRows(conn)
            rows.insert_identity("Ana", datetime.now(UTC))
            ident = rows.identity_id("Ana")
            rows.set_segment_identity("run-b", 2, 0, ident, "Ana")
            upkeep = threading.Thread(target=lambda: packed.update(AnalyticsStore(repo).pack_passages(before)))
            upkeep.start()
            upkeep.join(1.0)
            if repo.dialect == "postgresql":
                assert upkeep.is_alive()  # waiting for the name's transaction
        upkeep.join(30)
        assert not upkeep.is_alive()
        assert packed["tracks"] == 2
        assert {t.track_id: t.identity for t in repo.tracks("run-b")} == {1: None, 2: "Ana", 3: None}
