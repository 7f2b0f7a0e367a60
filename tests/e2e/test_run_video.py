"""`genesis run` on the real crowd video: ad-hoc zones and lines, annotated video, summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
from sqlalchemy import text

from genesis.adapters.db import Repository
from genesis.adapters.db.analytics import AnalyticsStore
from tests.e2e.conftest import CLI


def test_run_with_zone_line_and_annotation(cli: CLI, tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    video = data_dir / "video" / "opencv4nodejs_people.mp4"
    proc = cli(
        "run", "--source", str(video), "--camera", "lobby", "--out", str(out), "--annotate",
        "--stride", "3", "--max-frames", "40",
        "--zone", "left:0,0,0.5,0,0.5,1,0,1", "--line", "mid:0.5,0,0.5,1",
    )
    for word in ("frames", "people tracked", "Zones", "Lines", "left", "mid"):
        assert word in proc.stdout, proc.stdout
    report = json.loads((out / "report.json").read_text())
    res, run = report["results"], report["run"]
    assert res["frames"] == 40 and run["frames_processed"] == 40 and run["stride"] == 3
    assert res["people"]["tracks"] >= 5 and res["people"]["peak_in_frame"] >= 5
    zone = res["zones"][0]
    assert zone["name"] == "left" and zone["entries"] >= 1 and zone["peak_occupancy"] >= 1
    assert zone["entries"] == zone["exits"]  # visits are closed at the end of the video
    assert res["lines"][0]["name"] == "mid"
    for t in res["tracks"]:
        assert t["identity"] == "unknown" and t["frames"] >= 1 and t["last_seen"] >= t["first_seen"]
    assert run["recognition"] == "no identities enrolled"
    assert set(run["versions"]) >= {"genesis", "opencv", "onnxruntime"}
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    ok, frame = cap.read()
    assert ok and frame.shape == (450, 800, 3)
    heat = cv2.imread(str(out / "heatmap_lobby.png"))
    assert heat is not None and heat.shape == (450, 800, 3)

    # Its passages packed (what the storage upkeep does once they are old), `genesis report` gives the same results.
    run_id = run["run_id"]
    config = tmp_path / "lobby.yaml"  # the zone and line given on the command line, for `genesis report`
    config.write_text("cameras:\n  - id: lobby\n    source: x.mp4\n"
                      "    zones: [{name: left, points: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}]\n"
                      "    lines: [{name: mid, start: [0.5, 0], end: [0.5, 1]}]\n")
    cli("report", "--run", run_id, "-o", str(tmp_path / "before"), "--config", str(config))
    with Repository(cli.env["GENESIS_DATABASE_URL"]) as repo:
        packed = AnalyticsStore(repo).pack_passages(time.time() + 86400, part_tracks=4)
        assert packed["packs"] >= 2 and packed["tracks"] == len(res["tracks"]), packed
        assert repo.tracks(run_id) and not _rows(repo, "tracks") and not _rows(repo, "zone_events")
    cli("report", "--run", run_id, "-o", str(tmp_path / "after"), "--config", str(config))
    before, after = (json.loads((tmp_path / d / "report.json").read_text())["results"] for d in ("before", "after"))
    assert after == before
    assert after["zones"] == res["zones"] and after["lines"] == res["lines"] and after["tracks"] == res["tracks"]


def _rows(repo: Repository, table: str) -> int:
    with repo.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_bad_zone_option_is_a_clear_error(cli: CLI, tmp_path: Path, data_dir: Path) -> None:
    video = data_dir / "video" / "opencv4nodejs_people.mp4"
    proc = cli("run", "--source", str(video), "--zone", "bad:0,0,2,0,1,1", check=False)
    assert proc.returncode == 2
    assert "outside 0..1" in proc.stderr
    assert not (tmp_path / "genesis.db").exists()
