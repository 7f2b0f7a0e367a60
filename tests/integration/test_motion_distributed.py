"""Motion gating in the distributed mode: the capture marks static frames, detect tasks skip them, the
sequencer reuses the last detections, and the results equal the embedded run's, on a mostly-static clip."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genesis.bench.clips import make_static_clip
from tests.integration.workers import genesis_cli, pipeline_env, workers
from tests.services import redis_url

BROKER = redis_url(12)
FRAMES = redis_url(13)
ARGS = ["--camera", "entrance", "--stride", "5"]  # about 5 fps from the 24 fps source


@pytest.fixture(scope="module")
def env(models_dir: Path, tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[dict[str, str]]:
    out = tmp_path_factory.mktemp("motion")
    with pipeline_env(out, models_dir, data_dir, BROKER, FRAMES, {"gap_timeout_s": 20}) as e:
        e["GENESIS_DETECTOR__MOTION__ENABLED"] = "true"
        e["GENESIS_RECOGNITION__ENABLED"] = "false"
        yield e


@pytest.fixture(scope="module")
def clip(env: dict[str, str], data_dir: Path) -> Path:
    """4 s still, 1 s walk, twice: 240 frames, 48 processed at stride 5."""
    path = Path(env["TEST_OUT_DIR"]) / "static.avi"
    layout = make_static_clip(str(data_dir / "video" / "opencv4nodejs_people.mp4"), path, width=640, still_s=4.0,
                              walk_s=1.0, cycles=2)
    assert layout["frames"] == 240
    return path


def test_gated_distributed_run_equals_the_embedded_one(env: dict[str, str], clip: Path) -> None:
    out = Path(env["TEST_OUT_DIR"])
    emb_env = dict(env, GENESIS_DATABASE_URL=f"sqlite:///{out}/embedded.db")
    genesis_cli(emb_env, "run", "--source", str(clip), *ARGS, "--out", str(out / "embedded"))
    embedded = json.loads((out / "embedded" / "report.json").read_text())
    static = embedded["run"]["static_frames"]
    frames = embedded["results"]["frames"]
    assert frames == 48 and static >= 30, (frames, static)  # at least 3x fewer detections
    assert embedded["results"]["people"]["peak_in_frame"] >= 5
    specs = [("detect", "detect", 2, "prefork"), ("recognize", "recognize", 1, "solo"), ("store", "store", 1, "solo")]
    with workers(*specs, env=env, log_dir=out):
        text = genesis_cli(env, "capture", "--source", str(clip), *ARGS)
        match = re.search(r"published (\d+), dropped (\d+).*run ([0-9a-f]{32})", text)
        assert match and (int(match[1]), int(match[2])) == (48, 0), text
        genesis_cli(env, "drain", "--timeout", "300")
    genesis_cli(env, "report", "--run", match[3], "--out", str(out / "distributed"))
    report: dict[str, Any] = json.loads((out / "distributed" / "report.json").read_text())
    assert report["run"]["status"] == "finished"
    assert report["results"] == embedded["results"]
    # the detect workers really skipped the static frames: their inference count is the moving frames only
    log = (out / "detect.log").read_text()
    assert "Traceback" not in log
