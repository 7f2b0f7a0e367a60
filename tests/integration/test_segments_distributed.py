"""Identity segments through the distributed sequencer give the embedded run's results.

The doorway sequence (one track, five people) is cut into segments by the ordered per-camera
stage; the distributed pipeline (capture -> Redis -> Celery workers -> PostgreSQL, two detect
processes finishing in any order) must store the same segments, names and report as `genesis run`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.e2e.test_segments_doorway import ENROLLED, make_doorway
from tests.integration.test_distributed import genesis
from tests.integration.workers import pipeline_env, workers
from tests.services import redis_url

BROKER = redis_url(12)
FRAMES = redis_url(13)


def enroll(env: dict[str, str], faces: Path) -> None:
    for name, (a, b, _) in ENROLLED.items():
        genesis(env, "enroll", name, str(faces / "known" / name / a), str(faces / "known" / name / b))


def test_segments_distributed_equal_embedded(models_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    video = tmp_path / "doorway.mp4"
    make_doorway(video, data_dir / "faces", models_dir, data_dir / "video" / "seeed_people-walking_overhead.mp4")
    with pipeline_env(tmp_path, models_dir, data_dir, BROKER, FRAMES, {"gap_timeout_s": 20}) as env:
        embedded_env = dict(env, GENESIS_DATABASE_URL=f"sqlite:///{tmp_path / 'embedded.db'}")
        enroll(embedded_env, data_dir / "faces")
        out = tmp_path / "embedded"
        genesis(embedded_env, "run", "--source", str(video), "--camera", "entrance", "--out", str(out))
        embedded: dict[str, Any] = json.loads((out / "report.json").read_text())["results"]
        assert {i["name"] for i in embedded["identities"]} == set(ENROLLED)
        assert embedded["people"]["segments"] > embedded["people"]["tracks"]

        genesis(env, "db", "upgrade")
        enroll(env, data_dir / "faces")
        specs = [("detect", "detect", 2, "prefork"), ("recognize", "recognize", 1, "solo"),
                 ("store", "store", 1, "solo"), ("analytics", "analytics", 1, "prefork")]
        with workers(*specs, env=env, log_dir=tmp_path):
            printed = genesis(env, "capture", "--source", str(video), "--camera", "entrance")
            match = re.search(r"published (\d+), dropped (\d+).*run ([0-9a-f]{32})", printed)
            assert match and int(match[2]) == 0, printed
            genesis(env, "drain", "--timeout", "400")
            genesis(env, "report", "--run", match[3], "--out", str(tmp_path / "distributed"))
        report = json.loads((tmp_path / "distributed" / "report.json").read_text())
        assert report["run"]["status"] == "finished"
        assert report["results"] == embedded
