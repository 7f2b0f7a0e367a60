"""The ops building blocks: port resolution, health levels, the real checks against the test
Redis / a closed port / SQLite, the HTTP endpoint and `genesis ops check`."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from genesis.cli.main import app as cli_app
from genesis.config import ConfigError, load_settings
from genesis.ops import health as h
from genesis.ops.capture import capture_port
from genesis.ops.celery_hooks import endpoint_port
from genesis.ops.launch import ops_env, port_number
from genesis.ops.server import OpsServer
from tests.ports import free_port
from tests.services import redis_url


def test_endpoint_ports_by_role() -> None:
    s = load_settings(environ={})
    assert [endpoint_port(s, r) for r in ("detect", "recognize", "analytics", "store", "capture", "beat")] == \
        [8080, 8081, 8082, 8083, 8084, 8085]
    assert endpoint_port(s, "worker") == 0  # a plain `celery worker`: no endpoint unless asked
    assert endpoint_port(load_settings(environ={"GENESIS_OPS__PORT": "9100"}), "worker") == 9100
    assert endpoint_port(load_settings(environ={"GENESIS_OPS__PORT": "0"}), "detect") == 0
    assert capture_port(s, None) == 8084 and capture_port(s, 0) == 0 and capture_port(s, 7000) == 7000
    with pytest.raises(ConfigError, match=r"ops\.port"):
        load_settings(environ={"GENESIS_OPS__PORT": "70000"})


def test_launcher_flags_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GENESIS_OPS__ROLE", "GENESIS_OPS__PORT"):
        monkeypatch.setenv(name, "")  # recorded, so that what ops_env sets is undone afterwards
        monkeypatch.delenv(name)
    ops_env("store", None, False)
    s = load_settings(environ=dict(os.environ))
    assert s.ops.role == "store" and endpoint_port(s, "store") == 8083
    ops_env("store", 9200, False)
    assert endpoint_port(load_settings(environ=dict(os.environ)), "store") == 9200
    ops_env("store", None, True)
    assert endpoint_port(load_settings(environ=dict(os.environ)), "store") == 0
    assert port_number("0") == 0 and port_number("8080") == 8080
    for bad in ("70000", "-1", "http"):
        with pytest.raises(argparse.ArgumentTypeError):
            port_number(bad)


def test_health_levels() -> None:
    ok = h.Check("broker", True, "reachable")
    cam = h.Check("camera a", False, "not connected", "degraded")
    db = h.Check("database", False, "unreachable", "failing")
    assert h.combine([ok]).status == "ok"
    assert h.combine([ok, cam]).status == "degraded" and h.combine([ok, cam]).http_status == 200
    both = h.combine([ok, cam, db])
    assert both.status == "failing" and both.http_status == 503
    assert both.reasons == ["camera a: not connected", "database: unreachable"]


def test_real_checks(tmp_path: Path, settings: Any) -> None:
    assert h.check_broker(redis_url(15), 1.0).ok
    down = h.check_broker(f"redis://127.0.0.1:{free_port()}/0", 0.5)
    assert not down.ok and "unreachable" in down.detail and down.severity == "failing"
    assert h.check_database(f"sqlite:///{tmp_path / 'x.db'}", 1.0, "failing").ok
    bad = h.check_database(f"postgresql+psycopg2://nobody@127.0.0.1:{free_port()}/none", 1.0, "degraded")
    assert not bad.ok and bad.severity == "degraded"
    files = h.model_files(settings, ["detect", "recognize"])
    assert set(files) == {"detector", "face_detector", "face_embedder"}
    assert h.check_models(files, lambda: {"detector"}).ok
    missing = h.model_files(settings.model_copy(update={"models": settings.models.model_copy(
        update={"dir": tmp_path})}), ["detect"])
    check = h.check_models(missing, set)
    assert not check.ok and "detector missing" in check.detail


def test_camera_checks() -> None:
    base = {"camera": "gate", "kind": "url", "read": 3, "last_error": None}
    assert h.check_cameras([{**base, "state": "connected"}])[0].ok
    lost = h.check_cameras([{**base, "state": "degraded", "last_error": "cannot open url source x"}])[0]
    assert not lost.ok and lost.severity == "degraded" and "cannot open url source x" in lost.detail
    assert h.check_cameras([{**base, "kind": "file", "state": "stopped"}])[0].ok


class _Probe:
    def __init__(self, status: str) -> None:
        self.level = status

    def health(self) -> tuple[int, dict[str, Any]]:
        body = {"status": self.level, "reasons": [] if self.level == "ok" else ["broker: unreachable"]}
        return (503 if self.level == "failing" else 200), body

    def status(self) -> dict[str, Any]:
        raise RuntimeError("status exploded")

    def metrics(self) -> bytes:
        return b"# HELP x y\n"


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def test_server_and_ops_check() -> None:
    port = free_port()
    probe = _Probe("ok")
    server = OpsServer(probe, "127.0.0.1", port)
    assert server.start()
    try:
        assert not OpsServer(probe, "127.0.0.1", port).start()  # port taken: a warning, not a crash
        assert fetch(f"http://127.0.0.1:{port}/health") == (200, json.dumps({"status": "ok", "reasons": []}).encode())
        code, body = fetch(f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and body == b"# HELP x y\n"
        code, body = fetch(f"http://127.0.0.1:{port}/status")
        assert code == 500 and "status exploded" in json.loads(body)["error"]
        assert fetch(f"http://127.0.0.1:{port}/nope")[0] == 404
        runner = CliRunner()
        result = runner.invoke(cli_app, ["ops", "check", f"127.0.0.1:{port}"])
        assert result.exit_code == 0 and ": ok" in result.output
        probe.level = "degraded"
        result = runner.invoke(cli_app, ["ops", "check", f"http://127.0.0.1:{port}/health"])
        assert result.exit_code == 0 and "degraded (broker: unreachable)" in result.output
        probe.level = "failing"
        result = runner.invoke(cli_app, ["ops", "check", f"http://127.0.0.1:{port}/health"])
        assert result.exit_code == 1 and "HTTP 503" in result.output
    finally:
        server.stop()
    result = CliRunner().invoke(cli_app, ["ops", "check", f"http://127.0.0.1:{port}/health", "--timeout", "1"])
    assert result.exit_code == 2 and "no answer" in result.output
