"""``genesis drain`` with the database away (restarting, or its host name not resolved for a moment, as a
container network does under load): it waits for it as for the queues, until ``--timeout``, and then says so in
one line, never a traceback. Real PostgreSQL behind a TCP forwarder taken down and brought back, real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import redis

from tests.integration.workers import TcpProxy, fresh_postgres_database
from tests.services import redis_url

REDIS_DB = 11


def _drain(env: dict[str, str], timeout_s: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "genesis.cli.main", "drain", "--timeout", str(timeout_s)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_drain_waits_for_the_database_then_gives_up_in_one_line() -> None:
    redis.Redis.from_url(redis_url(REDIS_DB)).flushdb()
    with fresh_postgres_database() as url:
        proxy = TcpProxy(("127.0.0.1", 5432))
        try:
            proxy.down()
            host_url = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
            assert host_url != url
            env = {**os.environ, "GENESIS_DATABASE_URL": host_url, "GENESIS_REDIS_URL": redis_url(REDIS_DB),
                   "GENESIS_BROKER_URL": redis_url(REDIS_DB), "COLUMNS": "200"}
            # Away when drain starts, back 3 s later: drain waits, then finds nothing left and says drained.
            t0 = time.monotonic()
            proc = _drain(env, 120)
            time.sleep(3)
            proxy.up()
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0 and "drained" in out, out + err
            assert time.monotonic() - t0 >= 3 and "Traceback" not in err
            # Away for longer than --timeout: one line that says so, exit 1.
            proxy.down()
            t0 = time.monotonic()
            proc = _drain(env, 2)
            out, err = proc.communicate(timeout=60)
            lines = [ln for ln in (out + err).splitlines() if ln.strip()]
            assert proc.returncode == 1 and "Traceback" not in out + err, out + err
            assert any("not drained after 2 s: the database is away" in ln for ln in lines), out + err
            assert time.monotonic() - t0 >= 2
        finally:
            proxy.down()
