"""The API's track listing reads a page from the runs that hold it (``EventRows.tracks``): every page, total and
filter gives what one query ordering every matching segment gives, on both backends, with runs that start at the
same instant (ties ordered by run id), runs without segments and tracks cut into several segments."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from genesis.adapters.db import Repository, TrackRecord
from genesis.adapters.db.events import EventFilter, page_runs, read_events
from genesis.domain import ZoneEvent, ZoneEventKind
from tests.unit.adapters.test_repository import db_url  # noqa: F401  (the sqlite + postgresql fixture)


def test_page_runs_finds_the_runs_that_hold_a_page() -> None:
    counts = [("a", 3), ("b", 0), ("c", 2), ("d", 4)]  # rows 0-2 in a, 3-4 in c, 5-8 in d
    assert page_runs(counts, 2, 0) == (["a"], 0)
    assert page_runs(counts, 3, 0) == (["a"], 0)
    assert page_runs(counts, 4, 0) == (["a", "b", "c"], 0)
    assert page_runs(counts, 2, 2) == (["a", "b", "c"], 2)
    assert page_runs(counts, 2, 3) == (["c"], 0)
    assert page_runs(counts, 50, 4) == (["c", "d"], 1)
    assert page_runs(counts, 1, 8) == (["d"], 3)
    assert page_runs(counts, 5, 9) == ([], 9)  # past the end
    assert page_runs(counts, 0, 0) == ([], 0)
    assert page_runs([], 50, 0) == ([], 0)


def reference(repo: Repository, f: EventFilter, limit: int, offset: int) -> tuple[list[Any], int]:
    """The listing as one query ordering every matching segment (the former read, timed by the storage bench)."""
    with read_events(repo.engine) as db:
        return db.tracks_sorted(f, limit, offset)


def stored(repo: Repository) -> None:
    start = datetime(2026, 11, 30, 8, tzinfo=UTC)
    # (run, camera, start, segments per track): r2 and r3 start at the same instant; r4 has no segment.
    runs: list[tuple[str, str, datetime, list[int]]] = [
        ("r1", "door", start, [1, 2, 1]),
        ("r3", "door", start + timedelta(hours=1), [1, 1]),
        ("r2", "door", start + timedelta(hours=1), [3, 1, 1, 2]),
        ("r4", "door", start + timedelta(hours=2), []),
        ("r5", "yard", start + timedelta(hours=3), [1, 1, 1]),
        ("r6", "door", start + timedelta(hours=4), [2]),
    ]
    for run_id, camera, at, segments in runs:
        repo.start_run(run_id, camera, "clip.mp4", {})
        with repo.engine.begin() as conn:
            conn.execute(text("UPDATE runs SET started_at = :at WHERE id = :r"), {"at": at, "r": run_id})
        records = []
        for tid, n in enumerate(segments, start=1):
            for seg in range(n):
                name = "ana" if (tid + seg) % 2 else None
                first = 10 * tid + 3 * seg
                records.append(TrackRecord(camera, tid, first, first + 2, first / 5, (first + 2) / 5, 3, name, 1, 1,
                                           0.3 if name else None, seg))
        repo.save_tracks(run_id, records)


@pytest.mark.parametrize("f", [EventFilter(), EventFilter(camera="door"), EventFilter(identity="ana"),
                               EventFilter(camera="door", identity="ana"), EventFilter(camera="nobody"),
                               EventFilter(camera="door", ts_from=3.0)], ids=repr)
def test_every_page_equals_the_ordered_listing(db_url: str, f: EventFilter) -> None:  # noqa: F811
    with Repository(db_url) as repo:
        stored(repo)
        _, total = reference(repo, f, 1000, 0)
        checked: list[Any] = []
        for limit, offset in itertools.product((1, 2, 3, 5, 50), range(total + 2)):
            with read_events(repo.engine) as db:
                got = db.tracks(f, limit, offset)
            assert got == reference(repo, f, limit, offset), (limit, offset)
            checked.append(got)
        if f == EventFilter(camera="door"):
            # the ties: r2 before r3 (same start, run id ascending), r6 (newest) first, r5 (yard) absent
            first, n = checked[0]
            assert n == 15 and first[0].run_id == "r6"
            with read_events(repo.engine) as db:
                runs = [r.run_id for r in db.tracks(f, 50, 0)[0]]
            assert runs == ["r6"] * 2 + ["r2"] * 7 + ["r3"] * 2 + ["r1"] * 4, runs


def assert_capped(repo: Repository, f: EventFilter, cap: int) -> None:
    """Every page of ``f`` is the ordered listing's, and its total reads ``cap`` (which the listing passes)."""
    items, total = reference(repo, f, 1000, 0)
    assert total > cap, total
    for limit, offset in itertools.product((1, 3, 50), range(total + 2)):
        with read_events(repo.engine) as db:
            got, n = db.tracks(f, limit, offset)
        assert n == cap, (limit, offset, n)
        assert got == items[offset:offset + limit], (limit, offset)


@pytest.mark.parametrize("f", [EventFilter(), EventFilter(camera="door"), EventFilter(camera="door", identity="ana"),
                               EventFilter(track=1)], ids=repr)
def test_a_total_past_the_cap_reads_the_cap_and_every_page_is_still_served(
        db_url: str, f: EventFilter, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from genesis.adapters.db import events

    monkeypatch.setattr(events, "TRACKS_TOTAL_CAP", 4)  # the mechanism at a size this data passes (100,000 shipped)
    with Repository(db_url) as repo:
        stored(repo)
        assert_capped(repo, f, 4)


def test_a_camera_with_hundreds_of_runs_is_counted_in_bounded_statements(db_url: str) -> None:  # noqa: F811
    """More runs than one statement may count (1,400: without the group's bound the sixth group would be a UNION ALL
    of 1,024 counts, and SQLite allows 500 terms): a filter that matches in none of them, or in the oldest only,
    still lists and counts right."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with Repository(db_url) as repo:
        with repo.engine.begin() as conn:
            conn.execute(text("INSERT INTO cameras (id, name, created_at) VALUES ('door', 'door', :at)"),
                         {"at": start})
            conn.execute(text("INSERT INTO runs (id, camera_id, source, status, started_at, frames, meta) "
                              "VALUES (:id, 'door', 'clip.mp4', 'finished', :at, 0, '{}')"),
                         [{"id": f"r{i:04d}", "at": start + timedelta(minutes=i)} for i in range(1400)])
        repo.save_tracks("r0000", [TrackRecord("door", 1, 1, 3, 0.2, 0.6, 3, "ana", 1, 1, 0.3, 0)])
        for f in (EventFilter(camera="door", identity="nobody"), EventFilter(camera="door", identity="ana"),
                  EventFilter(camera="door")):
            with read_events(repo.engine) as db:
                got = db.tracks(f, 50, 0)
            assert got == reference(repo, f, 50, 0), f
        assert got[1] == 1 and got[0][0].run_id == "r0000"


def test_a_zone_filter_counts_up_to_its_own_cap(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Under a zone filter (each segment's events looked up) the total stops at ``FILTERED_TOTAL_CAP``, the other
    filters' at ``TRACKS_TOTAL_CAP``; every page is still the one the ordered listing gives."""
    from genesis.adapters.db import events

    monkeypatch.setattr(events, "FILTERED_TOTAL_CAP", 3)
    with Repository(db_url) as repo:
        stored(repo)
        for run_id in ("r1", "r2", "r3", "r6"):
            tids = sorted({t.track_id for t in repo.tracks(run_id)})
            repo.save_outcome(run_id, [], [], [ZoneEvent("door", "hall", t, ZoneEventKind.ENTER, 10 * t, 2.0 * t)
                                               for t in tids if t % 2], [])
        assert_capped(repo, EventFilter(zone="hall"), 3)
        with read_events(repo.engine) as db:
            assert db.tracks(EventFilter(camera="door"), 50, 0)[1] == reference(repo, EventFilter(camera="door"),
                                                                                 50, 0)[1] > 3
