"""Recognition attempts packed per stored batch (``attempt_packs``, migration 0016): exact values, retried and
resumed batches, a rename or a forget, retention per kind, the migration from one row an attempt and back."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from genesis.adapters.db import Repository, attempts
from genesis.adapters.db.attempts import (
    ATTEMPT_DTYPE,
    NO_NAME,
    StoredAttempt,
    names_of,
    pack_row,
    stored_attempts,
    unpack,
)
from genesis.adapters.db.tables import AttemptPack
from genesis.config import load_settings
from genesis.domain import RecognitionAttempt
from genesis.services.rollups import purge
from tests.unit.adapters.test_repository import db_url  # noqa: F401  (the sqlite + postgresql fixture)


def att(tid: int, seq: int, name: str | None = None, ts: float | None = None) -> RecognitionAttempt:
    x = 100.0 / 7 * tid + seq
    return RecognitionAttempt("cam", tid, seq, seq / 5.0 if ts is None else ts, (x, x / 3, x + 0.1, x * 1.7),
                              0.5 + tid / 1000, name, 0.3 + seq / 10_007)


def by_key(items: list[RecognitionAttempt]) -> list[RecognitionAttempt]:
    return sorted(items, key=lambda a: (a.seq, a.track_id))


def test_codec_is_exact_small_and_keeps_names() -> None:
    rng = random.Random(3)
    attempts = [StoredAttempt(rng.randrange(1, 9000), seq, 1.7e9 + seq / 5 + rng.random() / 1e3,
                              tuple(rng.uniform(0, 1280) for _ in range(4)),  # type: ignore[arg-type]
                              rng.random(), rng.choice([None, "Ana", "50%_off", "Zoë"]), rng.random())
                for seq in range(1000, 1025) for _ in range(rng.randrange(0, 3))]
    attempts = list({(a.seq, a.track_id): a for a in attempts}.values())
    row = pack_row("r", reversed(attempts))
    back = stored_attempts(row["first_seq"], row["names"], row["data"])
    assert back == sorted(attempts, key=lambda a: (a.seq, a.track_id))  # exact, in (seq, track) order
    assert names_of(row["names"]) == sorted({a.identity for a in attempts if a.identity})
    assert row["named"] == sum(1 for a in attempts if a.identity) and row["n"] == len(attempts)
    assert (row["first_seq"], row["last_seq"]) == (back[0].seq, back[-1].seq)
    arr = unpack(row["data"])
    assert arr.dtype == ATTEMPT_DTYPE and ATTEMPT_DTYPE.itemsize == 70
    assert set(arr["name"][[a.identity is None for a in back]].tolist()) <= {NO_NAME}
    with pytest.raises(ValueError, match="control character"):
        pack_row("r", [StoredAttempt(1, 1, 0.0, (0, 0, 1, 1), 0.5, "a\x1fb", 0.1)])


def test_packed_smaller_than_the_rows_were(db_url: str) -> None:  # noqa: F811
    """A busy batch (15 attempts over 25 frames, box values of a real detector, float32 on their way) packs into
    well under the 285 bytes an attempt row took on PostgreSQL with its key."""
    import numpy as np

    rng = random.Random(5)
    batch = []
    for seq in range(25):
        for tid in rng.sample(range(300, 320), rng.randrange(0, 2)):
            x, y = (float(np.float32(rng.uniform(0, 1280))) for _ in range(2))
            batch.append(RecognitionAttempt("cam", tid, seq, 1.7e9 + seq / 5, (x, y, x + 40.5, y + 52.25),
                                            float(np.float32(rng.random())), None, float(np.float32(rng.random()))))
    row = pack_row("r", [StoredAttempt.of(a) for a in batch])
    assert len(row["data"]) / len(batch) < 60


def test_batches_retries_and_resumed_batches(db_url: str) -> None:  # noqa: F811
    """One row per batch and day; a retried batch stores nothing twice; a resumed batch that repeats part of an
    earlier one stores only what is new; a run's attempts come back exactly, by (seq, track)."""
    first = [att(1, 10, "Ana"), att(2, 10), att(1, 12)]
    resumed = [*first, att(3, 13, "Bo"), att(2, 14)]
    later = [att(4, 5), att(1, 20, "Ana")]  # frames before the last batch's: a different key
    with Repository(db_url) as repo:
        repo.start_run("r1", "cam", "x", {})
        for batch in (first, first, resumed, later, resumed):
            repo.save_outcome("r1", [], batch, [], [])
        assert repo.attempts("r1") == by_key([*resumed, *later])
        with repo.engine.connect() as conn:
            rows = conn.execute(select(AttemptPack.n, AttemptPack.named, AttemptPack.names)
                                .order_by(AttemptPack.first_seq)).all()
        assert [(n, named, names_of(names)) for n, named, names in rows] == [
            (2, 1, ["Ana"]), (3, 1, ["Ana"]), (2, 1, ["Bo"])]
        assert repo.attempts("nope") == []


def test_a_batch_across_midnight_gives_a_row_each_day(db_url: str) -> None:  # noqa: F811
    midnight = datetime(2026, 3, 2, tzinfo=UTC).timestamp()
    batch = [att(1, 1, ts=midnight - 1), att(1, 2, ts=midnight - 0.5), att(1, 3, ts=midnight + 0.2)]
    with Repository(db_url) as repo:
        repo.start_run("r1", "cam", "rtsp://x", {})
        repo.save_outcome("r1", [], batch, [], [])
        assert repo.attempts("r1") == batch
        with repo.engine.connect() as conn:
            assert conn.execute(select(AttemptPack.n).order_by(AttemptPack.first_seq)).scalars().all() == [2, 1]


def test_rename_and_forget_rewrite_only_the_rows_that_hold_the_name(db_url: str) -> None:  # noqa: F811
    with Repository(db_url) as repo:
        repo.start_run("r1", "cam", "x", {})
        repo.save_outcome("r1", [], [att(1, 1, "50%_off"), att(2, 1, "Ana")], [], [])
        repo.save_outcome("r1", [], [att(1, 30, "50x_off"), att(3, 31)], [], [])  # LIKE would match 50%_off
        with repo.engine.connect() as conn:
            before = conn.execute(select(AttemptPack.first_seq, AttemptPack.data)
                                  .where(AttemptPack.first_seq == 30)).one()
        with repo.engine.begin() as conn:
            assert attempts.rename(conn, "50%_off", "Half") == 1
            assert attempts.rename(conn, "Ana", None) == 1
            assert attempts.rename(conn, "nobody", "x") == 0
        assert [(a.track_id, a.seq, a.identity) for a in repo.attempts("r1")] == [
            (1, 1, "Half"), (2, 1, None), (1, 30, "50x_off"), (3, 31, None)]
        with repo.engine.connect() as conn:
            assert conn.execute(select(AttemptPack.first_seq, AttemptPack.data)
                                .where(AttemptPack.first_seq == 30)).one() == before  # not rewritten
            assert conn.execute(select(AttemptPack.named).where(AttemptPack.first_seq == 1)).scalar_one() == 1
        want = [a.distance for a in by_key([att(1, 1), att(2, 1), att(1, 30), att(3, 31)])]
        assert [a.distance for a in repo.attempts("r1")] == want  # nothing else changed


@pytest.mark.parametrize(("named_days", "unknown_days"), [(30, 30), (30, 7), (7, 30)])
def test_retention_per_kind(db_url: str, named_days: int, unknown_days: int) -> None:  # noqa: F811
    """Attempts that named someone go after ``sightings_days``, the others after ``unknown_faces_days``, by their
    own time: whole rows deleted, a row across a cutoff rewritten with what it keeps."""
    now = time.time()
    t0 = now - 31 * 86400 - 1800  # an hour of attempts across the 31-day mark
    with Repository(db_url) as repo:
        repo.start_run("live", "cam", "rtsp://x", {})
        with repo.engine.begin() as conn:
            conn.execute(text("UPDATE runs SET started_at = :at WHERE id = 'live'"),
                         {"at": datetime.fromtimestamp(t0 - 60, UTC)})
        made = []
        for b in range(36):  # 36 batches of 100 s, every day of retention at once for the parametrised cutoffs
            batch = [att(tid, 100 * b + k, "Ana" if (tid + k) % 3 == 0 else None, ts=t0 + 100 * b + k)
                     for k in range(0, 100, 10) for tid in (1, 2)]
            batch += [att(9, 100 * b + 5, None, ts=now - 86400 * (6 + b))]  # old and new, days apart
            made += batch
            repo.save_outcome("live", [], batch, [], [])
        settings = load_settings(environ={"GENESIS_RETENTION__SIGHTINGS_DAYS": str(named_days),
                                          "GENESIS_RETENTION__UNKNOWN_FACES_DAYS": str(unknown_days)})
        counts = purge(repo, settings, now=now)
        cut_named, cut_unknown = now - named_days * 86400, now - unknown_days * 86400
        gone = [a for a in made if a.ts < (cut_unknown if a.identity is None else cut_named)]
        assert counts["recognition_attempts"] == sum(1 for a in gone if a.identity)
        assert counts["unknown_faces"] == sum(1 for a in gone if a.identity is None)
        assert 0 < len(gone) < len(made)
        assert repo.attempts("live") == by_key([a for a in made if a not in gone])
        assert purge(repo, settings, now=now)["unknown_faces"] == 0  # nothing left to remove


def test_migration_0016_packs_attempts_and_back(db_url: str, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """A database at 0015 with attempt rows (two runs, names and none, a frame of many attempts): 0016 packs
    them in (seq, track) order, rows closing at a frame's end, every value exact, and says how far it is run by
    run; the downgrade gives the same ``recognition_attempts`` rows back."""
    start = datetime(2026, 3, 2, 23, 59, 0, tzinfo=UTC)
    rng = random.Random(11)
    old: list[dict[str, object]] = []
    for run_id, frames in (("m1", 300), ("m2", 20)):
        for seq in range(frames):
            for tid in range(1, (40 if seq == 7 else rng.randrange(0, 3)) + 1):
                x = rng.uniform(0, 1000) / 7
                old.append({"run_id": run_id, "track_id": tid, "seq": seq, "ts": seq / 5.0, "x1": x, "y1": x / 3,
                            "x2": x + 0.1, "y2": x * 1.7, "face_score": rng.random(),
                            "identity_name": rng.choice([None, None, "Ana", "O'Brien"]), "distance": rng.random()})
    with Repository(db_url, migrate=False) as repo:
        repo.upgrade("0015")
        with repo.engine.begin() as conn:
            conn.execute(text("INSERT INTO cameras (id, name, created_at) VALUES ('cam', 'cam', :at)"), {"at": start})
            for run_id in ("m1", "m2"):
                conn.execute(text("INSERT INTO runs (id, camera_id, source, status, started_at, frames, meta)"
                                  " VALUES (:r, 'cam', 'v.mp4', 'finished', :at, 300, '{}')"),
                             {"r": run_id, "at": start})
            conn.execute(text("INSERT INTO recognition_attempts (run_id, track_id, seq, ts, x1, y1, x2, y2, "
                              "face_score, identity_name, distance) VALUES (:run_id, :track_id, :seq, :ts, :x1, :y1, "
                              ":x2, :y2, :face_score, :identity_name, :distance)"), old)
        with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
            repo.upgrade()
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("0016:")]
        n1 = sum(1 for r in old if r["run_id"] == "m1")
        assert said[0].startswith(f"0016: packed the recognition attempts of run m1 (1 of 2 runs; {n1} of {len(old)} "
                                  "attempts, "), said
        assert said[1].startswith(f"0016: packed the recognition attempts of run m2 (2 of 2 runs; {len(old)} of "
                                  f"{len(old)} attempts, "), said
        for run_id in ("m1", "m2"):
            want = [RecognitionAttempt("cam", int(r["track_id"]), int(r["seq"]),  # type: ignore[call-overload]
                                       float(r["ts"]),  # type: ignore[arg-type]
                                       tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")),  # type: ignore[arg-type]
                                       float(r["face_score"]), r["identity_name"],  # type: ignore[arg-type]
                                       float(r["distance"]))  # type: ignore[arg-type]
                    for r in old if r["run_id"] == run_id]
            assert repo.attempts(run_id) == by_key(want)
        with repo.engine.connect() as conn:
            rows = conn.execute(select(AttemptPack.run_id, AttemptPack.first_seq, AttemptPack.last_seq,
                                       AttemptPack.n, AttemptPack.named, AttemptPack.names, AttemptPack.data)).all()
        assert sum(r.n for r in rows) == len(old)
        assert sum(r.named for r in rows) == sum(1 for r in old if r["identity_name"])
        for r in rows:
            seqs = [a.seq for a in stored_attempts(r.first_seq, r.names, r.data)]
            assert seqs[0] == r.first_seq and seqs[-1] == r.last_seq and len(seqs) == r.n
            assert r.n < 25 + 3 or r.first_seq <= 7 <= r.last_seq  # closed at the first frame end after 25
        frames = [(r.run_id, s) for r in rows for s in {a.seq for a in stored_attempts(r.first_seq, r.names, r.data)}]
        assert len(frames) == len(set(frames))  # no frame cut in two rows
        repo.downgrade("0015")
        with repo.engine.connect() as conn:
            cols = "run_id, track_id, seq, ts, x1, y1, x2, y2, face_score, identity_name, distance"
            back = [dict(r._mapping) for r in conn.execute(text(
                f"SELECT {cols} FROM recognition_attempts ORDER BY run_id, seq, track_id"))]
        assert back == sorted(old, key=lambda r: (r["run_id"], r["seq"], r["track_id"]))  # type: ignore[arg-type, return-value]
        repo.upgrade()
        assert len(repo.attempts("m1")) == sum(1 for r in old if r["run_id"] == "m1")


def test_db_upgrade_says_how_far_the_attempts_migration_is(tmp_path: Path) -> None:
    """``genesis db upgrade`` on a database at 0015 with attempt rows names each migration as it runs and says,
    run by run, how many attempts 0016 has packed (a month of a busy camera takes minutes: docs/benchmarks.md)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Repository(url, migrate=False) as repo:
        repo.upgrade("0015")
        with repo.engine.begin() as conn:
            conn.execute(text("INSERT INTO cameras (id, name, created_at) VALUES ('cam', 'cam', '2026-03-02')"))
            conn.execute(text("INSERT INTO runs (id, camera_id, source, status, started_at, frames, meta)"
                              " VALUES ('m1', 'cam', 'v.mp4', 'finished', '2026-03-02', 3, '{}')"))
            conn.execute(text("INSERT INTO recognition_attempts (run_id, track_id, seq, ts, x1, y1, x2, y2, "
                              "face_score, identity_name, distance) VALUES ('m1', :t, :s, 0.5, 1, 2, 3, 4, 0.9, "
                              "NULL, 0.7)"), [{"t": t, "s": s} for s in range(3) for t in range(4)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env["GENESIS_DATABASE_URL"] = url
    proc = subprocess.run([sys.executable, "-m", "genesis.cli.main", "db", "upgrade"], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Running upgrade 0015 -> 0016" in proc.stderr, proc.stderr
    assert "0016: packed the recognition attempts of run m1 (1 of 1 runs; 12 of 12 attempts, " in proc.stderr
    assert "database is at the latest schema" in proc.stdout
    with Repository(url) as repo:
        assert len(repo.attempts("m1")) == 12
