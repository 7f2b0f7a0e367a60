"""Real Celery worker processes for the integration tests (never eager mode)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import pytest

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped afterwards (the benchmark's helper, shared)."""
    from genesis.bench.distributed import fresh_postgres_database as scratch

    try:
        psycopg2.connect(PG_ADMIN).close()
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not running on 127.0.0.1:5432: {exc}")
    with scratch(PG_ADMIN, "genesis_it") as url:
        yield url


class Worker:
    """``celery -A genesis worker`` as a child process, with its log in a file."""

    def __init__(self, name: str, queues: str, env: dict[str, str], log_dir: Path, concurrency: int = 1,
                 pool: str = "prefork", command: list[str] | None = None, extra: tuple[str, ...] = ()) -> None:
        self.name = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
        self.log = log_dir / f"{name}.log"
        cmd = command or [
            sys.executable, "-m", "celery", "-A", "genesis", "worker", "-Q", queues, "-n", self.name,
            "-c", str(concurrency), "-P", pool, "--without-mingle", "--without-gossip", "--loglevel", "INFO", *extra,
        ]
        self._fh = self.log.open("w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited {self.proc.returncode}:\n{self.log.read_text()}")
            if " ready." in self.log.read_text():
                return
            time.sleep(0.2)
        raise AssertionError(f"worker {self.name} not ready after {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the whole process group (the worker and its pool children)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()


@contextmanager
def workers(*specs: tuple[str, str, int, str], env: dict[str, str], log_dir: Path) -> Iterator[list[Worker]]:
    started = [Worker(name, queues, env, log_dir, concurrency, pool) for name, queues, concurrency, pool in specs]
    yield from _run(started)


@contextmanager
def launchers(*commands: tuple[str, list[str]], env: dict[str, str], log_dir: Path) -> Iterator[list[Worker]]:
    """Workers started by the per-service launchers (``python workers/detect.py --workers 4`` ...)."""
    root = Path(__file__).resolve().parents[2]
    started = [
        Worker(name, "", env, log_dir, command=[sys.executable, str(root / "workers" / f"{name}.py"), *args])
        for name, args in commands
    ]
    yield from _run(started)


@contextmanager
def workers_started(*started: Worker) -> Iterator[list[Worker]]:
    """Workers built by the caller (e.g. with extra options), ready, stopped at the end."""
    yield from _run(list(started))


def _run(started: list[Worker]) -> Iterator[list[Worker]]:
    try:
        for w in started:
            w.wait_ready()
        yield started
    finally:
        for w in started:
            w.stop()


CLIP = ["--camera", "entrance", "--stride", "3", "--max-frames", "40"]
"""The short clip of the fault tests: 40 frames of the shared people clip, every third frame."""


def clip(data_dir: Path) -> str:
    return str(data_dir / "video" / "opencv4nodejs_people.mp4")


def embedded(env: dict[str, str], data_dir: Path, *extra: str) -> dict[str, Any]:
    """The ``results`` of an embedded ``genesis run`` of :data:`CLIP` (its own SQLite database).

    Run once per suite for each (configuration, arguments, models) and shared by every test and xdist worker
    that compares with it (see :func:`reference_results`)."""

    def run() -> dict[str, Any]:
        out = Path(env["TEST_OUT_DIR"]) / "embedded"
        e = dict(env, GENESIS_DATABASE_URL=f"sqlite:///{env['TEST_OUT_DIR']}/embedded.db")
        genesis_cli(e, "run", "--source", clip(data_dir), *CLIP, *extra, "--out", str(out))
        results: dict[str, Any] = json.loads((out / "report.json").read_text())["results"]
        return results

    return reference_results(env, [clip(data_dir), *CLIP, *extra], run)


def reference_results(env: dict[str, str], args: list[str], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s results, cached for the rest of this pytest run under a key of everything an embedded run
    reads: the configuration file (less its ``distributed`` section, which only the queues read), ``args``, the
    model files and the GENESIS_ variables other than the database and the queues. Workers share the cache (a
    folder beside their temp folders) and a lock, so one computes it while the others wait."""
    import fcntl

    import yaml

    config = yaml.safe_load(Path(env["GENESIS_CONFIG"]).read_text()) if "GENESIS_CONFIG" in env else {}
    config.pop("distributed", None)
    models = Path(env.get("GENESIS_MODELS_DIR", "."))
    variables = {k: v for k, v in env.items() if k.startswith("GENESIS_") and k not in _PER_TEST_VARIABLES}
    key = hashlib.sha256(json.dumps({
        "config": config, "args": args, "env": variables,
        "models": sorted((p.name, p.stat().st_size) for p in models.glob("*") if p.is_file()),
    }, sort_keys=True, default=str).encode()).hexdigest()[:20]
    folder = _reference_cache()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.json"
    with (folder / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            cached: dict[str, Any] = json.loads(path.read_text())
            return cached
        results = run()
        path.write_text(json.dumps(results))
        return results


_PER_TEST_VARIABLES = {"GENESIS_CONFIG", "GENESIS_MODELS_DIR", "GENESIS_DATABASE_URL", "GENESIS_BROKER_URL",
                       "GENESIS_REDIS_URL"}


def _reference_cache() -> Path:
    """The folder this pytest run's workers share (tests/harness.py sets it at start)."""
    return Path(os.environ["GENESIS_TEST_REFERENCE_CACHE"])



def capture(env: dict[str, str], data_dir: Path) -> str:
    """``genesis capture`` of :data:`CLIP`; its run id."""
    out = genesis_cli(env, "capture", "--source", clip(data_dir), *CLIP)
    match = re.search(r"run ([0-9a-f]{32})", out)
    assert match, out
    return match[1]


def genesis_cli(env: dict[str, str], *args: str, timeout: float = 600, check: bool = True) -> str:
    """Run the real `genesis` command; returns stdout (fails the test on a non-zero exit)."""
    proc = subprocess.run([sys.executable, "-m", "genesis.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, f"genesis {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


class TcpProxy:
    """A local TCP forwarder that can be taken down and brought back (a database outage)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._server is not None:
            # shutdown() first: close() alone leaves a socket blocked in accept() listening.
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
        self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()


@contextmanager
def pipeline_env(
    out_dir: Path, models_dir: Path, data_dir: Path, broker: str, frames: str, distributed: dict[str, object],
    alerts: bool = False,
) -> Iterator[dict[str, str]]:
    """Environment of a distributed test: a config with the `entrance` camera (a zone and a line),
    a fresh PostgreSQL database and two flushed Redis databases (broker, frames). With ``alerts``
    the zone is restricted with a max occupancy and a short loitering threshold, so the run raises
    alerts (whose delivery tasks need an analytics worker)."""
    import redis
    import yaml

    walkway: dict[str, object] = {"name": "walkway", "points": [[0.25, 0.45], [0.75, 0.45], [0.75, 1.0], [0.25, 1.0]]}
    camera: dict[str, object] = {}
    if alerts:
        walkway.update(max_occupancy=2, restricted=True)
        camera["alerts"] = {"loitering_s": 3.0}
    config = out_dir / "settings.yaml"
    config.write_text(yaml.safe_dump({
        "distributed": distributed,
        "cameras": [{
            "id": "entrance",
            "source": str(data_dir / "video" / "opencv4nodejs_people.mp4"),
            "zones": [walkway],
            "lines": [{"name": "middle", "start": [0.5, 0.0], "end": [0.5, 1.0]}],
            **camera,
        }],
    }))
    for url in (broker, frames):
        redis.Redis.from_url(url).flushdb()
    try:
        with fresh_postgres_database() as pg:
            env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
            env.update(GENESIS_CONFIG=str(config), GENESIS_MODELS_DIR=str(models_dir), GENESIS_DATABASE_URL=pg,
                       GENESIS_BROKER_URL=broker, GENESIS_REDIS_URL=frames, COLUMNS="200", TEST_OUT_DIR=str(out_dir))
            yield env
    finally:
        for url in (broker, frames):
            redis.Redis.from_url(url).flushdb()
