"""Redis with authentication (issue 13, item 3): every Redis URL (broker, frame store / results,
dead letters) carries credentials (``redis://USER:PASSWORD@host/db``), and the password is never
printed: a real ACL user on the test Redis server, the API, the ops health check and the CLI."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from genesis.adapters.db import Repository
from genesis.adapters.db.apikeys import ApiKeyStore
from genesis.api import create_app
from genesis.config import Settings
from genesis.ops.health import check_broker
from tests.services import REDIS_ADDRESS, redis_url

DB = 1


@pytest.fixture(scope="module")
def acl_user() -> Iterator[tuple[str, str]]:
    """A Redis ACL user with a random password (the default user is left as it is)."""
    user, password = f"genesis-test-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    admin = redis.Redis.from_url(redis_url(0))
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    try:
        yield user, password
    finally:
        admin.execute_command("ACL", "DELUSER", user)


def _url(user: str, password: str) -> str:
    return f"redis://{user}:{password}@{REDIS_ADDRESS}/{DB}"


def test_urls_with_credentials_work_and_never_show(acl_user: tuple[str, str], tmp_path: Path) -> None:
    user, password = acl_user
    good, bad = _url(user, password), _url(user, "wrong-" + password)
    assert redis.Redis.from_url(good).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(bad).ping()
    db = f"sqlite:///{tmp_path / 'g.db'}"
    with Repository(db) as repo:
        key, _ = ApiKeyStore(repo.engine).create("viewer")
    for url, ok in ((good, True), (bad, False)):
        settings = Settings.model_validate({"database_url": db, "redis_url": url, "broker_url": url})
        with TestClient(create_app(settings)) as c:
            r = c.get("/api/pipeline/status", headers={"X-API-Key": key})
        assert r.status_code == 200 and r.json()["redis"]["ok"] is ok, r.text
        assert password not in r.text
        if ok:
            assert r.json()["queues_error"] is None and r.json()["dlq_error"] is None, r.text
        check = check_broker(url, 2.0)
        assert check.ok is ok and password not in check.detail and user not in check.detail
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
        env.update(GENESIS_DATABASE_URL=db, GENESIS_REDIS_URL=url, GENESIS_BROKER_URL=url)
        proc = subprocess.run([sys.executable, "-m", "genesis.cli.main", "dlq", "list"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
        assert (proc.returncode == 0) is ok, proc.stderr
        assert password not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
        if not ok:
            assert "***@" in proc.stderr, proc.stderr
