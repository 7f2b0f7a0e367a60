"""``python -m genesis.bench storage`` on a tiny input (6 frames, 1 loop): it runs end to end on PostgreSQL and
SQLite, with the query part on a few copied camera-days, and prints figures that parse."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def test_bench_storage_tiny(models_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_") or k.startswith("GENESIS_TEST_")}
    env["GENESIS_MODELS_DIR"] = str(models_dir)
    out_json = tmp_path / "storage.json"
    cmd = [sys.executable, "-m", "genesis.bench", "storage", "--source",
           str(data_dir / "video" / "opencv4nodejs_people.mp4"), "--frames", "6", "--loops", "1",
           "--query-days", "2", "--query-day-frames", "24", "--query-repeats", "1", "--json", str(out_json)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for backend in ("postgresql", "sqlite"):
        m = re.search(rf"^{backend}: ([\d.]+) bytes per frame, ([\d.]+) MB per camera-day$", out, re.M)
        assert m, out
        assert float(m.group(1)) > 0 and float(m.group(2)) > 0
        merged = re.search(rf"^{backend}: ([\d.]+) MB per camera-day once each ended hour's heat rows are merged", out,
                           re.M)
        assert merged and 0 < float(merged.group(1)) <= float(m.group(2)), out
    assert re.search(r"\| point_batches +\| +[\d.]+ \| +[\d,]+ \|", out), out
    doc = json.loads(out_json.read_text())
    by = {r["backend"]: r for r in doc["results"]}
    assert set(by) == {"postgresql", "sqlite"}
    for r in by.values():
        assert r["frames"] == 6 and r["data_bytes"] > 0 and r["tables"]["point_batches"]["rows"] > 0
        # the pass's heat rows (one per batch), all in the run's first hour: merged into one
        assert r["heat_rows_merged"] == r["tables"]["heatmap_cells"]["rows"] - 1, r
    pg = by["postgresql"]
    # 24 frames a day (6 written, doubled twice), 2 days, and the short run (the pass as written): 9x the packed
    # point rows of one pass.
    assert pg["query_rows"]["point_batches rows"] == 9 * pg["tables"]["point_batches"]["rows"], pg
    assert set(pg["queries_ms"]) >= {"run report, a day-long run (genesis report)",
                                     "run report, a 6-frame run (genesis report)",
                                     "identity timeline (console), one in 10 segments",
                                     "identity timeline (console), a visitor (one in 1,000)",
                                     "day heatmap (genesis heatmap; hours merged by beat)",
                                     "day heatmap, hours not merged (beat not running)", "API sightings page",
                                     "API alerts page"}
    assert all(q["p50"] >= 0 for q in pg["queries_ms"].values())
    rows = pg["query_rows"]  # the queries found the copied rows (times within their runs)
    assert rows["heatmap: foot points"] > 0 and rows["timeline of one in 10: runs"] == 3, rows
    assert rows["report of a day: tracks"] == 4 * rows["report of a short run: tracks"] > 0, rows
    assert "queries over 2 camera-days" in out
    # A year at the shipped retention, from the grown days: events 365 days, faces and points 30, runs not at all.
    year = pg["year_gb_at_retention"]
    assert year["tracks"] > 0 and year["point_batches"] > 0 and year["runs"] == 0, year
    assert re.search(r"^postgresql: a year of this camera at the shipped retention keeps [\d,]+ GB \(", out, re.M), out
    assert pg["at_scale_mb_per_camera_day"] > 0
    # beat's merge of the day's heat rows per run and hour keeps every foot point
    assert rows["heatmap: foot points, hours not merged"] == rows["heatmap: foot points"], rows
    # The retention purge of the first camera-day removed that day's run (its rows grown 4x from the loops') and
    # nothing of the second.
    assert pg["retention_ms"] > 0 and "retention of the first camera-day" in out
    assert pg["retention_rows"]["tracks"] == 4 * pg["tables"]["tracks"]["rows"], pg
    assert pg["retention_rows"]["zone_events"] == 4 * pg["tables"]["zone_events"]["rows"], pg
    # Then the grown days aged past pack_after_days: their unnamed passages packed (those that keep a face too),
    # the rest kept as written; then past the 30-day retentions: points, attempts and unknown faces purged, nothing
    # left to pack; the reads of a packed run timed; the retention of the second day (packed) removes every segment.
    packed = pg["packed"]
    assert packed["packed"]["packs"] >= 2 and packed["packed"]["tracks"] > 0, packed  # day 2 and the short run
    assert packed["late_packed"]["tracks"] == 0, packed  # the tracks that keep a face were packed with the rest
    month = packed["month_tables_mb_per_camera_day"]
    assert month["passage_packs"] > 0 and month["point_batches"] > 0 and month["track_faces"] > 0, month
    assert "point_batches" not in packed["tables_mb_per_camera_day"], packed
    assert packed["one_pass_mb_per_camera_day"] < packed["month_mb_per_camera_day"] < pg["at_scale_mb_per_camera_day"]
    assert packed["mb_per_camera_day"] > 0 and packed["tables_mb_per_camera_day"]["passage_packs"] > 0, packed
    assert packed["year_gb_at_retention"]["passage_packs"] > 0, packed
    assert re.search(r"^postgresql: [\d,.]+ MB per camera-day from pack_after_days until the 30-day retentions", out,
                     re.M), out
    assert re.search(r"^postgresql: [\d,.]+ MB per camera-day once packed \(a day older than the 30-day", out,
                     re.M), out
    assert packed["one_pass_mb_per_camera_day"] > 0 and packed["pack_bytes_a_segment"]["one pass (no repeats)"] > 0
    assert re.search(r"^postgresql: a year of this camera at the shipped retention, with packing, keeps", out, re.M)
    assert set(packed["queries_ms"]) == {"API sightings page, a packed run, zone filter",
                                         "API sightings page, a packed run, zone filter, page 100",
                                         "run report, a packed day-long run (genesis report)",
                                         "API tracks page, packed days", "API tracks page, a packed run, page 100",
                                         "API tracks page, a packed run, zone filter"}, packed
    assert packed["retention_rows"]["passage_packs"] >= 1, packed
    assert packed["retention_rows"]["tracks"] == 4 * pg["tables"]["tracks"]["rows"], packed
