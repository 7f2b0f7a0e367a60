"""The distributed path keeps a camera snapshot (written by the sequencer), so `genesis heatmap`
works on PostgreSQL; `genesis rollup` over the distributed rows adds up to the run's report.

Redis DBs 2 (broker) and 3 (frames) of the test server (tests/services.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
from sqlalchemy import create_engine, text

from tests.integration.workers import genesis_cli, pipeline_env, workers
from tests.services import redis_url
from tests.stored import point_frames

BROKER = redis_url(2)
FRAMES = redis_url(3)


def test_distributed_snapshot_heatmap_and_rollups(models_dir: Path, tmp_path: Path, data_dir: Path) -> None:
    with pipeline_env(tmp_path, models_dir, data_dir, BROKER, FRAMES, {"gap_timeout_s": 20}) as env:
        specs = [("detect", "detect", 1, "solo"), ("recognize", "recognize", 1, "solo"), ("store", "store", 1, "solo")]
        with workers(*specs, env=env, log_dir=tmp_path):
            out = genesis_cli(env, "capture", "--source", str(data_dir / "video" / "opencv4nodejs_people.mp4"),
                              "--camera", "entrance", "--stride", "3", "--max-frames", "40")
            run_id = re.search(r"run ([0-9a-f]{32})", out)
            assert run_id, out
            genesis_cli(env, "drain", "--timeout", "300")
        genesis_cli(env, "report", "--run", run_id[1], "--out", str(tmp_path / "report"))
        results = json.loads((tmp_path / "report" / "report.json").read_text())["results"]
        engine = create_engine(env["GENESIS_DATABASE_URL"])
        try:
            with engine.connect() as conn:
                (width, height), = conn.execute(text("SELECT width, height FROM camera_snapshots "
                                                     "WHERE camera_id = 'entrance'"))
                assert (width, height) == (800, 450)
                # every sighting: the heatmap grids' foot points, and the frames the trajectory points stand for
                (sightings,) = conn.execute(text("SELECT sum(points) FROM heatmap_cells")).one()
                stood_for = point_frames(conn)
                assert sightings == stood_for == sum(t["frames"] for t in results["tracks"])
            printed = genesis_cli(env, "heatmap", "entrance", "-o", str(tmp_path / "entrance.png"))
            assert f"{sightings} foot points" in printed and "no snapshot" not in printed
            image = cv2.imread(str(tmp_path / "entrance.png"))
            assert image is not None and image.shape == (450, 800, 3)
            genesis_cli(env, "rollup", "--granularity", "hour")
            with engine.connect() as conn:
                (n,) = conn.execute(text("SELECT sum(sightings) FROM rollup_camera")).one()
                ins, outs = conn.execute(text("SELECT coalesce(sum(crossings_in), 0), coalesce(sum(crossings_out), 0) "
                                              "FROM rollup_line")).one()
                (entries,) = conn.execute(text("SELECT coalesce(sum(entries), 0) FROM rollup_zone")).one()
        finally:
            engine.dispose()
        assert n == sightings
        (line,) = results["lines"]
        (zone,) = results["zones"]
        assert (ins, outs) == (line["in"], line["out"])
        assert entries == zone["entries"] > 0
