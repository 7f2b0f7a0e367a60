"""Trajectory points packed per stored batch (issue 21, ``point_batches``): exact round trip, idempotent writes,
the API's sightings page and a frame's boxes equal to what the one-row-a-point table gave (computed here from the
points written), retention of a day, and migration 0011 both ways, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import insert, text

from genesis.adapters.db import Repository
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.db.events import (
    FILTERED_TOTAL_CAP,
    POINTS_TOTAL_CAP,
    RECENT_S,
    EventFilter,
    LabelledBox,
    SightingListing,
    read_events,
)
from genesis.adapters.db.partitions import day_of, partitions
from genesis.adapters.db.points import POINT_DTYPE, day_rows, seal, stored_points, unpack
from genesis.adapters.db.tables import HeatmapRow
from genesis.config import load_settings
from genesis.domain import PathPoint, Sighting, TrackRecord, ZoneEvent, ZoneEventKind
from genesis.domain.heat import encode_cells
from genesis.services.rollups import purge
from tests.analytics_data import backdate
from tests.unit.adapters.test_repository import db_url, stored  # noqa: F401  (the sqlite + postgresql fixture)

DAY = 86400


def f32(x: float) -> float:
    return float(str(np.float32(x)))


def walk(camera: str, frames: range, tracks: int, ts_of: float | None, seed: int) -> list[list[PathPoint]]:
    """Points frame by frame: ``tracks`` people, each present on a random stretch, with awkward values (boxes
    that single precision rounds, negative coordinates, large frame counts). ``ts_of``: epoch time of frame 0
    (a live camera), or None for media time (frame / 5)."""
    rng = random.Random(seed)
    spans = {t: (rng.randrange(frames.start, frames.stop), rng.randrange(5, 80)) for t in range(1, tracks + 1)}
    out = []
    for seq in frames:
        ts = seq / 5.0 if ts_of is None else ts_of + seq / 5.0
        here = []
        for tid, (first, life) in spans.items():
            if first <= seq < first + life and rng.random() < 0.6:
                x = rng.uniform(-20, 1900) + 0.1
                here.append(PathPoint(camera, tid, seq, ts, (x, rng.uniform(0, 1000) / 3, x + 33.3, 1e-7 + seq),
                                      rng.random(), rng.choice([1, 2, 7, 70000])))
        out.append(here)
    return out


def write(repo: Repository, run_id: str, frames: list[list[PathPoint]], batch: int = 25) -> list[PathPoint]:
    """Every batch of ``batch`` frames through the pipeline's writer; the points written."""
    written = []
    for i in range(0, len(frames), batch):
        points = [p for f in frames[i:i + batch] for p in f]
        repo.save_outcome(run_id, [], [], [], [], points)
        written += points
    return written


def test_codec_is_exact_and_little_endian() -> None:
    assert POINT_DTYPE.itemsize == 44
    p = PathPoint("c", 2**40, 7, 1_765_000_000.123456789, (0.1, -3.3, 1e30, 1e-40), 0.3, 2**32 - 1)
    q = PathPoint("c", 1, 5, 1_765_000_000.123456789, (1.0, 2.0, 3.0, 4.0), 1.0, 1)
    (row,) = day_rows("r", [p, q, p], lambda ts: 3)  # a point given twice is kept once
    assert (row["first_seq"], row["last_seq"], row["n"], row["day"]) == (5, 7, 2, 3)
    assert len(row["points"]) == 88 and row["points"][:12] == bytes(4) + (1).to_bytes(8, "little")  # q: dseq 0, track 1
    back = [x.path_point("c") for x in stored_points(row["first_seq"], row["points"])]
    assert back == stored([p, q])
    assert back[1].ts == p.ts and back[1].box[3] == float(str(np.float32(1e-40)))
    with pytest.raises(ValueError, match="out of its batch"):
        day_rows("r", [q, replace(q, seq=2**33)], lambda ts: 0)


def test_a_busy_row_is_stored_compressed_and_rows_stored_raw_are_still_read() -> None:
    """A batch's records are stored shuffled and compressed (length 1 more than a multiple of 44), every value
    exact; the raw records of rows stored before (a multiple of 44) read as they are; anything else is refused."""
    frames = walk("cam", range(0, 25), 12, 1_765_000_000.0, seed=4)
    points = [p for f in frames for p in f]
    (row,) = day_rows("r", points, lambda ts: 3)
    blob = row["points"]
    assert len(blob) % 44 == 1 and len(blob) < 0.7 * 44 * row["n"]
    back = stored_points(row["first_seq"], blob)
    assert [x.path_point("cam") for x in back] == stored(sorted(points, key=lambda p: (p.seq, p.track_id)))
    raw = unpack(blob).tobytes()  # the form of the rows stored before compression
    assert len(raw) == 44 * row["n"] and stored_points(row["first_seq"], raw) == back
    assert seal(unpack(raw)) == blob
    for bad in (blob[:10] + bytes([blob[10] ^ 0xFF]) + blob[11:], blob + b"\x00", blob[:-5] + bytes([3])):
        with pytest.raises(ValueError, match="packed points"):
            unpack(bad)


def test_round_trip_retries_and_day_split(db_url: str) -> None:  # noqa: F811
    midnight = datetime(2026, 3, 3, tzinfo=UTC).timestamp()
    with Repository(db_url) as repo:
        repo.start_run("live", "cam", "rtsp://x", {"width": 1920, "height": 1080})
        frames = walk("cam", range(0, 150), 12, midnight - 17.0, seed=1)  # 30 s of camera, midnight at frame 85
        written = write(repo, "live", frames)
        assert repo.points("live") == stored(written)
        with repo.engine.connect() as conn:
            rows = conn.execute(text("SELECT first_seq, day, last_seq, n FROM point_batches ORDER BY first_seq, day"
                                     )).all()
        assert sum(r.n for r in rows) == len(written)
        assert {r.day for r in rows} == {day_of(midnight) - 1, day_of(midnight)}
        # the batch that holds midnight (frames 75..99) is two rows, one a day
        split = [r for r in rows if 75 <= r.first_seq <= 99]
        assert [r.day for r in split] == [day_of(midnight) - 1, day_of(midnight)]
        # a retried batch (and the whole run again) stores nothing twice
        write(repo, "live", frames)
        repo.save_outcome("live", [], [], [], [], [p for f in frames[25:50] for p in f])
        assert repo.points("live") == stored(written)
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM point_batches")).scalar_one() == len(rows)
        # a failing batch stores nothing (a point of another camera fails the whole call)
        bad = [PathPoint("cam", 1, 500, midnight + 200, (1, 2, 3, 4), 0.5, 1), PathPoint("other", 2, 501, midnight,
                                                                                        (1, 2, 3, 4), 0.5, 1)]
        with pytest.raises(ValueError):
            repo.save_outcome("live", [], [], [], [], bad)
        assert repo.points("live") == stored(written)


# -- what the one-row-a-point table gave, computed from the points written ------------------------------------

def _segment(segments: list[TrackRecord], tid: int, seq: int) -> TrackRecord | None:
    return next((s for s in segments if s.track_id == tid and s.first_seq <= seq <= s.last_seq), None)


def expected_page(runs: dict[str, tuple[str, list[PathPoint], list[TrackRecord], set[tuple[str, int]]]],
                  f: EventFilter, limit: int, offset: int) -> tuple[list[SightingListing], int]:
    items = []
    for run_id in sorted(runs):
        camera, points, segments, zoned = runs[run_id]
        if (f.camera is not None and camera != f.camera) or (f.run is not None and run_id != f.run):
            continue
        for p in stored(points):
            seg = _segment(segments, p.track_id, p.seq)
            name = None if seg is None else seg.identity
            if ((f.identity is not None and name != f.identity) or (f.track is not None and p.track_id != f.track)
                    or (f.zone is not None and (f.zone, p.track_id) not in zoned)
                    or (f.ts_from is not None and p.ts < f.ts_from) or (f.ts_to is not None and p.ts > f.ts_to)):
                continue
            items.append(SightingListing(run_id, p.track_id, p.seq, p.ts, *p.box, p.score, camera, name, p.frames))
    per_point = f.track is not None or f.zone is not None or f.identity is not None
    return items[offset:offset + limit], min(len(items), FILTERED_TOTAL_CAP if per_point else POINTS_TOTAL_CAP)


def expected_at(points: list[PathPoint], segments: list[TrackRecord], seq: int) -> list[LabelledBox]:
    before = [p for p in stored(points) if p.seq <= seq]
    if not before:
        return []
    newest = max(p.ts for p in before)
    latest: dict[int, PathPoint] = {}
    for p in before:
        if p.ts >= newest - RECENT_S:
            latest[p.track_id] = p
    out = []
    for tid in sorted(latest):
        seg = _segment(segments, tid, latest[tid].seq)
        out.append(LabelledBox(tid, *latest[tid].box, None if seg is None else seg.identity))
    return out


@pytest.mark.parametrize("zone_ahead", [None, 0])
def test_sightings_pages_and_frame_boxes_as_before(db_url: str, zone_ahead: int | None,  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every filter's pages as a reference built from the written points gives them; with ``zone_ahead`` 0 the
    zone filter reads the zone's tracks in as many ranges as the groups need (each growing what was read below
    or above)."""
    from genesis.adapters.db import events

    if zone_ahead is not None:
        monkeypatch.setattr(events, "_ZONE_AHEAD", zone_ahead)
    runs = {}
    with Repository(db_url) as repo:
        for run_id, camera, n, ts_of, seed in (("r1", "cam", 300, None, 2), ("r2", "cam", 140, 1.77e9, 3),
                                               ("r3", "door", 60, None, 4)):
            repo.start_run(run_id, camera, "x", {"width": 1920, "height": 1080})
            points = write(repo, run_id, walk(camera, range(3, 3 + n), 15, ts_of, seed), batch=25 if seed != 3 else 7)
            segments = []
            for tid in sorted({p.track_id for p in points}):
                seqs = sorted(p.seq for p in points if p.track_id == tid)
                mid = seqs[len(seqs) // 2]
                name = ["ana", None, "bo"][tid % 3]
                segments += [TrackRecord(camera, tid, seqs[0], mid, 0.0, 1.0, 1, name, 1, 1, 0.1, 0),
                             TrackRecord(camera, tid, mid + 1, seqs[-1] - 1, 1.0, 2.0, 1, "bo" if tid % 2 else None,
                                         1, 1, 0.1, 1)]  # the track's last point lies in no segment
            repo.save_tracks(run_id, segments)
            zoned = {("hall", t) for t in {p.track_id for p in points} if t % 4 == 1}
            repo.save_outcome(run_id, [], [], [ZoneEvent(camera, z, t, ZoneEventKind.ENTER, 10, 2.0)
                                               for z, t in sorted(zoned)], [])
            runs[run_id] = (camera, points, segments, zoned)
        ts_mid = stored(runs["r1"][1])[len(runs["r1"][1]) // 2].ts
        filters = [EventFilter(), EventFilter(camera="cam"), EventFilter(run="r2"), EventFilter(identity="bo"),
                   EventFilter(identity="ana", camera="cam"), EventFilter(track=3), EventFilter(run="r1", track=5),
                   EventFilter(zone="hall"), EventFilter(zone="none"), EventFilter(ts_from=ts_mid),
                   EventFilter(ts_from=12.0, ts_to=ts_mid), EventFilter(run="r2", ts_to=1.77e9 + 10),
                   EventFilter(identity="bo", zone="hall", ts_to=40.0)]
        with read_events(repo.engine) as db:
            for f in filters:
                everything, total = expected_page(runs, f, 10**6, 0)
                assert (total > 0) == (f.zone != "none"), f
                for limit, offset in ((50, 0), (7, 3), (100, 250), (1000, 0), (10, total - 4), (5, total + 10)):
                    got = db.sightings(f, limit, offset)
                    assert got == (everything[offset:offset + limit], total), (f, limit, offset)
            for run_id, (_, points, segments, _) in runs.items():
                for seq in (0, 3, 4, 17, 28, 29, 50, 51, 99, 142, 143, 144, 200, 302, 400):
                    assert db.sightings_at(run_id, seq) == expected_at(points, segments, seq), (run_id, seq)
                assert db.last_seq(run_id) == max(p.seq for p in points)
            assert db.sightings_at("nope", 10) == [] and db.last_seq("nope") is None


def test_reach_of_named_segments() -> None:
    from genesis.adapters.db.events import _overlaps, _reach

    spans = {1: [(0, 10, 20, "a"), (1, 40, 50, "a")], 2: [(0, 15, 30, "a")], 3: [(0, 60, 60, "a")]}
    reach = _reach(spans)
    assert reach == ([10, 40, 60], [30, 50, 60])
    assert [f for f in range(0, 70, 3) if _overlaps(reach, f, f + 2)] == [
        9, 12, 15, 18, 21, 24, 27, 30, 39, 42, 45, 48, 60]  # 9-11 meets 10, 30-32 meets 30, 51-53 meets nothing
    assert _overlaps(reach, 0, 100) and not _overlaps(reach, 31, 39) and not _overlaps(reach, 61, 99)
    assert not _overlaps(reach, 0, 9) and not _overlaps(_reach({}), 0, 10**9)


def test_a_name_on_a_short_stretch_of_a_long_run(db_url: str) -> None:  # noqa: F811
    """Under an identity filter the rows whose frames no segment of the name covers are passed over: a name held
    for a few frames of a long run (and another run without it) gives the same pages and total as the points
    written."""
    with Repository(db_url) as repo:
        runs = {}
        for run_id, seed in (("long", 7), ("other", 8)):
            repo.start_run(run_id, "cam", "x", {})
            points = write(repo, run_id, walk("cam", range(0, 400), 12, None, seed), batch=10)
            segments = []
            for tid in sorted({p.track_id for p in points}):
                seqs = sorted(p.seq for p in points if p.track_id == tid)
                named = run_id == "long" and tid == 4
                segments.append(TrackRecord("cam", tid, seqs[0], seqs[-1], 0.0, 1.0, 1, "zed" if named else None,
                                            1, 1, 0.1, 0))
            repo.save_tracks(run_id, segments)
            runs[run_id] = ("cam", points, segments, set())
        with read_events(repo.engine) as db:
            for f in (EventFilter(identity="zed"), EventFilter(identity="zed", run="long"),
                      EventFilter(identity="zed", ts_from=30.0), EventFilter(identity="nobody")):
                everything, total = expected_page(runs, f, 10**6, 0)
                if f.ts_from is None:
                    assert (total > 0) == (f.identity == "zed"), f
                for limit, offset in ((50, 0), (3, 2), (10, max(0, total - 4))):
                    assert db.sightings(f, limit, offset) == (everything[offset:offset + limit], total), (f, offset)


def test_sightings_total_is_capped(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from genesis.adapters.db import events

    monkeypatch.setattr(events, "POINTS_TOTAL_CAP", 40)
    monkeypatch.setattr(events, "FILTERED_TOTAL_CAP", 15)
    monkeypatch.setattr(events, "_READ_ROWS", 2)  # several reads of rows
    with Repository(db_url) as repo:
        repo.start_run("r1", "cam", "x", {})
        points = stored(write(repo, "r1", walk("cam", range(0, 200), 10, None, 5), batch=5))
        assert len(points) > 100
        with read_events(repo.engine) as db:
            items, total = db.sightings(EventFilter(), 10, 0)
            assert total == 40 and [(i.seq, i.track_id) for i in items] == [(p.seq, p.track_id) for p in points[:10]]
            items, total = db.sightings(EventFilter(), 10, 90)  # a page past the cap is still the right page
            assert total == 40 and [(i.seq, i.track_id) for i in items] == [(p.seq, p.track_id)
                                                                           for p in points[90:100]]
            # a filter whose count unpacks the points counts up to its own, smaller cap; its pages are all served
            tid = max({p.track_id for p in points}, key=lambda t: sum(p.track_id == t for p in points))
            mine = [p for p in points if p.track_id == tid]
            assert len(mine) > 20
            items, total = db.sightings(EventFilter(track=tid), 5, 0)
            assert total == 15 and [i.seq for i in items] == [p.seq for p in mine[:5]]
            items, total = db.sightings(EventFilter(track=tid), 5, 18)
            assert total == 15 and [i.seq for i in items] == [p.seq for p in mine[18:23]]


def test_retention_of_a_day(db_url: str) -> None:  # noqa: F811
    """Points older than the cutoff go: whole days (PostgreSQL: their partitions), and the older points of a row
    that straddles the cutoff (the row is rewritten with the rest)."""
    now = datetime(2026, 6, 10, 12, 0, tzinfo=UTC).timestamp()
    settings = load_settings(environ={"GENESIS_RETENTION__SIGHTINGS_DAYS": "1", "GENESIS_RETENTION__EVENTS_DAYS": "9"})
    cutoff = now - DAY
    with Repository(db_url) as repo:
        repo.start_run("live", "cam", "rtsp://x", {"width": 640, "height": 360})
        written = []
        for k, t0 in enumerate((now - 3 * DAY, now - 2 * DAY, cutoff - 20.0, now - 600)):
            frames = [[PathPoint("cam", tid, 100 * k + i, t0 + i, (1.0, 2.0, 3.5, 4.25), 0.5, 1) for tid in (1, 2)]
                      for i in range(40)]
            written += write(repo, "live", frames, batch=40)
        backdate(repo, "live", now - 4 * DAY, None)
        if repo.dialect == "postgresql":
            with repo.engine.begin() as conn:
                conn.execute(text("ANALYZE point_batches"))  # the partitions' row estimates the purge reports
        counts = purge(repo, settings, now=now)
        kept = [p for p in written if p.ts >= cutoff]
        assert repo.points("live") == stored(kept)
        assert counts["point_batches"] == len(written) - len(kept) == 200  # points: two old batches and half one
        with repo.engine.connect() as conn:
            rows = conn.execute(text("SELECT first_seq, last_seq, first_ts, n FROM point_batches "
                                     "ORDER BY first_seq")).all()
            assert [tuple(r) for r in rows] == [(200, 239, cutoff, 40), (300, 339, now - 600, 80)]
            if repo.dialect == "postgresql":
                assert min(d for _, d in partitions(conn, "point_batches")) == day_of(cutoff)
        with read_events(repo.engine) as db:
            items, total = db.sightings(EventFilter(), 1000, 0)
        assert total == len(kept) and [(i.seq, i.track_id) for i in items] == [(p.seq, p.track_id)
                                                                              for p in stored(kept)]


def test_migration_0011_packs_track_points_and_back(db_url: str) -> None:  # noqa: F811
    """A database at 0010 with points in it (a run across midnight, a frame of more than a row's worth of points):
    0011 packs them (per run and day, rows closing at a frame's end), every value kept; the downgrade gives the
    same ``track_points`` rows back."""
    start = datetime(2026, 3, 2, 23, 59, 0, tzinfo=UTC)
    rng = random.Random(7)
    old: list[dict[str, object]] = []
    for run_id, frames in (("m1", 400), ("m2", 30)):
        for seq in range(frames):
            ts = seq / 5.0
            for tid in range(1, (130 if seq == 7 else rng.randrange(0, 6)) + 1):  # frame 7: 130 points
                x = rng.uniform(0, 1000) / 7
                old.append({"run_id": run_id, "seq": seq, "track_id": tid, "day": day_of(start.timestamp() + ts),
                            "ts": ts, "x1": f32(x), "y1": f32(x / 3), "x2": f32(x + 0.1), "y2": f32(x * 1.7),
                            "score": f32(rng.random()), "frames": rng.randrange(1, 9)})
    with Repository(db_url, migrate=False) as repo:
        repo.upgrade("0010")
        with repo.engine.begin() as conn:
            conn.execute(text("INSERT INTO cameras (id, name, created_at) VALUES ('cam', 'cam', :at)"), {"at": start})
            for run_id in ("m1", "m2"):
                conn.execute(text("INSERT INTO runs (id, camera_id, source, status, started_at, frames, meta)"
                                  " VALUES (:r, 'cam', 'v.mp4', 'finished', :at, 400, '{}')"),
                             {"r": run_id, "at": start})
            if repo.dialect == "postgresql":
                from genesis.adapters.db.partitions import create_days

                create_days(conn, {int(r["day"]) for r in old}, ("track_points",))  # type: ignore[call-overload]
            conn.execute(text("INSERT INTO track_points (run_id, seq, track_id, day, ts, x1, y1, x2, y2, score, frames)"
                              " VALUES (:run_id, :seq, :track_id, :day, :ts, :x1, :y1, :x2, :y2, :score, :frames)"),
                         old)
        repo.upgrade()
        for run_id in ("m1", "m2"):
            want = [PathPoint("cam", int(r["track_id"]), int(r["seq"]), float(r["ts"]),  # type: ignore[arg-type]
                              tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")),  # type: ignore[arg-type]
                              float(r["score"]), int(r["frames"]))  # type: ignore[arg-type]
                    for r in old if r["run_id"] == run_id]
            assert repo.points(run_id) == stored(want)
        with repo.engine.connect() as conn:
            rows = conn.execute(text("SELECT run_id, first_seq, last_seq, day, n, points FROM point_batches "
                                     "ORDER BY run_id, first_seq, day")).all()
            assert sum(r.n for r in rows) == len(old)
            assert {(r.run_id, r.day) for r in rows} == {(r["run_id"], r["day"]) for r in old}
            for r in rows:
                seqs = [p.seq for p in stored_points(r.first_seq, r.points)]
                assert seqs[0] == r.first_seq and seqs[-1] == r.last_seq and len(seqs) == r.n
                assert r.n < 100 + 6 or r.first_seq <= 7 <= r.last_seq  # closed at the first frame end after 100
            # no frame's points are cut in two rows
            assert len({(r.run_id, s) for r in rows for s in {p.seq for p in stored_points(r.first_seq, r.points)}}) \
                == len({(r["run_id"], r["seq"]) for r in old})
            if repo.dialect == "postgresql":
                assert [d for _, d in partitions(conn, "point_batches")] == sorted({int(r["day"]) for r in old})
        repo.downgrade("0010")
        with repo.engine.connect() as conn:
            back = [dict(r._mapping) for r in conn.execute(text(
                "SELECT run_id, seq, track_id, day, ts, x1, y1, x2, y2, score, frames FROM track_points "
                "ORDER BY run_id, seq, track_id"))]
            tables = set(conn.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'table'" if repo.dialect == "sqlite" else
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).scalars())
        assert "point_batches" not in tables and not any(t.startswith("point_batches_p") for t in tables)

        def same(r: dict[str, object]) -> tuple[object, ...]:
            return tuple(f32(r[k]) if k in ("x1", "y1", "x2", "y2", "score") else r[k]  # type: ignore[arg-type]
                         for k in ("run_id", "seq", "track_id", "day", "ts", "x1", "y1", "x2", "y2", "score", "frames"))

        assert [same(r) for r in back] == sorted((same(r) for r in old), key=lambda t: (t[0], t[1], t[2]))
        repo.upgrade()
        assert len(repo.points("m1")) == sum(1 for r in old if r["run_id"] == "m1")


def test_batches_whose_frames_overlap_keep_apart(db_url: str) -> None:  # noqa: F811
    """A batch carries the exit points of tracks forgotten since (their last sighting, an older frame): its first
    frame may be an earlier batch's. Both are stored (the key has the first point's track), retries add nothing,
    and the readers give the points in (frame, track) order across the overlapping rows."""
    def pt(tid: int, seq: int) -> PathPoint:
        return PathPoint("cam", tid, seq, seq / 5.0, (1.0, 2.0, 3.0, 4.0), 0.5, 2)

    first = [pt(1, 3), pt(1, 5), pt(3, 9)]
    later = [pt(2, 3), pt(1, 30), pt(4, 7)]  # track 2's exit at frame 3, track 4's at 7; track 1 goes on at 30
    with Repository(db_url) as repo:
        repo.start_run("r1", "cam", "x", {})
        for batch in (first, later, first, later):
            repo.save_outcome("r1", [], [], [], [], batch)
        want = stored(first + later)
        assert repo.points("r1") == want
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM point_batches")).scalar_one() == 2
        with read_events(repo.engine) as db:
            items, total = db.sightings(EventFilter(), 4, 1)
            assert total == 6 and [(i.seq, i.track_id) for i in items] == [(p.seq, p.track_id) for p in want[1:5]]
            assert [b.track_id for b in db.sightings_at("r1", 8)] == [1, 2, 4]


def test_a_batch_that_repeats_part_of_an_earlier_one_stores_only_its_new_points(db_url: str) -> None:  # noqa: F811
    """A sequencer killed after handing a batch to the store and before saving its state is resumed from the
    state before that batch; its next batch covers the same frames and more (every result that has arrived), and
    may begin with an exit point older than the first batch's points. Every point is stored once, none lost."""
    def pt(tid: int, seq: int) -> PathPoint:
        return PathPoint("cam", tid, seq, seq / 5.0, (1.0, 2.0, 3.0, 4.0), 0.5, 2)

    killed = [pt(1, 10), pt(2, 10), pt(1, 11), pt(2, 12)]  # frames 10-12 handed on, the state not saved
    resumed = [*killed, pt(1, 13), pt(2, 14), pt(3, 15)]  # the resumed pass: frames 10-15, the same first point
    exits = [pt(7, 4), pt(1, 13), pt(1, 16), pt(2, 16)]  # a later batch: track 7's exit (frame 4), frame 13 again
    with Repository(db_url) as repo:
        repo.start_run("r1", "cam", "x", {})
        for batch in (killed, resumed, exits, resumed, exits):
            repo.save_outcome("r1", [], [], [], [], batch)
        assert repo.points("r1") == stored([*resumed, pt(7, 4), pt(1, 16), pt(2, 16)])
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT sum(n) FROM point_batches")).scalar_one() == 10


def test_a_batch_that_repeats_part_of_an_earlier_one_counts_each_frame_once_in_the_heatmap(
        db_url: str) -> None:  # noqa: F811
    """The same resumed batch, for the heatmap: its frames a stored heat row counts are left out, its extra frames
    are counted (keyed by the first frame alone, the whole batch was dropped), a retry adds nothing, and neither
    does a batch of an hour the rollup has merged."""
    def seen(tid: int, seq: int, x: float) -> Sighting:
        return Sighting("cam", tid, seq, seq / 5.0, (x, 100.0, x + 20.0, 200.0), 0.9)

    killed = [seen(1, 10, 10), seen(2, 10, 300), seen(1, 11, 12), seen(2, 12, 302)]
    resumed = [*killed, seen(1, 13, 14), seen(2, 14, 304), seen(3, 15, 500)]  # frames 10-15
    later = [seen(1, 16, 16), seen(3, 17, 502)]
    with Repository(db_url) as repo:
        repo.start_run("r1", "cam", "x", {"width": 640, "height": 480})
        store = AnalyticsStore(repo)
        for batch in (killed, resumed, resumed, later, killed):
            repo.save_outcome("r1", batch, [], [], [], [])
        grid = store.heat_grid("cam", None, None)
        assert grid is not None and grid.points == len(resumed) + len(later) == 9
        with repo.engine.connect() as conn:
            spans = sorted(tuple(r) for r in conn.execute(text("SELECT first_seq, last_seq FROM heatmap_cells")))
        assert spans == [(10, 12), (13, 15), (16, 17)]
        before = grid.grid.copy()
        assert store.compact_heat(time.time() + 3 * 3600) == 2  # the run's hour merged into one row
        repo.save_outcome("r1", [*later, seen(4, 18, 600)], [], [], [], [])  # frames 16-17 again, and 18
        after = store.heat_grid("cam", None, None)
        assert after is not None and after.points == 10
        assert int((after.grid - before).sum()) == 1


def test_migration_0012_heat_rows_stored_before_count_their_first_frame(db_url: str) -> None:  # noqa: F811
    """A heat row written before 0012 has no last frame: after the upgrade it keeps its counts and is taken to
    count its first frame only; the downgrade drops the column and keeps the rows."""
    with Repository(db_url, migrate=False) as repo:
        repo.upgrade("0011")
        repo.start_run("r1", "cam", "x", {"width": 640, "height": 480})
        record = repo.run("r1")
        assert record is not None
        started = record.started_at.timestamp()
        hour = datetime.fromtimestamp(started // 3600 * 3600, UTC)
        if repo.dialect == "postgresql":
            from genesis.adapters.db.partitions import create_days

            with repo.engine.begin() as conn:
                create_days(conn, {day_of(started)})
        with repo.engine.begin() as conn:
            grid = np.zeros((60, 80), dtype=np.int64)
            grid[20, 5] = 3
            conn.execute(insert(HeatmapRow.__table__).values(  # the columns of 0011 only
                run_id="r1", hour=hour, first_seq=10, day=day_of(started), camera_id="cam", width=640, height=480,
                cell_px=8, points=3, cells=encode_cells(grid)))
        repo.upgrade()
        store = AnalyticsStore(repo)
        repo.save_outcome("r1", [Sighting("cam", 1, seq, seq / 5.0, (0.0, 0.0, 10.0, 10.0), 0.9)
                                 for seq in (10, 11, 12)], [], [], [], [])
        total = store.heat_grid("cam", None, None)
        assert total is not None and total.points == 3 + 2  # frame 10 taken as counted, 11 and 12 added
        repo.downgrade("0011")
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT sum(points) FROM heatmap_cells")).scalar_one() == 5
