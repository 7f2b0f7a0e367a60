"""The console's identities library (`genesis.identities.review`) on SQLite (the embedded mode's
database), real photos and the real face models: track face crops kept encrypted, a cluster's faces
best first, merging clusters, assigning a face to a new and an existing identity (the gallery then
knows it), the review queue (unrecognised and low-margin faces), and the audit log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from genesis.adapters.db import Repository, TrackRecord
from genesis.adapters.db.tables import utcnow
from genesis.config import Settings
from genesis.identities import review
from genesis.identities.crops import as_jpeg, for_storage
from genesis.identities.crypto import KEY_ENV, BiometricCipher, is_encrypted
from genesis.identities.store import IdentityError, IdentityStore
from genesis.identities.tracks import TrackFaceRecord, save_track_faces, unknowns
from genesis.pipeline.model_loader import load_face_models
from genesis.services.enroll import read_image
from genesis.stages.recognize import face_crop_jpeg

STEMS = ("clapton-1", "clapton-2", "lennon-1", "lennon-2", "adams", "carell")


@pytest.fixture(scope="module")
def faces(data_dir: Path, models_dir: Path) -> dict[str, tuple[np.ndarray, bytes]]:
    """stem -> (SFace embedding, face crop JPEG) of single-face photos of people nobody enrolled."""
    from genesis.config import load_settings

    fd, emb = load_face_models(load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir)}))
    out = {}
    for stem in STEMS:
        image = read_image(data_dir / "faces" / "unknown" / f"{stem}.jpg")
        found = fd.detect(image)
        out[stem] = (emb.embed(image, found[:1])[0], face_crop_jpeg(image, found[0].box))
    return out


def _store(settings: Settings, repo: Repository, faces: dict[str, tuple[np.ndarray, bytes]],
           named: dict[str, tuple[str, float]] | None = None) -> IdentityStore:
    """One run of camera "door": a track per photo (track i + 1), ``named`` ones decided by recognition."""
    named = named or {}
    repo.start_run("run-a", "door", "test", {})
    repo.save_tracks("run-a", [TrackRecord("door", i + 1, 0, 10, float(i), float(i) + 1, 10,
                                           named.get(s, (None, 0.0))[0], 2 if s in named else 0, 3,
                                           named.get(s, (None, 0.7))[1]) for i, s in enumerate(STEMS)])
    store = IdentityStore(repo)
    records = [TrackFaceRecord("door", i + 1, float(i), "SFace", [float(x) for x in faces[s][0]],
                               named.get(s, (None, 0.0))[0], named.get(s, (None, 0.7))[1], faces[s][1])
               for i, s in enumerate(STEMS)]
    save_track_faces(store, "run-a", records, settings.recognition.embedder.cosine_threshold)
    return store


def _cluster_of(repo: Repository, track: int) -> str:
    with repo.engine.connect() as conn:
        cid = conn.execute(text("SELECT cluster_id FROM track_faces WHERE track_id = :t"), {"t": track}).scalar_one()
    return f"unknown-{cid}"


def test_crops_encrypted_clusters_merge_and_assign(settings: Settings, faces: dict[str, tuple[np.ndarray, bytes]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, BiometricCipher.new_key())
    with Repository(settings.database_url) as repo:
        store = _store(settings, repo, faces)
        # Crops: ciphertext at rest, the JPEG back for the console.
        with repo.engine.connect() as conn:
            blobs = [bytes(b) for b in conn.execute(text("SELECT crop FROM track_faces")).scalars()]
        assert len(blobs) == len(STEMS) and all(is_encrypted(b) for b in blobs)
        for i, s in enumerate(STEMS):
            assert review.track_crop(store, "run-a", i + 1) == as_jpeg(for_storage(faces[s][1]))  # WebP at rest
        assert review.track_crop(store, "run-a", 99) is None

        clapton, lennon = _cluster_of(repo, 1), _cluster_of(repo, 3)
        assert clapton == _cluster_of(repo, 2) and lennon == _cluster_of(repo, 4) and clapton != lennon
        members = review.cluster_faces(store, clapton)
        assert [f.track_id for f in members] == sorted([1, 2], key=lambda t: next(
            f.centroid_distance for f in members if f.track_id == t))
        assert all(f.has_crop and f.unknown == clapton and f.camera_id == "door" for f in members)
        with pytest.raises(IdentityError):
            review.cluster_faces(store, "unknown-999")

        # Merge lennon into clapton: one cluster of four, centroid = normalised mean of the four.
        with pytest.raises(IdentityError, match="itself"):
            review.merge_clusters(store, clapton, clapton, "test")
        with pytest.raises(IdentityError, match="no unknown face"):
            review.merge_clusters(store, lennon, "unknown-999", "test")
        before = len(unknowns(store))
        assert review.merge_clusters(store, lennon, clapton, "test") == 4
        assert len(unknowns(store)) == before - 1 and lennon not in {u.label for u in unknowns(store)}
        vectors = [faces[s][0] / np.linalg.norm(faces[s][0]) for s in STEMS[:4]]
        mean = np.sum(vectors, axis=0)
        with repo.engine.connect() as conn:
            dim, blob, size = conn.execute(text("SELECT dim, centroid, size FROM unknown_clusters WHERE id = :c"),
                                           {"c": int(clapton.split("-")[1])}).one()
        # The members are stored as float16 (genesis.identities.store.FACE_VECTOR_DTYPE): the centroid made from
        # them is the mean of the float32 inputs within float16's rounding.
        assert size == 4 and np.allclose(store._vec(blob, dim), mean / np.linalg.norm(mean), atol=1e-3)

        # Assign lennon-1 to a new identity, lennon-2 to the same one: they leave the cluster.
        with pytest.raises(IdentityError, match="no identity"):
            review.assign_face(store, "run-a", 3, "John", "test")
        with pytest.raises(IdentityError, match="reserved"):
            review.assign_face(store, "run-a", 3, "unknown-5", "test", create=True)
        version = store.db_version()
        assert review.assign_face(store, "run-a", 3, "John", "test", create=True) == "John"
        with pytest.raises(IdentityError, match="exists already"):
            review.assign_face(store, "run-a", 4, "John", "test", create=True)
        review.assign_face(store, "run-a", 4, "John", "test")
        assert store.db_version() > version  # the workers reload their gallery
        names, matrix = store.gallery("SFace")
        assert names == ["John", "John"] and matrix.shape == (2, len(faces["lennon-1"][0]))
        assert {t.track_id: t.identity for t in repo.tracks("run-a")}[3] == "John"
        assert review.merge_clusters(store, clapton, _cluster_of(repo, 5), "test") == 3  # the two left + adams
        assert [f.photo for f in review.enrolled_faces(store, "John")] == ["track run-a/3", "track run-a/4"]
        actions = [(a.action, a.target) for a in store.audit_log()]
        assert ("merge", clapton) in actions and ("assign", "John") in actions


def test_review_queue_unrecognised_and_low_margin(settings: Settings,
                                                  faces: dict[str, tuple[np.ndarray, bytes]]) -> None:
    thr = settings.recognition.embedder.cosine_threshold
    margin = settings.console.review_margin
    # adams named by recognition with little to spare, carell with a comfortable margin.
    named = {"adams": ("Amy", thr - margin / 2), "carell": ("Steve", thr - 3 * margin)}
    with Repository(settings.database_url) as repo:
        store = _store(settings, repo, faces, named)
        page, total = review.review_queue(store, "SFace", thr, margin, 100)
        by_track = {f.track_id: f for f in page}
        assert total == len(page) == 5 and 6 not in by_track  # carell: confident
        assert by_track[5].identity == "Amy" and all(by_track[t].identity is None for t in (1, 2, 3, 4))
        assert [f.track_id for f in page] == sorted(by_track, key=lambda t: -by_track[t].ts)  # newest first
        assert review.review_queue(store, "SFace", thr, margin, 2, offset=1)[0] == page[1:3]
        # A face the operator named (no votes) is not a low-margin face.
        review.assign_face(store, "run-a", 1, "Eric", "test", create=True)
        assert 1 not in {f.track_id for f in review.review_queue(store, "SFace", thr, margin, 100)[0]}


def _split_store(repo: Repository, faces: dict[str, tuple[np.ndarray, bytes]]) -> IdentityStore:
    """Track 1 of run "run-s" is cut between two people: segment 0 clapton-1 (named "Eric" by recognition),
    segment 1 lennon-1 (unknown); track 2 is adams (unknown, its crop not kept: blurred)."""
    repo.start_run("run-s", "door", "test", {})
    repo.save_tracks("run-s", [TrackRecord("door", 1, 0, 9, 0.0, 1.0, 10, "Eric", 2, 3, 0.5, segment=0),
                               TrackRecord("door", 1, 10, 19, 2.0, 3.0, 10, None, 0, 3, 0.8, segment=1),
                               TrackRecord("door", 2, 0, 9, 4.0, 5.0, 10, None, 0, 3, 0.8)])
    store = IdentityStore(repo)
    store.audit("test", "setup", None)
    with store._write() as rows:
        rows.insert_identity("Eric", utcnow())
    records = [TrackFaceRecord("door", 1, 0.5, "SFace", [float(x) for x in faces["clapton-1"][0]], "Eric", 0.5,
                               faces["clapton-1"][1], 0),
               TrackFaceRecord("door", 1, 2.5, "SFace", [float(x) for x in faces["lennon-1"][0]], None, 0.8,
                               faces["lennon-1"][1], 1),
               TrackFaceRecord("door", 2, 4.5, "SFace", [float(x) for x in faces["adams"][0]], None, 0.8, b"", 0)]
    save_track_faces(store, "run-s", records, 0.593)
    return store


def _segments(repo: Repository) -> dict[tuple[int, int], str | None]:
    return {(t.track_id, t.segment): t.identity for t in repo.tracks("run-s")}


def _clusters(repo: Repository) -> list[tuple[int, int, str, str]]:
    with repo.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
            "SELECT id, size, first_seen, last_seen FROM unknown_clusters ORDER BY id")).all()]


def test_segments_each_action_touches_its_segment_and_undo_restores(settings: Settings,
                                                                    faces: dict[str, tuple[np.ndarray, bytes]]) -> None:
    with Repository(settings.database_url) as repo:
        store = _split_store(repo, faces)
        start = (_segments(repo), _clusters(repo))
        assert start[0] == {(1, 0): "Eric", (1, 1): None, (2, 0): None}
        # One face per segment: the two crops of the split track are the two people's.
        assert review.track_crop(store, "run-s", 1, 0) == as_jpeg(for_storage(faces["clapton-1"][1]))
        assert review.track_crop(store, "run-s", 1, 1) == as_jpeg(for_storage(faces["lennon-1"][1]))
        # Assign by track is refused for a split track (which face?); by segment it names that one only.
        with pytest.raises(IdentityError, match="segments"):
            review.assign_face(store, "run-s", 1, "John", "test", create=True)
        done = review.assign_segment(store, "run-s", 1, 1, "John", "test", create=True, visible_only=True)
        assert _segments(repo) == {(1, 0): "Eric", (1, 1): "John", (2, 0): None}
        assert [f.photo for f in review.enrolled_faces(store, "John")] == ["track run-s/1/1"]
        review.undo(store, done.entry, "test")
        assert (_segments(repo), _clusters(repo)) == start and not store.exists("John")
        with pytest.raises(review.UndoError, match="undone already"):
            review.undo(store, done.entry, "test")
        # A face whose crop was not kept cannot be named by someone who never saw it.
        with pytest.raises(IdentityError, match="not kept"):
            review.assign_segment(store, "run-s", 2, 0, "John", "test", create=True, visible_only=True)

        # "Not this person" on segment 0 leaves segment 1; undo gives the name back, the negative goes.
        done = review.reject_segment(store, "run-s", 1, 0, "test")
        assert _segments(repo) == {(1, 0): None, (1, 1): None, (2, 0): None}
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM identity_negatives")).scalar_one() == 1
        review.undo(store, done.entry, "test")
        assert _segments(repo) == start[0]
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM identity_negatives")).scalar_one() == 0

        # Merge keeps first/last seen (not the time of the merge); undo brings both clusters back as they were.
        lennon, adams = (f"unknown-{c}" for c in sorted({c[0] for c in start[1]}))
        done = review.merge_entry(store, adams, lennon, "test")
        merged = _clusters(repo)
        assert len(merged) == 1 and merged[0][1] == 2 and merged[0][3] == max(c[3] for c in start[1])
        review.undo(store, done.entry, "test")
        assert _clusters(repo) == start[1]

        # Naming a cluster with a blurred face is refused when asked to be (the console); naming the other
        # names its segment only; undo dissolves the identity and brings the cluster back.
        with pytest.raises(IdentityError, match="not kept"):
            review.name_cluster(store, adams, "John", "test", visible_only=True)
        done = review.name_cluster(store, lennon, "John", "test", visible_only=True)
        assert _segments(repo) == {(1, 0): "Eric", (1, 1): "John", (2, 0): None}
        assert review.sample(review.cluster_faces(store, adams), 3)[0].track_id == 2
        review.undo(store, done.entry, "test")
        assert (_segments(repo), _clusters(repo)) == start and not store.exists("John")
        undos = [a for a in store.audit_log() if a.action == "undo"]
        assert [u.detail["action"] for u in undos] == ["assign", "reject", "merge", "name"]
        with pytest.raises(review.UndoError, match="cannot be undone"):
            review.undo(store, min(a.id for a in store.audit_log()), "test")  # the "setup" entry

        # SQLite takes a deleted cluster's id again: an undo never pours faces into someone else's group.
        done = review.merge_entry(store, adams, lennon, "test")
        repo.start_run("run-t", "door", "test", {})
        carell = [float(x) for x in faces["carell"][0]]
        save_track_faces(store, "run-t", [TrackFaceRecord("door", 1, 0.5, "SFace", carell, None, 0.9,
                                                          faces["carell"][1])], 0.593)
        assert repo.engine.dialect.name == "sqlite" and adams in {u.label for u in unknowns(store)}  # taken again
        with pytest.raises(review.UndoError, match="another group"):
            review.undo(store, done.entry, "test")

        # An entry holds identities by id, never by name: forgetting Eric leaves his name in no entry, and an
        # undo then gives the segment no name (not a forgotten one).
        done = review.assign_segment(store, "run-s", 1, 0, "John", "test", create=True)
        store.forget("Eric", "test")
        assert "Eric" not in str([(a.target, a.detail) for a in store.audit_log()])
        review.undo(store, done.entry, "test")
        assert _segments(repo)[(1, 0)] is None


def test_sample_spreads_over_all_faces() -> None:
    refs = [review.FaceRef("r", i, "c", 0.0, None, None, None, None, True, centroid_distance=i / 10)
            for i in range(10)]
    picked = review.sample(refs, 4)
    assert [f.track_id for f in picked] == [0, 3, 6, 9]  # the most typical first, the least typical last
    assert review.sample(refs[:3], 7) == refs[:3] and review.sample(refs, 0) == []


def test_cli_reject_acts_on_the_named_segment_only_and_undo_restores(
        settings: Settings, faces: dict[str, tuple[np.ndarray, bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """`genesis identities reject` on a split track: without a segment, a one-line error listing the segments
    with their identities; RUN:TRACK:SEGMENT touches that segment only; a one-segment track needs none;
    the printed audit entry undoes it (`genesis identities undo`)."""
    from typer.testing import CliRunner

    from genesis.cli.main import app

    monkeypatch.setenv("GENESIS_DATABASE_URL", settings.database_url)
    monkeypatch.delenv("GENESIS_TEST_REDIS_PORT", raising=False)
    cli = CliRunner()
    with Repository(settings.database_url) as repo:
        store = _split_store(repo, faces)
        review.assign_segment(store, "run-s", 1, 1, "John", "test", create=True)
        start = _segments(repo)
        assert start == {(1, 0): "Eric", (1, 1): "John", (2, 0): None}

        r = cli.invoke(app, ["identities", "reject", "run-s:1"])
        assert r.exit_code == 1, r.output
        line = " ".join(r.output.split())
        assert "cut into 2 identity segments: 0 (Eric), 1 (John); say which as RUN:TRACK:SEGMENT" in line
        assert "Traceback" not in r.output and _segments(repo) == start
        r = cli.invoke(app, ["identities", "reject", "run-s:1:7"])
        assert r.exit_code == 1 and "has no segment 7 (its segments: 0, 1)" in " ".join(r.output.split())
        r = cli.invoke(app, ["identities", "reject", "run-s:1:x"])
        assert r.exit_code == 2 and "RUN:TRACK:SEGMENT" in r.output

        # Segment 1 is not John: segment 0 keeps Eric, John gets a negative of that face only.
        r = cli.invoke(app, ["identities", "reject", "run-s:1:1"])
        assert r.exit_code == 0, r.output
        assert _segments(repo) == {(1, 0): "Eric", (1, 1): None, (2, 0): None}
        with repo.engine.connect() as conn:
            negatives = conn.execute(text("SELECT n.track_id, i.name FROM identity_negatives n "
                                          "JOIN identities i ON i.id = n.identity_id")).all()
        assert [tuple(n) for n in negatives] == [(1, "John")]
        entry = store.audit_log()[-1]
        assert entry.action == "reject" and entry.target == "John"
        assert (entry.detail["run"], entry.detail["track"], entry.detail["segment"]) == ("run-s", 1, 1)
        assert f"genesis identities undo {entry.id}" in " ".join(r.output.split())

        r = cli.invoke(app, ["identities", "undo", str(entry.id)])
        assert r.exit_code == 0 and "track 1 (segment 1) of run run-s is John again" in r.output, r.output
        assert _segments(repo) == start
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM identity_negatives")).scalar_one() == 0

        # A track of one segment keeps working as RUN:TRACK (it has no name: say which with --identity).
        r = cli.invoke(app, ["identities", "reject", "run-s:2"])
        assert r.exit_code == 1 and "has no identity" in r.output
        r = cli.invoke(app, ["identities", "reject", "run-s:2", "--identity", "Eric"])
        assert r.exit_code == 0 and "is not Eric" in r.output, r.output
        assert _segments(repo) == start
