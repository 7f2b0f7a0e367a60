"""The suite's own plumbing: a private Redis per pytest-xdist worker, per-test timings, slowest files first.

- **Isolation.** Under ``pytest -n N`` every worker (``gw0``, ``gw1``, …) starts its own ``redis-server`` on a
  free loopback port, so the fixed database numbers of the integration modules never meet another worker's.
  PostgreSQL needs nothing: every test makes its own database or schema with a unique name. Ports are taken
  free from the kernel, and temp folders are per worker already (pytest's basetemp).
- **Timings.** Each test's wall time and the CPU time (user + system) of the test process and of the children it
  waited for, written as JSON lines to ``$GENESIS_TEST_ARTIFACTS/timings/<worker>.jsonl``;
  ``python -m tests.timings`` turns them into the table of docs/testing.md.
- **Scheduling.** Tests that share a module-scoped fixture form one unit of work (one worker pays for the
  fixture); every other test is a unit of its own. Units go out longest first, by the measured durations in
  ``tests/durations.json`` (``--dist loadgroup --no-loadscope-reorder``, which scripts/test.sh passes, selects
  :func:`scheduler`).
- **Quick tier.** ``--quick`` keeps the tests that took at most :data:`QUICK_MAX_S` in that table (new tests
  count as quick until measured) and leaves out the compose ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")

DURATIONS = Path(__file__).with_name("durations.json")
"""Wall seconds of every test in the last measured full run (``python -m tests.timings --write-durations``)."""
QUICK_MAX_S = 4.0
"""``--quick`` leaves out every test that took longer than this in :data:`DURATIONS` (and the compose ones)."""
UNKNOWN_S = 5.0
"""What a test missing from :data:`DURATIONS` (a new one) is assumed to take."""


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the pytest worker that started it dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class WorkerRedis:
    """A throw-away ``redis-server`` for one xdist worker: nothing on disk, gone with the worker."""

    def __init__(self, directory: Path) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(directory), "--databases", "16"],
            stdout=(directory / "redis.log").open("w"), stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (pytest_configure: no other thread yet)
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server for {WORKER} exited {self.proc.returncode}: "
                                   f"{(directory / 'redis.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server for {WORKER} did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


_servers: list[WorkerRedis] = []
_scratch: list[Path] = []


def configure(config: pytest.Config) -> None:
    """Give an xdist worker its own Redis (unless the caller chose a server with ``GENESIS_TEST_REDIS_PORT``), and
    every process of this run one folder for the reference results they share (tests/integration/workers.py)."""
    if "GENESIS_TEST_REFERENCE_CACHE" not in os.environ:
        basetemp = config.option.basetemp  # an xdist worker's is <the run's basetemp>/gwN
        if basetemp and WORKER != "main":
            shared = Path(basetemp).parent
        else:
            shared = Path(tempfile.mkdtemp(prefix="genesis-test-"))
            _scratch.append(shared)
        os.environ["GENESIS_TEST_REFERENCE_CACHE"] = str(shared / "references")
    if "GENESIS_TEST_UNITS" not in os.environ:  # set by the controller before it starts the workers
        os.environ["GENESIS_TEST_UNITS"] = str(Path(os.environ["GENESIS_TEST_REFERENCE_CACHE"]).parent / "units.json")
    if WORKER == "main" or "GENESIS_TEST_REDIS_PORT" in os.environ:
        return
    import sys

    assert "tests.services" not in sys.modules, "tests.services read its port before the worker's Redis started"
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"genesis-test-redis-{os.getpid()}"
    server = WorkerRedis(base)
    _servers.append(server)
    os.environ["GENESIS_TEST_REDIS_PORT"] = str(server.port)
    os.environ["GENESIS_TEST_REDIS_HOST"] = "127.0.0.1"


def unconfigure() -> None:
    while _servers:
        _servers.pop().stop()
    while _scratch:
        shutil.rmtree(_scratch.pop(), ignore_errors=True)


def durations() -> dict[str, float]:
    if not DURATIONS.is_file():
        return {}
    table: dict[str, float] = json.loads(DURATIONS.read_text())
    return table


def shared_scope(item: pytest.Item) -> str | None:
    """The file whose module-scoped (or wider, short of the session) fixtures ``item`` uses, if any.

    Tests sharing such a fixture (a served API over a stored run, workers started once for a module) must run
    on one worker, or each worker pays for the fixture again; a session fixture is per worker anyway."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for defs in info.name2fixturedefs.values():
        if any(d.scope in ("module", "package", "class") for d in defs):
            return item.nodeid.split("::", 1)[0]
    return None


def unit_of(item: pytest.Item) -> str:
    """The unit of work xdist hands to one worker: the file for tests that share a fixture, else the test."""
    return shared_scope(item) or item.nodeid


def quick(items: list[pytest.Item], config: pytest.Config) -> None:
    """Deselect what :data:`QUICK_MAX_S` leaves out of the quick tier."""
    known = durations()
    keep, drop = [], []
    for item in items:
        slow = item.get_closest_marker("compose") is not None or known.get(item.nodeid, 0.0) > QUICK_MAX_S
        (drop if slow else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def order(items: list[pytest.Item], config: pytest.Config) -> None:
    """Order the tests by unit of work (see :func:`unit_of`), longest unit first by :data:`DURATIONS` (longest
    processing time first: no worker starts a five-minute unit while the others are about to finish), and on an
    xdist worker write which unit each test belongs to for :class:`UnitScheduling`. Without xdist the order is
    the same, which keeps runs comparable."""
    known = durations()
    units: dict[str, float] = {}
    unit_of_test: dict[str, str] = {}
    for item in items:
        unit = unit_of_test[item.nodeid] = unit_of(item)
        units[unit] = units.get(unit, 0.0) + known.get(item.nodeid, UNKNOWN_S)
    position = {unit: i for i, unit in enumerate(sorted(units, key=lambda u: -units[u]))}
    items.sort(key=lambda item: position[unit_of(item)])
    target = os.environ.get("GENESIS_TEST_UNITS")
    if target and WORKER != "main":  # every worker collects the same tests; the last to write wins, atomically
        scratch = Path(f"{target}.{WORKER}")
        scratch.parent.mkdir(parents=True, exist_ok=True)
        scratch.write_text(json.dumps(unit_of_test))
        scratch.replace(target)


def scheduler(config: pytest.Config, log: object) -> object:
    """xdist's scheduler for ``--dist loadgroup`` in this suite: :class:`LoadScopeScheduling` whose scopes are
    the units the workers wrote at collection (xdist's own loadgroup renames the tests' node ids to carry the
    group, which pytest 9 no longer lets a plugin do: every test went out on its own)."""
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):  # type: ignore[misc]
        _units: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._units is None:  # read once, after every worker finished collecting (xdist calls us then)
                target = os.environ.get("GENESIS_TEST_UNITS")
                self._units = json.loads(Path(target).read_text()) if target and Path(target).is_file() else {}
            return self._units.get(nodeid, nodeid)

    return UnitScheduling(config, log)


def plain_id(nodeid: str) -> str:
    """``nodeid`` without the ``@group`` suffix xdist's loadgroup appends."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") else nodeid


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@contextlib.contextmanager
def timed(item: pytest.Item) -> Iterator[None]:
    """Record ``item``'s wall and CPU seconds (set-up, call and tear-down together)."""
    start_wall, start_cpu = time.monotonic(), _cpu()
    try:
        yield
    finally:
        wall, cpu = time.monotonic() - start_wall, _cpu() - start_cpu
        base = os.environ.get("GENESIS_TEST_ARTIFACTS")
        if base:
            folder = Path(base) / "timings"
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / f"{WORKER}.jsonl").open("a") as fh:
                fh.write(json.dumps({"test": plain_id(item.nodeid), "worker": WORKER, "wall_s": round(wall, 3),
                                     "cpu_s": round(cpu, 3), "end": time.time(),
                                     "outcome": getattr(item, "genesis_outcome", "passed")}) + "\n")


def record_outcome(item: pytest.Item, report: pytest.TestReport) -> None:
    """Keep the worst outcome of the test's phases on the item (for the timing records)."""
    if report.failed:
        item.genesis_outcome = "failed"  # type: ignore[attr-defined]
    elif report.skipped and getattr(item, "genesis_outcome", "passed") == "passed":
        item.genesis_outcome = "skipped"  # type: ignore[attr-defined]
