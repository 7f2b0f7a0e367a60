"""The overhead walkway clip: a line across the walkway counts people both ways, the heatmap
(in --out and from `genesis heatmap`) shows where they walk, `genesis rollup` sums to the run.

docs/analytics.md records the counts of this run (stride 3, the full clip).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np

from genesis.adapters.db.points import stored_points
from tests.e2e.conftest import CLI

LINE = "walkway:0,0.5,1,0.5"
ZONE = "centre:0.25,0.25,0.75,0.25,0.75,0.75,0.25,0.75"


def test_walkway_line_heatmap_and_rollups(cli: CLI, tmp_path: Path, data_dir: Path) -> None:
    video = data_dir / "video" / "seeed_people-walking_overhead.mp4"
    out = tmp_path / "out"
    proc = cli("run", "--source", str(video), "--camera", "plaza", "--stride", "3", "--out", str(out),
               "--line", LINE, "--zone", ZONE)
    res = json.loads((out / "report.json").read_text())["results"]
    (line,) = res["lines"]
    assert line["in"] >= 2 and line["out"] >= 2, line  # people walk up and down the walkway
    (zone,) = res["zones"]
    assert zone["entries"] >= 5 and zone["entries"] == zone["exits"] and zone["peak_occupancy"] >= 3
    assert zone["dwell_s"]["mean"] > 0 and zone["dwell_s"]["p95"] >= zone["dwell_s"]["mean"]
    assert "walkway" in proc.stdout and "centre" in proc.stdout

    # the snapshot of the run is the background of `genesis heatmap`
    db = sqlite3.connect(tmp_path / "genesis.db")
    (width, height, jpeg), = db.execute("SELECT width, height, jpeg FROM camera_snapshots WHERE camera_id='plaza'")
    snapshot = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert (width, height) == (640, 360) and snapshot.shape == (360, 640, 3)

    heat_path = tmp_path / "plaza.png"
    printed = cli("heatmap", "plaza", "-o", str(heat_path)).stdout
    sightings = db.execute("SELECT sum(points) FROM heatmap_cells").fetchone()[0]  # every sighting's foot point
    points = [p for first, blob in db.execute("SELECT first_seq, points FROM point_batches")
              for p in stored_points(first, blob)]  # the trajectory points, unpacked
    assert sightings == sum(p.frames for p in points) == sum(
        t["frames"] for t in res["tracks"])
    assert f"{sightings} foot points" in printed
    heat = cv2.imread(str(heat_path))
    run_heat = cv2.imread(str(out / "heatmap_plaza.png"))
    assert heat.shape == run_heat.shape == (360, 640, 3)
    # same rows, same background, same rendering: the run's heatmap and the command's are one image
    assert np.abs(heat.astype(int) - run_heat.astype(int)).max() <= 2
    # the overlay colours where people walk: the walkway is spread over the whole frame, so a large
    # part of the picture is tinted, and the most tinted cells are where the most foot points are
    tint = np.abs(heat.astype(int) - snapshot.astype(int)).sum(axis=2)
    assert (tint > 30).mean() > 0.3
    # where people walked: the trajectory points, each as many times as the sightings it stands for
    rows = [(*p.box, p.frames) for p in points]
    boxes = np.repeat(np.array([r[:4] for r in rows]), [r[4] for r in rows], axis=0)
    feet = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, np.minimum(boxes[:, 3], 359)], axis=1).astype(int)
    counts = np.zeros((360 // 40 + 1, 640 // 40 + 1))
    for x, y in feet:
        counts[y // 40, x // 40] += 1
    busy = np.unravel_index(np.argmax(counts), counts.shape)
    quiet = np.unravel_index(np.argmin(counts), counts.shape)

    def cell_tint(cell: tuple[np.intp, ...]) -> float:
        r, c = int(cell[0]), int(cell[1])
        return float(tint[r * 40:(r + 1) * 40, c * 40:(c + 1) * 40].mean())

    assert cell_tint(busy) > cell_tint(quiet)

    # a window without sightings and an unknown camera are clear errors
    empty = cli("heatmap", "plaza", "-o", str(tmp_path / "x.png"), "--since", "2001-01-01", "--until", "2001-01-02",
                check=False)
    assert empty.returncode == 1 and "no sightings of camera 'plaza'" in empty.stderr
    assert "Traceback" not in empty.stderr
    unknown = cli("heatmap", "nope", "-o", str(tmp_path / "x.png"), check=False)
    assert unknown.returncode == 1 and "unknown camera 'nope'" in unknown.stderr and "plaza" in unknown.stderr

    # rollups of the embedded database add up to the run
    cli("rollup")
    for granularity in ("minute", "hour", "day"):
        ins, outs = db.execute("SELECT sum(crossings_in), sum(crossings_out) FROM rollup_line WHERE granularity=?",
                               (granularity,)).fetchone()
        assert (ins, outs) == (line["in"], line["out"])
        entries, visits = db.execute("SELECT sum(entries), sum(visits) FROM rollup_zone WHERE granularity=?",
                                     (granularity,)).fetchone()
        assert entries == zone["entries"] and visits == zone["dwell_s"]["visits"]
        (n,) = db.execute("SELECT sum(sightings) FROM rollup_camera WHERE granularity=?", (granularity,)).fetchone()
        assert n == sightings
    print(f"seeed walkway (stride 3): in {line['in']}, out {line['out']}; zone {zone}")
