"""The distributed pipeline (capture -> Redis -> Celery workers -> PostgreSQL) gives exactly
the ``results`` of the embedded run on the same clip, whatever the detect concurrency."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, inspect

from tests.integration.workers import launchers, pipeline_env, workers
from tests.services import redis_url

BROKER = redis_url(8)
FRAMES = redis_url(9)
CLIP_ARGS = ["--camera", "entrance", "--stride", "3", "--max-frames", "80"]


@pytest.fixture(scope="module")
def env(models_dir: Path, tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[dict[str, str]]:
    out = tmp_path_factory.mktemp("distributed")
    with pipeline_env(out, models_dir, data_dir, BROKER, FRAMES, {"gap_timeout_s": 20}, alerts=True) as e:
        yield e


def genesis(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, "-m", "genesis.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"genesis {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def enroll_people(env: dict[str, str], shared_dir: Path) -> None:
    faces = shared_dir / "models" / "faces"
    genesis(env, "enroll", "obama", str(faces / "obama.jpg"), str(faces / "obama2.jpg"))
    genesis(env, "enroll", "biden", str(faces / "biden.jpg"))


@pytest.fixture(scope="module")
def embedded_results(env: dict[str, str], shared_dir: Path, data_dir: Path) -> dict[str, Any]:
    e = dict(env, GENESIS_DATABASE_URL=f"sqlite:///{env['TEST_OUT_DIR']}/embedded.db")
    enroll_people(e, shared_dir)
    out = Path(env["TEST_OUT_DIR"]) / "embedded"
    genesis(e, "run", "--source", str(data_dir / "video" / "opencv4nodejs_people.mp4"), *CLIP_ARGS, "--out", str(out))
    results: dict[str, Any] = json.loads((out / "report.json").read_text())["results"]
    assert results["frames"] == 80 and results["people"]["tracks"] >= 10
    assert sum(t["attempts"] for t in results["tracks"]) > 0, "recognition must run in this comparison"
    assert results["zones"][0]["entries"] > 0 and results["lines"][0]["in"] + results["lines"][0]["out"] > 0
    assert results["alerts"]["by_kind"]["crowding"] > 0 and results["alerts"]["by_kind"]["restricted"] > 0
    return results


def distributed_run(env: dict[str, str], data_dir: Path, label: str) -> dict[str, Any]:
    out = genesis(env, "capture", "--source", str(data_dir / "video" / "opencv4nodejs_people.mp4"), *CLIP_ARGS)
    match = re.search(r"published (\d+), dropped (\d+).*run ([0-9a-f]{32})", out)
    assert match, out
    assert (int(match[1]), int(match[2])) == (80, 0), out
    genesis(env, "drain", "--timeout", "400")
    report_dir = Path(env["TEST_OUT_DIR"]) / label
    genesis(env, "report", "--run", match[3], "--out", str(report_dir))
    report = json.loads((report_dir / "report.json").read_text())
    assert report["run"]["status"] == "finished"
    results: dict[str, Any] = report["results"]
    return results


def test_distributed_equals_embedded_with_detect_concurrency_1_and_4(
    env: dict[str, str], embedded_results: dict[str, Any], shared_dir: Path, data_dir: Path
) -> None:
    assert "latest schema" in genesis(env, "db", "upgrade")  # `genesis db upgrade` on PostgreSQL
    engine = create_engine(env["GENESIS_DATABASE_URL"])
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"runs", "tracks", "point_batches", "heatmap_cells", "zone_events", "line_crossings",
            "face_embeddings"} <= tables
    enroll_people(env, shared_dir)
    logs = Path(env["TEST_OUT_DIR"])
    # Detect concurrency 1, with `celery -A genesis worker -Q ...` ...
    specs = [("detect", "detect", 1, "prefork"), ("recognize", "recognize", 1, "solo"), ("store", "store", 1, "solo"),
             ("analytics", "analytics", 1, "prefork")]
    with workers(*specs, env=env, log_dir=logs):
        results = distributed_run(env, data_dir, "distributed-c1")
        # Every task counted itself finished on its queue: the drain rates of the capture's backlog in seconds.
        broker = redis.Redis.from_url(env["GENESIS_BROKER_URL"])
        done = {key.decode().split(":")[2] for key in broker.scan_iter("genesis:queue:*:done:*")}
        # An acknowledged message leaves no holder record behind (it would stay for the visibility timeout).
        holders = {key.decode().split(":", 2)[2] for key in broker.scan_iter("genesis:held:*")}
        unacked = {tag.decode() for tag in broker.hkeys("unacked")}
        broker.close()
        assert {"detect", "recognize", "store"} <= done, done
        assert holders <= unacked, f"{len(holders - unacked)} holder records of acknowledged messages"
    assert results == embedded_results, "detect concurrency 1"
    # ... and 4, with the per-service launchers.
    commands = [("detect", ["--workers", "4"]), ("recognize", []), ("store", []), ("analytics", [])]
    with launchers(*commands, env=env, log_dir=logs):
        results = distributed_run(env, data_dir, "distributed-c4")
    assert results == embedded_results, "detect concurrency 4"
