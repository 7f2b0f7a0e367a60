"""The benchmarks' CPU accounting of the Redis and PostgreSQL servers: per process, never negative."""

from __future__ import annotations

import subprocess
import time

from genesis.bench.distributed import _CLK_TCK, server_ticks, servers_cpu_since
from tests.ports import free_port


def test_a_server_that_exits_meanwhile_is_not_subtracted() -> None:
    """Another user's Redis server stopped during the measurement (a test's private server, on a shared machine)
    once made the bench's Redis CPU negative and the steps of a frame no longer add up to its total."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    try:
        before: dict[int, tuple[str, int]] = {}
        for _ in range(200):
            before = server_ticks()
            if proc.pid in before:
                break
            time.sleep(0.05)
        assert before.get(proc.pid, ("", 0))[0] == "redis"
        gone = -1  # a pid no process has, with a large CPU count at the start
        before[gone] = ("redis", 10**9)
    finally:
        proc.terminate()
        proc.wait(10)
    after = servers_cpu_since(before)
    assert set(after) == {"redis", "postgres"}
    assert all(v >= 0 for v in after.values()), after


def test_a_reused_pid_counts_from_zero() -> None:
    """A pid whose CPU count went down belongs to a new process: all of its CPU is counted, not a negative."""
    now = server_ticks()
    assert now, "no Redis or PostgreSQL server process found (the tests need both)"
    pid, (server, ticks) = next(iter(now.items()))
    again = servers_cpu_since({pid: (server, ticks + 10**6)})
    assert again[server] >= ticks / _CLK_TCK
