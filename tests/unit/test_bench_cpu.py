"""The benchmarks' CPU accounting of worker process groups and of the Redis and PostgreSQL servers: per process,
never negative."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from genesis.bench.distributed import _CLK_TCK, cpu_since, labelled_ticks
from tests.ports import free_port

BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(60)"


def _wait_ticks(groups: dict[int, str], pid: int) -> dict[int, tuple[str, int]]:
    """The counters once the process has spent most of its 0.3 s of CPU."""
    for _ in range(400):
        now = labelled_ticks(groups)
        if now.get(pid, ("", 0))[1] >= 0.25 * _CLK_TCK:
            return now
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never showed its CPU")


def test_a_process_that_exits_meanwhile_is_not_subtracted() -> None:
    """A worker's pool child replaced during the measurement (a time limit stopped it), or another user's Redis
    server stopped meanwhile (a test's private server, on a shared machine): the counts that summed every live
    process at both ends went negative, and the steps of a frame in the cameras bench no longer added up."""
    worker = subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True)  # a worker: its own group
    redis = subprocess.Popen(["redis-server", "--port", str(free_port()), "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL)
    groups = {worker.pid: "detect"}
    try:
        before = _wait_ticks(groups, worker.pid)
        assert before[worker.pid][0] == "detect"
        for _ in range(200):
            before = labelled_ticks(groups)
            if redis.pid in before:
                break
            time.sleep(0.05)
        assert before[redis.pid][0] == "redis"
    finally:
        for p in (worker, redis):
            p.terminate()
            p.wait(10)
    after = cpu_since(before, labelled_ticks(groups), ["detect"])
    assert set(after) >= {"detect", "redis", "postgres"}
    assert after["detect"] == 0.0  # it exited: nothing, not minus its 0.3 s
    assert all(v >= 0 for v in after.values()), after


def test_a_process_started_meanwhile_counts_whole_and_a_reused_pid_from_zero() -> None:
    worker = subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True)
    groups = {worker.pid: "store"}
    try:
        now = _wait_ticks(groups, worker.pid)
        ticks = now[worker.pid][1]
        assert cpu_since({}, now)["store"] == ticks / _CLK_TCK  # started after the mark: all of it
        reused = cpu_since({worker.pid: ("store", ticks + 10**6)}, now)  # more than it has: another process's pid
        assert reused["store"] == ticks / _CLK_TCK
        relabelled = cpu_since({worker.pid: ("redis", 1)}, now)  # the pid was a server's before
        assert relabelled["store"] == ticks / _CLK_TCK
        assert cpu_since(now, now)["store"] == 0.0
    finally:
        worker.terminate()
        worker.wait(10)
    assert os.getpgid(os.getpid()) not in groups
