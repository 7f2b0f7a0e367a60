"""A real ``genesis serve`` process for the API's hostile-client tests (test_api_security.py,
test_api_hardening.py): a fresh SQLite database, one key per role, its temporary folder watched."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from genesis.adapters.db import Repository
from genesis.adapters.db.apikeys import ApiKeyStore
from tests.ports import free_port
from tests.services import redis_url
from tests.waiting import stop_process, wait_served

REDIS_DB = 1
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    base: str
    port: int
    ops_port: int
    proc: subprocess.Popen[bytes]
    tmpdir: Path
    log: Path
    keys: dict[str, str]

    def temp_bytes(self) -> int:
        """Bytes in the files the server holds open in its temporary folder (spooled uploads)."""
        total = 0
        fds = Path(f"/proc/{self.proc.pid}/fd")
        for fd in fds.iterdir() if fds.is_dir() else []:
            try:
                target = os.readlink(fd)
                if target.startswith(str(self.tmpdir)):
                    total += os.stat(fd).st_size
            except OSError:
                continue
        return total

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]



@contextmanager
def serving(folder: Path, models_dir: Path | None = None, ops_port: int = 0, **api: str) -> Iterator[Served]:
    """`genesis serve` on a fresh SQLite database in ``folder`` with one key per role (its ops endpoint on
    ``ops_port``, 0: none); ``api`` sets ``api.*`` through the environment (GENESIS_API__NAME)."""
    db = f"sqlite:///{folder / 'genesis.db'}"
    with Repository(db) as repo:
        store = ApiKeyStore(repo.engine)
        keys = {role: store.create(role, f"test-{role}")[0] for role in ("viewer", "operator", "admin")}
    tmpdir = folder / "tmp"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env.update(GENESIS_DATABASE_URL=db, GENESIS_REDIS_URL=redis_url(REDIS_DB), GENESIS_BROKER_URL=redis_url(REDIS_DB),
               TMPDIR=str(tmpdir), PYTHONPATH=str(ROOT), **{f"GENESIS_API__{k.upper()}": v for k, v in api.items()})
    if models_dir is not None:
        env["GENESIS_MODELS_DIR"] = str(models_dir)
    port = free_port()
    log = folder / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "genesis.cli.main", "serve", "--port", str(port),
                                 "--ops-port", str(ops_port)], cwd=folder, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_served(base, proc, log)
        yield Served(base, port, ops_port, proc, tmpdir, log, keys)
    finally:
        stop_process(proc)
