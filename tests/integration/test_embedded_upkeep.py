"""An embedded run does what beat does in the distributed mode (it has no beat): the retention purge and the
storage upkeep when it starts and at their intervals while it runs (`genesis.pipeline.upkeep`), with the shipped
retention. Before, an embedded live camera kept every row forever and every per-batch heatmap row."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from genesis.adapters.db import Repository, TrackRecord
from genesis.adapters.db.storage import set_run_span
from genesis.adapters.db.tables import HeatmapRow
from genesis.config import CameraConfig, Settings
from genesis.domain import PathPoint, Sighting, ZoneEvent, ZoneEventKind
from genesis.pipeline.embedded import run_embedded
from genesis.pipeline.upkeep import Upkeep

DAY_S = 86400


def _old_run(repo: Repository, run_id: str, days_ago: float) -> None:
    """A finished run of camera ``door`` that started ``days_ago`` days ago: two batches of one track (two heat
    rows of the same hour), a zone entry, its track segment."""
    started = time.time() - days_ago * DAY_S
    repo.start_run(run_id, "door", "old", {"width": 640, "height": 480, "fps": 5.0})
    set_run_span(repo.engine, run_id, started, started + 10)
    box = (100.0, 100.0, 140.0, 200.0)
    for seqs in ((0, 1, 2), (3, 4, 5)):
        repo.save_outcome(run_id, [Sighting("door", 1, s, s / 5, box, 0.9) for s in seqs], [],
                          [ZoneEvent("door", "hall", 1, ZoneEventKind.ENTER, seqs[0], seqs[0] / 5)] if seqs[0] == 0
                          else [], [], [PathPoint("door", 1, s, s / 5, box, 0.9) for s in seqs])
    repo.save_tracks(run_id, [TrackRecord("door", 1, 0, 5, 0.0, 1.0, 6, None, 0, 0, None)])
    repo.finish_run(run_id, "finished", 6, {"frames": 6})


def _heat_rows(repo: Repository, run_id: str) -> list[tuple[int, int]]:
    with repo.engine.connect() as conn:
        return [(int(a), int(b)) for a, b in conn.execute(
            select(HeatmapRow.first_seq, HeatmapRow.points).where(HeatmapRow.run_id == run_id)
            .order_by(HeatmapRow.first_seq))]


def test_an_embedded_run_purges_past_retention_and_merges_ended_hours(settings: Settings, data_dir: Path) -> None:
    with Repository(settings.database_url) as repo:
        _old_run(repo, "year-old", settings.retention.events_days + 2)  # past every retention
        _old_run(repo, "last-week", 7)  # within every retention: kept, its hour's heat rows merged, its passage packed
        _old_run(repo, "two-months", 60)  # its points gone, its unnamed passage packed
        assert _heat_rows(repo, "last-week") == [(0, 3), (3, 3)]
        two_months = (repo.tracks("two-months"), repo.zone_events("two-months"))
        last_week = (repo.tracks("last-week"), repo.zone_events("last-week"))
    out = run_embedded(settings, str(data_dir / "video" / "opencv4nodejs_people.mp4"),
                       CameraConfig.model_validate({"id": "cam"}), max_frames=2)
    upkeep = out.report["run"]["upkeep"]
    assert upkeep["failures"] == 0 and upkeep["heat_rows_merged"] == 2, upkeep
    assert upkeep["purged"] == {"heatmap_cells": 2, "point_batches": 12, "tracks": 1, "zone_events": 1}, upkeep
    # a day after their day (retention.pack_after_days: 1), one pack per run
    assert upkeep["passages_packed"] == {"packs": 2, "tracks": 2, "zone_events": 2}, upkeep
    with Repository(settings.database_url) as repo:
        assert repo.tracks("year-old") == [] and repo.points("year-old") == [] and repo.zone_events("year-old") == []
        assert _heat_rows(repo, "year-old") == []
        assert len(repo.tracks("last-week")) == 1 and len(repo.points("last-week")) == 6
        assert _heat_rows(repo, "last-week") == [(-1, 6)]  # one row for the hour, every foot point kept
        assert (repo.tracks("last-week"), repo.zone_events("last-week")) == last_week
        assert (repo.tracks("two-months"), repo.zone_events("two-months")) == two_months
        assert repo.points("two-months") == []


def test_upkeep_runs_at_its_intervals_and_survives_a_failure(settings: Settings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Due at the first tick, then once per interval of the clock; a failing purge is logged and counted and
    tried again at the next interval, without raising; nothing at all when rollups are off."""
    from genesis.pipeline import upkeep as mod

    calls: list[str] = []
    now = [0.0]
    mp = monkeypatch
    mp.setattr(mod, "storage_upkeep", lambda repo, s: calls.append("storage") or {"heat_rows_merged": 0,
                                                                                  "partitions_created": [],
                                                                                  "passages_packed": {}})

    def failing_purge(repo: object, s: object) -> dict[str, int]:
        calls.append("purge")
        raise RuntimeError("database is locked")

    mp.setattr(mod, "purge", failing_purge)
    with Repository(settings.database_url) as repo:
        u = Upkeep(repo, settings, clock=lambda: now[0])
        u.tick()
        u.tick()
        assert calls == ["purge", "storage"] and u.failures == 1
        now[0] = max(settings.rollups.purge_every_s, settings.rollups.storage_every_s)
        u.tick()
        assert calls == ["purge", "storage"] * 2 and u.failures == 2
        off = Upkeep(repo, settings.model_copy(update={"rollups": settings.rollups.model_copy(
            update={"enabled": False})}), clock=lambda: now[0])
        off.tick()
        assert calls == ["purge", "storage"] * 2 and off.summary()["failures"] == 0
