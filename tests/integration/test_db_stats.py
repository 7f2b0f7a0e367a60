"""``genesis db stats``, ``GET /api/db/stats`` and the ``genesis_db_*`` gauges, on real PostgreSQL and SQLite.

Known rows are written through the repository (two cameras; one live run whose epoch times span two UTC
days, one file run whose times are positions in the video); the figures are checked against the database's own
size functions (``pg_total_relation_size``, ``pg_relation_size``, ``pg_indexes_size``; SQLite's ``dbstat``)
and against the rows written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text

from genesis.adapters.db import Repository
from genesis.adapters.db.apikeys import ApiKeyStore
from genesis.adapters.db.storage import StorageStats, storage_stats
from genesis.api import create_app
from genesis.config import Settings
from genesis.domain import Direction, LineCrossing, PathPoint, RecognitionAttempt, Sighting, ZoneEvent, ZoneEventKind
from genesis.ops.collectors import StorageCollector
from genesis.services.rollups import kept_days
from tests.integration.workers import fresh_postgres_database
from tests.services import redis_url

ROOT = Path(__file__).resolve().parents[2]
DAY1 = datetime(2026, 3, 1, 23, 59, 0, tzinfo=UTC).timestamp()  # 60 s before midnight UTC


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('dbstats') / 'genesis.db'}"
    else:
        with fresh_postgres_database() as u:
            yield u


@pytest.fixture(scope="module")
def repo(url: str) -> Iterator[Repository]:
    """Camera ``door``: 400 frames x 3 people at 5 fps from 23:59:00 UTC (the first 60 s on day 1, the rest
    on day 2), 10 attempts (one batch: a packed ``attempt_packs`` row on each day), 4 zone events, 2 crossings.
    Camera ``yard``: a file run, 50 sightings at video positions (its day is the run's start: today). Every
    sighting is a trajectory point, stored as the pipeline does in batches of 25 frames: one packed
    ``point_batches`` row a batch (12 on day 1, 4 on day 2, 2 for ``yard``)."""
    with Repository(url) as r:
        r.start_run("live1", "door", "rtsp://cam", {})
        sightings = [Sighting("door", tid, seq, DAY1 + seq / 5, (1.0, 2.0, 30.0, 80.0), 0.9)
                     for seq in range(400) for tid in (1, 2, 3)]
        attempts = [RecognitionAttempt("door", 1, seq, DAY1 + seq / 5, (1, 2, 3, 4), 0.8, None, 0.7)
                    for seq in range(0, 400, 40)]  # seq 0..360: ts up to 72 s
        zones = [ZoneEvent("door", "lower", tid, ZoneEventKind.ENTER, 10 * tid, DAY1 + 2 * tid) for tid in (1, 2)]
        zones += [ZoneEvent("door", "lower", tid, ZoneEventKind.EXIT, 100 + tid, DAY1 + 20 + tid) for tid in (1, 2)]
        crossings = [LineCrossing("door", "mid", 3, Direction.IN, 50, DAY1 + 10),
                     LineCrossing("door", "mid", 3, Direction.OUT, 350, DAY1 + 70)]
        r.save_outcome("live1", sightings, attempts, zones, crossings)
        for i in range(0, 400, 25):
            r.save_outcome("live1", [], [], [], [], points(sightings[3 * i:3 * (i + 25)]))
        r.start_run("file1", "yard", "clip.mp4", {})
        file_sightings = [Sighting("yard", 7, seq, seq / 5, (0, 0, 10, 10), 0.5) for seq in range(50)]
        r.save_outcome("file1", file_sightings, [], [], [], points(file_sightings[:25]))
        r.save_outcome("file1", [], [], [], [], points(file_sightings[25:]))
        yield r


def points(sightings: list[Sighting]) -> list[PathPoint]:
    """Every sighting stored as a trajectory point (what the figures count does not depend on the sampling)."""
    return [PathPoint(s.camera_id, s.track_id, s.seq, s.ts, s.box, s.score) for s in sightings]


def expected_days(repo: Repository) -> dict[tuple[str, str], dict[str, int]]:
    run = repo.run("file1")
    assert run is not None
    today = run.started_at.date().isoformat()  # a run started seconds before midnight could straddle: never mind
    d1, d2 = date(2026, 3, 1).isoformat(), date(2026, 3, 2).isoformat()
    return {
        ("door", d1): {"point_batches": 12, "attempt_packs": 1, "zone_events": 4, "line_crossings": 1},
        ("door", d2): {"point_batches": 4, "attempt_packs": 1, "line_crossings": 1},
        ("yard", today): {"point_batches": 2},
    }


def check_sizes(repo: Repository, stats: StorageStats) -> None:
    """Each table's bytes are the database's own figures."""
    with repo.engine.connect() as conn:
        for t in stats.tables:
            if repo.dialect == "postgresql":
                # a partitioned table (point_batches, heatmap_cells) is the sum of its day partitions
                parted = conn.execute(text("SELECT relkind = 'p' FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                                      {"t": t.table}).scalar_one()
                rels = ("(SELECT relid FROM pg_partition_tree(CAST(:t AS regclass)) WHERE isleaf)" if parted
                        else "(SELECT CAST(:t AS regclass) AS relid)")
                total, heap, idx = conn.execute(text(
                    "SELECT sum(pg_total_relation_size(relid)), sum(pg_relation_size(relid)), "
                    f"sum(pg_indexes_size(relid)) FROM {rels} r"), {"t": t.table}).one()
                assert (t.bytes, t.heap_bytes, t.index_bytes) == (total, heap, idx), t
                assert t.heap_bytes + t.index_bytes + t.toast_bytes <= t.bytes, t
            else:
                own = conn.execute(text("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = :t"),
                                   {"t": t.table}).scalar_one()
                idx = conn.execute(text(
                    "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN "
                    "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t)"), {"t": t.table}
                ).scalar_one()
                assert (t.heap_bytes, t.index_bytes, t.bytes) == (own, idx, own + idx), t
            n = conn.execute(text(f'SELECT count(*) FROM "{t.table}"')).scalar_one()
            assert t.rows == n and not t.rows_estimated, t
        if repo.dialect == "postgresql":
            assert stats.database_bytes == conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
        else:
            pages = conn.execute(text("PRAGMA page_count")).scalar_one()
            assert stats.database_bytes == pages * conn.execute(text("PRAGMA page_size")).scalar_one()


def test_figures_match_the_database(repo: Repository) -> None:
    stats = storage_stats(repo.engine)
    assert stats.method == ("pg_total_relation_size" if repo.dialect == "postgresql" else "dbstat")
    check_sizes(repo, stats)
    sightings = stats.table("point_batches")
    assert sightings is not None and sightings.rows == 18 and sightings.bytes and sightings.bytes > 0
    assert stats.tables_bytes is not None and stats.tables_bytes <= stats.database_bytes
    days = {(d.camera_id, d.day.isoformat()): d for d in stats.camera_days}
    want = expected_days(repo)
    assert {k: v.rows for k, v in days.items()} == want
    per_row = {t.table: t.bytes_per_row or 0.0 for t in stats.tables}
    for key, d in days.items():
        assert d.bytes_estimate == round(sum(n * per_row[name] for name, n in want[key].items()))
    door = next(c for c in stats.cameras if c.camera_id == "door")
    assert door.days == 2 and door.rows["point_batches"] == 16 and door.rows["attempt_packs"] == 2
    total = sum(d.bytes_estimate or 0 for d in stats.camera_days)
    assert stats.mb_per_camera_day == pytest.approx(total / 3 / 1e6)
    # At a retention: each table's rows a day (door: 2 days) x bytes per row x the days it keeps them.
    keep = {"point_batches": 30, "attempt_packs": 30, "zone_events": 365, "line_crossings": 365}
    kept = storage_stats(repo.engine, keep_days=keep)
    door = next(c for c in kept.cameras if c.camera_id == "door")
    assert door.bytes_at_retention == round(sum(n / 2 * per_row[t] * keep[t] for t, n in door.rows.items()))
    per_day = (door.bytes_estimate or 0) / 2  # a month of points and attempts, a year of the rest
    assert 30 * per_day < door.bytes_at_retention < 365 * per_day
    assert kept.to_dict()["retention_days"] == keep and stats.cameras[0].bytes_at_retention is None


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GENESIS_DATABASE_URL": url, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "genesis.cli.main", "db", "stats", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_table_and_json(repo: Repository, url: str) -> None:
    done = run_cli(url, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    stats = storage_stats(repo.engine)
    mine = stats.to_dict()
    assert doc["method"] == mine["method"] and doc["tables"] == mine["tables"]
    assert doc["camera_days"] == mine["camera_days"]
    # the CLI estimates at the configured retention (the shipped one here)
    assert doc["retention_days"] == kept_days(Settings()) and doc["retention_days"]["tracks"] == 365
    assert doc["pack_after_days"] == 1  # the shipped retention.pack_after_days
    kept = storage_stats(repo.engine, keep_days=kept_days(Settings())).to_dict()["cameras"]
    assert doc["cameras"] == kept and all(c["bytes_at_retention_estimate"] > 0 for c in kept)
    assert doc["mb_per_camera_day_estimate"] == mine["mb_per_camera_day_estimate"] > 0
    done = run_cli(url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "point_batches" in out and "per camera-day (UTC)" in out and "2026-03-02" in out and "door" in out
    assert re.search(r"point_batches\s.*\b18\b", out) and "projection:" in out and "MB per camera-day" in out
    assert ("pg_total_relation_size" if repo.dialect == "postgresql" else "dbstat") in out
    assert "at retention (est.)" in out and "at the configured retention (points 30 d, unknown faces 30 d, events " \
        "365 d, unnamed passages packed after 1 d)" in out.replace("\n", " "), out


def test_api_endpoint_and_roles(repo: Repository, url: str) -> None:
    settings = Settings.model_validate({"database_url": url, "redis_url": redis_url(14), "broker_url": redis_url(15)})
    store = ApiKeyStore(repo.engine)
    keys = {role: store.create(role, f"dbstats-{role}")[0] for role in ("viewer", "operator", "admin")}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/api/db/stats").status_code == 401
        r = client.get("/api/db/stats", headers={"X-API-Key": keys["viewer"]})
        assert r.status_code == 403 and "operator" in r.json()["error"]["message"]
        for role in ("operator", "admin"):
            r = client.get("/api/db/stats", headers={"X-API-Key": keys[role]})
            assert r.status_code == 200, r.text
        body = r.json()
        stats = storage_stats(repo.engine).to_dict()
        # The keys just created grow api_keys; every other table is as the adapter reads it.
        assert [t for t in body["tables"] if t["table"] != "api_keys"] == \
            [t for t in stats["tables"] if t["table"] != "api_keys"]
        assert body["camera_days"] == stats["camera_days"]
        assert body["retention_days"] == kept_days(settings) and "bytes_at_retention_estimate" in body["cameras"][0]
        r = client.get("/api/db/stats?per_day=false", headers={"X-API-Key": keys["operator"]})
        assert r.status_code == 200 and r.json()["camera_days"] == [] and r.json()["tables"]


def test_gauges_cached_a_minute(repo: Repository, url: str) -> None:
    now = [1000.0]
    collector = StorageCollector(Settings.model_validate({"database_url": url}), clock=lambda: now[0])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    first = generate_latest(registry).decode()
    generate_latest(registry)
    now[0] += 59.0
    generate_latest(registry)
    assert collector.reads == 1
    now[0] += 1.0
    generate_latest(registry)
    assert collector.reads == 2
    with repo.engine.connect() as conn:
        if repo.dialect == "postgresql":
            size = conn.execute(text("SELECT sum(pg_total_relation_size(relid)) FROM "
                                     "pg_partition_tree('point_batches') WHERE isleaf")).scalar_one()
        else:
            size = storage_stats(repo.engine, per_day=False).table("point_batches").bytes  # type: ignore[union-attr]
    assert f'genesis_db_table_bytes{{table="point_batches"}} {float(size)}' in first
    assert 'genesis_db_table_rows{table="point_batches"}' in first and "genesis_db_size_bytes " in first
    if repo.dialect == "sqlite":
        assert 'genesis_db_table_rows{table="point_batches"} 18.0' in first


def test_api_and_beat_endpoints_expose_the_gauges(repo: Repository, url: str) -> None:
    from genesis.ops.status import ApiProbe, BeatProbe

    settings = Settings.model_validate({"database_url": url, "redis_url": redis_url(14), "broker_url": redis_url(15)})
    api = ApiProbe(settings)
    for probe in (api, BeatProbe(settings, api.app, list)):
        body = probe.metrics().decode()
        assert 'genesis_db_table_bytes{table="point_batches"}' in body and "genesis_db_size_bytes" in body, body[-2000:]


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)
def test_sqlite_without_dbstat_says_so(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite built without dbstat: the whole file from its page counts, no per-table bytes nor estimates."""
    assert repo.dialect == "sqlite"
    from genesis.adapters.db import storage

    monkeypatch.setattr(storage, "_sqlite_sizes", lambda conn, names: None)
    stats = storage_stats(repo.engine)
    assert stats.method == "page_count" and stats.database_bytes > 0 and stats.tables_bytes is None
    assert all(t.bytes is None for t in stats.tables) and stats.table("point_batches").rows == 18  # type: ignore[union-attr]
    assert stats.camera_days and all(d.bytes_estimate is None for d in stats.camera_days)
    assert stats.mb_per_camera_day is None and stats.to_dict()["mb_per_camera_day_estimate"] is None
