"""A full Redis (issue 23, item 2), with a redis-server of the test's own and the shipped defaults.

- ``maxmemory`` + ``noeviction``: the capture used to crash (``OutOfMemoryError``) with no end
  marker; now frames that do not fit are counted drops (reason ``redis_full``), the capture goes
  on, writes its end marker and exits 0.
- an ``allkeys-*`` policy deletes frames and messages silently: the capture warns at start.
- a damaged file captured into the pipeline: the end marker says what the damage cost (item 7).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from genesis.adapters.redis_keys import end_key
from tests.ports import free_port
from tests.unit.adapters.test_video_damage import damaged_copy

CLIP = "seeed_people-walking_overhead.mp4"


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start a redis-server with the given settings; returns its URL (database 0)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*config: str) -> str:
        port = free_port()
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(tmp_path), *config],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        procs.append(proc)
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        client.close()
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(20)


def capture(url: str, tmp_path: Path, source: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env.update(GENESIS_BROKER_URL=url, GENESIS_REDIS_URL=url, GENESIS_DATABASE_URL=f"sqlite:///{tmp_path / 'g.db'}",
               COLUMNS="300")
    return subprocess.run([sys.executable, "-m", "genesis.cli.main", "capture", "--source", str(source), "--no-http",
                           *args], env=env, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)


def end_marker(url: str) -> dict[str, object]:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=end_key("*")))
        assert len(keys) == 1, keys
        raw = client.get(keys[0])
        assert raw is not None
        marker: dict[str, object] = json.loads(raw)
        return marker
    finally:
        client.close()


def test_a_full_redis_is_a_counted_drop_and_the_run_ends(redis_server: Callable[..., str], tmp_path: Path,
                                                          data_dir: Path) -> None:
    # About 3 MB for frames above an empty server's ~1 MB: a third of the clip's JPEGs.
    url = redis_server("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    proc = capture(url, tmp_path, data_dir / "video" / CLIP)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "redis_full" in proc.stdout, proc.stdout
    end = end_marker(url)
    dropped_by = end["dropped_by"]
    assert isinstance(dropped_by, dict) and dropped_by["redis_full"] > 0
    assert end["dropped"] == dropped_by["redis_full"] and isinstance(end["frames"], int) and end["frames"] > 20
    assert end["frames"] + end["dropped"] == 340  # every frame read is published or counted


def test_an_evicting_policy_is_warned_about(redis_server: Callable[..., str], tmp_path: Path, data_dir: Path) -> None:
    url = redis_server("--maxmemory", "200mb", "--maxmemory-policy", "allkeys-lru")
    proc = capture(url, tmp_path, data_dir / "video" / CLIP, "--max-frames", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "maxmemory-policy is allkeys-lru" in line]
    assert len(lines) == 1 and "noeviction" in lines[0], proc.stderr
    # noeviction (Redis' default) is not warned about
    proc = capture(redis_server(), tmp_path, data_dir / "video" / CLIP, "--max-frames", "3")
    assert proc.returncode == 0 and "maxmemory-policy" not in proc.stderr, proc.stderr


def test_a_damaged_file_is_captured_past_the_damage(redis_server: Callable[..., str], tmp_path: Path,
                                                    data_dir: Path) -> None:
    url = redis_server()
    proc = capture(url, tmp_path, damaged_copy(data_dir, tmp_path), "--stride", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "damaged place" in proc.stdout, proc.stdout
    end = end_marker(url)
    assert end["damaged_places"] == 1 and isinstance(end["frames_damaged"], int) and end["frames_damaged"] >= 2
    assert isinstance(end["frames"], int) and end["frames"] >= 75  # the old reader stopped at 34
