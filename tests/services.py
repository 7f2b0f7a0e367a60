"""Where the tests find Redis: 127.0.0.1:6379 unless ``GENESIS_TEST_REDIS_PORT`` / ``_HOST`` say otherwise.

Each integration module owns fixed database numbers (see the modules); pointing a checkout's tests at
another redis-server lets two checkouts run their suites at the same time without sharing a database.
"""

from __future__ import annotations

import os

REDIS_HOST = os.environ.get("GENESIS_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("GENESIS_TEST_REDIS_PORT", "6379"))
REDIS_ADDRESS = f"{REDIS_HOST}:{REDIS_PORT}"


def redis_url(db: int) -> str:
    """The URL of Redis database ``db`` on the test server."""
    return f"redis://{REDIS_ADDRESS}/{db}"
