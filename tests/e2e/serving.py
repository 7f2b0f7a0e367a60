"""`genesis serve` over the SQLite database of one real `genesis run`, for the browser tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.conftest import CLI
from tests.ports import free_port
from tests.services import redis_url
from tests.waiting import stop_process, wait_served


def artifact_folder(tmp_path: Path, name: str) -> Path:
    """``$GENESIS_TEST_ARTIFACTS/NAME`` when set (scripts/test.sh sets it), else under the test's tmp folder."""
    base = os.environ.get("GENESIS_TEST_ARTIFACTS")
    folder = (Path(base).resolve() if base else tmp_path / "artifacts") / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def served_run(cli: CLI, data_dir: Path, tmp_path: Path, config: dict[str, Any], redis_db: int, max_frames: int,
               key_name: str) -> Iterator[tuple[str, str, int]]:
    """Run the crowd clip (stride 3) with ``config``, then serve its database: (base URL, admin key, ops port)."""
    import redis
    import yaml

    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(config))
    cli.env.update(GENESIS_REDIS_URL=redis_url(redis_db), GENESIS_BROKER_URL=redis_url(redis_db),
                   GENESIS_CONFIG=str(path))
    redis.Redis.from_url(redis_url(redis_db)).flushdb()
    cli("run", "--source", str(data_dir / "video" / "opencv4nodejs_people.mp4"), "--camera", "lobby",
        "--stride", "3", "--max-frames", str(max_frames))
    key = cli("apikey", "create", "--role", "admin", "--name", key_name).stdout.strip()
    port, ops_port = free_port(), free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "genesis.cli.main", "serve", "--port", str(port), "--ops-port",
                             str(ops_port)], cwd=cli.cwd, env=cli.env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_served(base, proc, tmp_path / "serve.log")
        yield base, key, ops_port
    finally:
        stop_process(proc)
        log.close()
