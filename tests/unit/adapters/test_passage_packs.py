"""Passages of past days packed (``passage_packs``): every reader gives what it gave from the rows, on both
backends.

The rows are the rollup tests' (``tests.analytics_data``: a live run and a file run, zone visits, crossings, named
and unnamed tracks, trajectory points); the packing takes every unnamed track in packs of a few tracks, so that the
readers merge many packs whose tracks interleave with the rows left in the tables. Compared before and after:
the runs' segments, zone events and crossings (what ``genesis report`` reads), the segment spans of their points,
the API's track pages with each filter, the run's segment count, and the rollups recomputed from them."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from genesis.adapters.db import Repository, TrackRecord
from genesis.adapters.db import packs as codec
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.db.events import EventFilter, read_events
from genesis.adapters.db.repository import segment_spans
from genesis.adapters.db.tables import LineCrossingRow, PassagePack, Track, ZoneEventRow
from genesis.adapters.db.tables_identities import TrackFace
from genesis.config import load_settings
from genesis.config.settings import ConfigError
from genesis.domain import Direction, LineCrossing, PathPoint, Sighting, ZoneEvent, ZoneEventKind
from genesis.services.rollups import purge, rollup, storage_upkeep
from tests.analytics_data import CAMERA, assert_matches, backdate, expected, populate, stored
from tests.unit.adapters.test_repository import db_url  # noqa: F401  (the sqlite + postgresql fixture)

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp()
RUNS = ("live", "file")
FILTERS = [EventFilter(), EventFilter(camera=CAMERA), EventFilter(run="live"), EventFilter(zone="hall"),
           EventFilter(track=4), EventFilter(identity="alice"), EventFilter(ts_from=T0 + 3600),
           EventFilter(ts_from=T0 + 2.5 * 3600), EventFilter(run="live", ts_from=T0 + 2 * 3600, zone="hall"),
           EventFilter(ts_to=600.0), EventFilter(zone="nowhere")]


def test_the_codec_gives_back_every_value_exactly() -> None:
    rng = random.Random(5)
    segs = [TrackRecord("cam <b>1</b>", tid, tid * 3 - 7, tid * 3 + 5, 1.7e9 + rng.random() * 1e5, 1.7e9 + 2e5, 6,
                        rng.choice([None, "zoë", ""]), rng.randint(0, 9), rng.randint(0, 3),
                        rng.choice([None, rng.random(), -0.0, math.inf]), seg, rng.choice([None, 12.5]),
                        rng.choice([None, "gap", "jump"]))
            for tid in rng.sample(range(-5, 10_000), 300) for seg in range(rng.randint(1, 3))]
    events = [ZoneEvent("cam <b>1</b>", rng.choice(["hall", "'; DROP", "ü"]), rng.randint(0, 50),
                        rng.choice(list(ZoneEventKind)), rng.randint(0, 2**40), rng.random() * 100)
              for _ in range(400)]
    events = list({(e.seq, e.zone, e.track_id, e.kind): e for e in events}.values())
    crossings = [LineCrossing("c2", "door", rng.randint(0, 50), rng.choice(list(Direction)), s, s / 5.0)
                 for s in range(200)]
    p = codec.decode(codec.encode(codec.columns_of(segs, events, crossings)))
    assert codec.track_records(p) == sorted(segs, key=lambda t: (t.track_id, t.segment))
    assert codec.zone_events(p) == sorted(events, key=lambda e: (e.seq, e.zone, e.track_id, e.kind.value))
    assert codec.crossings(p) == sorted(crossings, key=lambda c: (c.seq, c.line, c.track_id))
    empty = codec.decode(codec.encode(codec.columns_of([], [], [])))
    assert codec.track_records(empty) == [] and codec.zone_events(empty) == [] and codec.crossings(empty) == []
    with pytest.raises(ValueError, match="not a passage pack"):
        codec.decode(b"GF2" + bytes(20))


def _reads(repo: Repository) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for run in RUNS:
        out[f"{run} tracks"] = repo.tracks(run)
        out[f"{run} tracks 3,4,9"] = repo.tracks(run, [3, 4, 9])
        out[f"{run} events"] = repo.zone_events(run)
        out[f"{run} events 4"] = repo.zone_events(run, [4])
        out[f"{run} crossings"] = repo.line_crossings(run)
        with repo.engine.connect() as conn:
            out[f"{run} spans"] = segment_spans(conn, run)
            out[f"{run} spans 2,4"] = segment_spans(conn, run, [2, 4])
        with read_events(repo.engine) as db:
            out[f"{run} count"] = db.track_count(run)
    with read_events(repo.engine) as db:
        for f in FILTERS:
            for limit, offset in ((50, 0), (3, 0), (4, 5), (7, 11), (2, 19)):
                out[f"page {f} {limit} {offset}"] = db.tracks(f, limit, offset)
            for limit, offset in ((50, 0), (20, 300), (200, 1000)):  # points are kept while passages are packed
                out[f"sightings {f} {limit} {offset}"] = db.sightings(f, limit, offset)
        for run in RUNS:
            for seq in (40, 900, 4000, 11000):
                out[f"{run} around {seq}"] = db.sightings_at(run, seq)
    return out


def _rows(repo: Repository, table: Any) -> int:
    with repo.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_packed_passages_read_as_the_rows_did(db_url: str) -> None:  # noqa: F811
    with Repository(db_url) as repo:
        raw = populate(repo, T0)
        with repo.engine.begin() as conn:  # a track that keeps a face is packed like the others
            conn.execute(insert(TrackFace).values(run_id="live", track_id=4, segment=0, camera_id=CAMERA, ts=T0,
                                                  model="m", dim=2, vector=b"12345678", created_at=datetime.now(UTC)))
        before = _reads(repo)
        named = [t for run in RUNS for t in repo.tracks(run) if t.identity is not None]
        counts = AnalyticsStore(repo).pack_passages(T0 + 4 * 3600, part_tracks=3)
        assert counts["packs"] >= 5
        assert counts["tracks"] == sum(1 for run in RUNS for t in repo.tracks(run)) - len(named)
        assert counts["zone_events"] > 0 and counts["line_crossings"] > 0
        # only the named tracks are left as rows
        with repo.engine.connect() as conn:
            left = {(r, t) for r, t in conn.execute(select(Track.run_id, Track.track_id))}
        assert left == {(r, t) for (r, t) in raw.identity}
        assert _rows(repo, ZoneEventRow) < len(raw.events) and _rows(repo, LineCrossingRow) < len(raw.crossings)
        after = _reads(repo)
        for key, value in before.items():
            assert after[key] == value, key
        assert AnalyticsStore(repo).pack_passages(T0 + 4 * 3600) == dict.fromkeys(counts, 0)  # nothing twice

        # the rollups, recomputed from the packs and the rows left, are what the raw rows imply
        store = AnalyticsStore(repo)
        rollup(repo, "minute", T0, T0 + 4 * 3600, now=T0 + 5 * 3600)
        want = expected(raw, "minute")
        for kind in ("camera", "zone", "line", "identity", "identity_zone"):
            assert_matches(stored(store.rollups(kind, "minute"), kind), want[kind])


def test_the_sightings_of_a_run_whose_zone_events_are_all_packed_keep_their_zone(db_url: str) -> None:  # noqa: F811
    """A run of unnamed, faceless tracks: a day later every zone event of it is packed, while its points are kept
    30 days; ``/api/sightings?zone=`` still lists the points of the tracks that were in the zone."""
    with Repository(db_url) as repo:
        repo.start_run("quiet", CAMERA, "rtsp://quiet", {"width": 640, "height": 360})
        backdate(repo, "quiet", T0, T0 + 60)
        box = (10.0, 10.0, 50.0, 90.0)
        points = [PathPoint(CAMERA, tid, seq, T0 + seq, box, 0.9) for tid in (1, 2) for seq in range(tid, 30, 3)]
        repo.save_outcome("quiet", [Sighting(CAMERA, p.track_id, p.seq, p.ts, box, 0.9) for p in points], [],
                          [ZoneEvent(CAMERA, "hall", 2, ZoneEventKind.ENTER, 5, T0 + 5)], [], points)
        repo.save_tracks("quiet", [TrackRecord(CAMERA, tid, tid, 28 + tid // 2, T0 + tid, T0 + 28, 10, None, 0, 0,
                                               None) for tid in (1, 2)])
        f = EventFilter(run="quiet", zone="hall")
        with read_events(repo.engine) as db:
            before = db.sightings(f, 50, 0)
        assert before[1] == sum(1 for p in points if p.track_id == 2) and {s.track_id for s in before[0]} == {2}
        assert AnalyticsStore(repo).pack_passages(T0 + 86400)["zone_events"] == 1
        assert _rows(repo, ZoneEventRow) == 0 and _rows(repo, Track) == 0
        with read_events(repo.engine) as db:
            assert db.sightings(f, 50, 0) == before
            assert db.sightings(EventFilter(run="quiet", zone="nowhere"), 50, 0) == ([], 0)


def test_a_pack_names_its_zones_and_the_migration_names_those_of_packs_before_it(db_url: str) -> None:  # noqa: F811
    """``passage_packs.zones`` (migration 0015) lets a zone filter skip the packs without the zone: written with
    each pack, filled in by the migration for packs stored before it, matched exactly (LIKE's wildcards in a
    zone's name are not wildcards)."""
    from sqlalchemy import text

    with Repository(db_url) as repo:
        populate(repo, T0)
        repo.start_run("odd", CAMERA, "rtsp://odd", {})
        backdate(repo, "odd", T0, T0 + 60)
        repo.save_outcome("odd", [], [], [ZoneEvent(CAMERA, "50%_off", 1, ZoneEventKind.ENTER, 3, T0 + 3)], [])
        repo.save_tracks("odd", [TrackRecord(CAMERA, 1, 1, 9, T0 + 1, T0 + 9, 9, None, 0, 0, None)])
        AnalyticsStore(repo).pack_passages(T0 + 4 * 3600, part_tracks=3)
        with repo.engine.connect() as conn:
            written = {(r, d, t): z for r, d, t, z in conn.execute(select(
                PassagePack.run_id, PassagePack.day, PassagePack.first_track, PassagePack.zones))}
            assert written[("odd", int(T0 // 86400), 1)] == "\x1f50%_off\x1f"
            assert set(written.values()) >= {"\x1fhall\x1f"}
            for zone, runs in (("50%_off", {"odd"}), ("5%", set()), ("50__off", set()), ("hall", {"live", "file"})):
                assert {str(r) for r in conn.execute(select(PassagePack.run_id).where(
                    codec.holding_zone(zone))).scalars()} == runs, zone
        with read_events(repo.engine) as db:
            before = [db.tracks(EventFilter(zone=z), 50, 0) for z in ("hall", "50%_off", "5%")]
        repo.downgrade("0014")
        repo.upgrade()
        with repo.engine.connect() as conn:
            assert {(r, d, t): z for r, d, t, z in conn.execute(text(
                "SELECT run_id, day, first_track, zones FROM passage_packs"))} == written
        with read_events(repo.engine) as db:
            assert [db.tracks(EventFilter(zone=z), 50, 0) for z in ("hall", "50%_off", "5%")] == before
        assert before[1][1] == 1 and before[2][1] == 0


def test_a_packed_visit_left_open_stays_open_in_a_running_runs_rollups(db_url: str) -> None:  # noqa: F811
    """A track lost inside a zone leaves its visit open; while its run goes on, the rollups count the visit up to
    now, packed or not (``open_visits``)."""
    with Repository(db_url) as repo:
        repo.start_run("cam", CAMERA, "rtsp://cam", {})
        backdate(repo, "cam", T0, None)
        repo.save_outcome("cam", [], [], [ZoneEvent(CAMERA, "hall", 1, ZoneEventKind.ENTER, 10, T0 + 5.0)], [])
        repo.save_tracks("cam", [TrackRecord(CAMERA, 1, 10, 20, T0 + 5.0, T0 + 10.0, 11, None, 0, 0, None)])
        store = AnalyticsStore(repo)
        later = T0 + 3 * 86400
        rollup(repo, "hour", later, later + 3600, now=later + 3600)
        first = store.rollups("zone", "hour")
        assert [r["peak_occupancy"] for r in first] == [1]  # the open visit: one person in the zone all the hour
        assert store.pack_passages(T0 + 86400)["packs"] == 1
        with repo.engine.connect() as conn:
            assert conn.execute(select(PassagePack.open_visits)).scalar_one() == 1
        rollup(repo, "hour", later, later + 3600, now=later + 3600)
        assert store.rollups("zone", "hour") == first


def test_beat_packs_a_day_later_and_purges_packs_whole(db_url: str) -> None:  # noqa: F811
    now = time.time()
    t0 = (now - 40 * 86400) // 3600 * 3600
    with Repository(db_url) as repo:
        populate(repo, t0)
        settings = load_settings(environ={})
        assert settings.retention.packed_after_days() == 1  # the shipped default
        before = {run: (repo.tracks(run), repo.zone_events(run), repo.line_crossings(run)) for run in RUNS}
        done = storage_upkeep(repo, settings, now=now)
        assert done["passages_packed"]["packs"] >= 2  # one per run and day at least
        assert {run: (repo.tracks(run), repo.zone_events(run), repo.line_crossings(run)) for run in RUNS} == before
        off = load_settings(environ={"GENESIS_RETENTION__PACK_AFTER_DAYS": "0"})
        assert off.retention.packed_after_days() is None
        assert storage_upkeep(repo, off, now=now)["passages_packed"] == {}
        # the packs go whole once their newest row is past the events' retention
        packs = _rows(repo, PassagePack)
        keep = load_settings(environ={"GENESIS_RETENTION__EVENTS_DAYS": "60"})
        assert purge(repo, keep, now=now)["passage_packs"] == 0
        short = load_settings(environ={"GENESIS_RETENTION__EVENTS_DAYS": "35"})
        counts = purge(repo, short, now=now)
        assert counts["passage_packs"] == packs
        assert _rows(repo, PassagePack) == 0
        assert counts["tracks"] == sum(len(t) for t, _, _ in before.values())
        assert all(repo.tracks(run) == [] and repo.zone_events(run) == [] for run in RUNS)


def test_db_stats_estimates_a_year_with_the_passages_packed(db_url: str) -> None:  # noqa: F811
    """``genesis db stats``' estimate at retention counts a camera's passages as rows for ``pack_after_days`` and
    packed for the rest of the year, except the named ones (rows all year), at their share of the newest run's
    segments (a track that keeps a face is packed like the others): before anything is packed, a packed
    segment's bytes come from packing the newest run's segments in memory; once packed, from the packs' table."""
    from genesis.adapters.db.storage import PASSAGE_TABLES, storage_stats
    from genesis.services.rollups import kept_days

    settings = load_settings(environ={})
    keep = kept_days(settings)
    with Repository(db_url) as repo:
        populate(repo, T0)
        with repo.engine.begin() as conn:  # the newest run's track 4 keeps a face
            conn.execute(insert(TrackFace).values(run_id="file", track_id=4, segment=0, camera_id=CAMERA, ts=T0,
                                                  model="m", dim=2, vector=b"12345678", created_at=datetime.now(UTC)))

        def estimate(pack: int | None) -> int:
            stats = storage_stats(repo.engine, keep_days=keep, pack_after_days=pack)
            (camera,) = stats.cameras
            assert camera.bytes_at_retention is not None
            return camera.bytes_at_retention

        rows_only = estimate(None)
        sampled = estimate(1)
        assert 0 < sampled < estimate(30) < rows_only
        newest = repo.tracks("file")
        named_share = sum(1 for t in newest if t.identity is not None) / len(newest)
        assert 0 < named_share < 1
        AnalyticsStore(repo).pack_passages(T0 + 4 * 3600)
        stats = storage_stats(repo.engine, keep_days=keep, pack_after_days=1)
        per_row = {t.table: t.bytes_per_row or 0.0 for t in stats.tables}
        (camera,) = stats.cameras
        table = stats.table("passage_packs")
        assert table is not None and table.bytes
        with repo.engine.connect() as conn:
            held = int(conn.execute(select(func.sum(PassagePack.segments))).scalar_one())
        hot = camera.rows["tracks"]
        days = camera.days
        want = sum(n / days * per_row[t] * keep[t] for t, n in camera.rows.items()
                   if t not in (*PASSAGE_TABLES, "passage_packs"))
        per_segment = sum(camera.rows.get(t, 0) / hot * per_row[t] for t in PASSAGE_TABLES)
        for rows_days, share in ((1, 1 - named_share), (365, named_share)):
            want += (hot + held) / days * share * (per_segment * rows_days + table.bytes / held * (365 - rows_days))
        assert camera.bytes_at_retention == round(want)


def test_a_part_another_upkeep_packed_first_is_left_to_it(db_url: str) -> None:  # noqa: F811
    """Two upkeeps packing at once (beat's task run twice, an embedded run beside a site's beat): the second to
    write a pack of the same key rolls its part back, rows and all, instead of failing or packing twice."""
    from genesis.adapters.db.analytics import _pack_part, _packable, _PackedElsewhereError

    with Repository(db_url) as repo:
        populate(repo, T0)
        store = AnalyticsStore(repo)
        with repo.engine.connect() as conn:
            (span,) = [s for s in store.run_spans(conn, None) if s.run_id == "live"]
            days = _packable(conn, span, T0 + 4 * 3600)
        (day, tracks), = days.items()
        first = tracks[:3]
        with repo.engine.begin() as conn:  # the other upkeep's pack of the same key, committed first
            conn.execute(insert(PassagePack).values(
                run_id="live", day=day, first_track=first[0], last_track=first[-1], first_ts=T0, last_ts=T0,
                tracks=0, segments=0, zone_events=0, crossings=0, open_visits=0,
                data=codec.encode(codec.columns_of([], [], []))))
        before = repo.tracks("live", first)
        counts = store.pack_passages(T0 + 4 * 3600, part_tracks=3)
        assert counts["packs"] > 0
        with repo.engine.connect() as conn:
            assert sorted(conn.execute(select(Track.track_id).where(
                Track.run_id == "live", Track.track_id.in_(first))).scalars()) == sorted({t.track_id for t in before})
        with pytest.raises(_PackedElsewhereError), repo.engine.begin() as conn:  # the same key again: refused
            _pack_part(conn, span, day, first)
        assert repo.tracks("live", first) == before


def test_a_newer_state_stored_after_its_track_was_packed_takes_it_out_of_its_pack(db_url: str) -> None:  # noqa: F811
    """Midnight's packing took a track from its rows while the store queue still held its last batch (a backlog):
    that newer state is not lost. The track leaves its pack (its events back as rows, the pack written again
    without it), its new state is stored as rows, and the next upkeep packs it again; every reader sees the
    track's last state once."""
    with Repository(db_url) as repo:
        populate(repo, T0)
        store = AnalyticsStore(repo)
        late = next(t for t in repo.tracks("live") if t.identity is None)
        tid = late.track_id
        counts = store.pack_passages(T0 + 4 * 3600, part_tracks=4)
        assert counts["tracks"] > 0
        packs_before = _rows(repo, PassagePack)
        rows_named = _rows(repo, Track)
        others = {run: (repo.tracks(run), repo.zone_events(run), repo.line_crossings(run)) for run in RUNS}
        mine_events = repo.zone_events("live", [tid])
        newer = dataclasses.replace(late, last_seq=late.last_seq + 4, last_ts=late.last_ts + 2.0,
                                    frames=late.frames + 4)
        exit_again = ZoneEvent(CAMERA, "hall", tid, ZoneEventKind.ENTER, late.last_seq + 3, late.last_ts + 1.5)
        repo.save_outcome("live", [], [], [exit_again], [])
        repo.save_tracks("live", [newer])
        assert repo.tracks("live", [tid]) == [newer]
        assert sorted(repo.zone_events("live", [tid]), key=str) == sorted([*mine_events, exit_again], key=str)
        with repo.engine.connect() as conn:  # the track's rows are rows again, and in no pack
            assert conn.execute(select(func.count()).select_from(Track).where(
                Track.run_id == "live", Track.track_id == tid)).scalar_one() == 1
            for (blob,) in conn.execute(select(PassagePack.data).where(PassagePack.run_id == "live")):
                p = codec.decode(bytes(blob))
                assert tid not in set(p.segments.ints["track_id"].tolist())
                assert tid not in set(p.events.ints["track_id"].tolist())
        assert _rows(repo, PassagePack) in (packs_before, packs_before - 1)
        for run in RUNS:  # nothing else changed
            want = others[run]
            if run == "live":
                want = ([newer if t.track_id == tid else t for t in want[0]],
                        sorted([*want[1], exit_again], key=lambda e: (e.seq, e.zone, e.track_id, e.kind.value)),
                        want[2])
            assert (repo.tracks(run), repo.zone_events(run), repo.line_crossings(run)) == want, run
        # the next upkeep packs the track again; then the older batch again (a dead letter replayed) changes nothing
        again = store.pack_passages(T0 + 4 * 3600)
        assert again["tracks"] == 1
        assert repo.tracks("live", [tid]) == [newer]
        repo.save_tracks("live", [late])
        assert repo.tracks("live", [tid]) == [newer] and _rows(repo, Track) == rows_named


def test_a_days_tracks_are_packed_together_pack_after_days_later() -> None:
    """The cutoff is the start of a UTC day: a day's tracks are packed together (one pack per run and day),
    ``pack_after_days`` days after their day, whenever the upkeep runs that day."""
    day = 86400.0
    noon = 20_000 * day + 12 * 3600
    one = load_settings(environ={}).retention
    assert one.pack_cutoff(noon) == 20_000 * day  # yesterday's tracks, not today's
    assert one.pack_cutoff(20_000 * day) == 20_000 * day  # from the first second of the day
    assert one.pack_cutoff(20_001 * day - 1) == 20_000 * day
    seven = load_settings(environ={"GENESIS_RETENTION__PACK_AFTER_DAYS": "7"}).retention
    assert seven.pack_cutoff(noon) == 19_994 * day and seven.packed_after_days() == 7
    off = load_settings(environ={"GENESIS_RETENTION__PACK_AFTER_DAYS": "0"}).retention
    assert off.pack_cutoff(noon) is None and off.packed_after_days() is None
    with pytest.raises(ConfigError, match="pack_after_days"):
        load_settings(environ={"GENESIS_RETENTION__PACK_AFTER_DAYS": "-1"})


def test_a_batch_written_again_after_its_tracks_were_packed_adds_nothing_twice(db_url: str) -> None:  # noqa: F811
    """A dead letter replayed a day or more later stores its batch again after its tracks were packed: the packed
    segments are not written back as rows (the pack holds each track's last state), the zone events and crossings
    the packs hold are not repeated, and a zone event no one stored before is kept."""
    with Repository(db_url) as repo:
        populate(repo, T0)
        before = _reads(repo)
        tracks = {run: repo.tracks(run) for run in RUNS}
        events = {run: repo.zone_events(run) for run in RUNS}
        crossings = {run: repo.line_crossings(run) for run in RUNS}
        counts = AnalyticsStore(repo).pack_passages(T0 + 4 * 3600)
        assert counts["tracks"] > 0
        rows = {t: _rows(repo, t) for t in (Track, ZoneEventRow, LineCrossingRow)}
        for run in RUNS:
            repo.save_outcome(run, [], [], events[run], crossings[run])
            repo.save_tracks(run, tracks[run])
        assert {t: _rows(repo, t) for t in rows} == rows
        assert _reads(repo) == before
        packed = next(t for t in tracks["live"] if t.identity is None)
        late = ZoneEvent(CAMERA, "hall", packed.track_id, ZoneEventKind.ENTER, packed.last_seq + 1, packed.last_ts)
        repo.save_outcome("live", [], [], [late], [])
        mine = [e for e in events["live"] if e.track_id == packed.track_id]
        assert sorted(repo.zone_events("live", [packed.track_id]), key=str) == sorted([*mine, late], key=str)
        assert _rows(repo, ZoneEventRow) == rows[ZoneEventRow] + 1


def test_a_reader_sees_each_passage_once_while_the_upkeep_packs(db_url: str) -> None:  # noqa: F811
    """A read transaction is one snapshot (PostgreSQL: REPEATABLE READ): rows read before a packing commits and
    packs read after it are of the same moment, so no passage is seen twice, or not at all."""
    from genesis.adapters.db.repository import read_connection

    with Repository(db_url) as repo:
        populate(repo, T0)
        total = sum(len(repo.tracks(run)) for run in RUNS)
        with read_connection(repo.engine) as conn:
            rows = int(conn.execute(select(func.count()).select_from(Track)).scalar_one())
            assert AnalyticsStore(repo).pack_passages(T0 + 4 * 3600)["packs"] > 0  # committed meanwhile
            packed = int(conn.execute(select(func.coalesce(func.sum(PassagePack.segments), 0))).scalar_one())
            assert rows + packed == total
        assert sum(len(repo.tracks(run)) for run in RUNS) == total
