"""RTSP, the protocol most cameras speak, from a real server: GStreamer's gst-rtsp-server (Debian
packages, installed by scripts/test.sh) serving a shared clip on 127.0.0.1 with basic
authentication. Both modes ingest it, the server is killed (SIGKILL) and started again mid-stream:
the source reconnects with backoff, capture's /health goes degraded then ok, the gap is counted,
nothing hangs, and the password in the URL is never printed. ~90 s together.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.integration.test_faults_defaults import RedisServer, wait_for
from tests.integration.workers import genesis_cli, pipeline_env, workers
from tests.ports import free_port

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
PASSWORD = "pa55-Wd-s3cret"
SPECS = [("detect", "detect", 1, "prefork"), ("recognize", "recognize", 1, "solo"), ("store", "store", 1, "solo")]


class RtspServer:
    """gst-rtsp-server in a process of its own (the system Python, which has Debian's PyGObject)."""

    def __init__(self, video: Path, folder: Path) -> None:
        self.video = video
        self.port = free_port()
        self.log = folder / "rtsp.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://cam:{PASSWORD}@127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), "--video", str(self.video), "--user", "cam",
             "--password", PASSWORD], stdout=self.log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: "ready" in self.log.read_text()[offset:], 20, "the RTSP server")

    def clients(self) -> int:
        return self.log.read_text().count("client connected")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def _has_gst_rtsp() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture()
def rtsp(data_dir: Path, tmp_path: Path) -> Iterator[RtspServer]:
    if not _has_gst_rtsp():
        pytest.fail("gst-rtsp-server for the system python3 is missing: run scripts/test.sh (it installs "
                    "gir1.2-gst-rtsp-server-1.0 and the GStreamer plugins)")
    server = RtspServer(data_dir / "video" / "opencv4nodejs_people.mp4", tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _outage(server: RtspServer, down_s: float = 4.0) -> None:
    """Kill the server mid-stream and start it again on the same port after ``down_s``."""
    server.kill()
    time.sleep(down_s)
    server.start()


def test_embedded_run_reconnects_to_rtsp(rtsp: RtspServer, models_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env.update(GENESIS_MODELS_DIR=str(models_dir), GENESIS_DATABASE_URL=f"sqlite:///{tmp_path / 'genesis.db'}",
               COLUMNS="200")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "genesis.cli.main", "run", "--source", rtsp.url, "--stride", "4",
                             "--max-frames", "70", "--out", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: rtsp.clients() >= 1, 60, "the run to connect")
        time.sleep(3)  # frames flowing
        _outage(rtsp)
        output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert PASSWORD not in output
    report = json.loads((out / "report.json").read_text())
    assert report["results"]["frames"] == 70
    assert PASSWORD not in json.dumps(report) and report["run"]["source"].startswith("rtsp://***@")
    engine = create_engine(env["GENESIS_DATABASE_URL"])
    with engine.connect() as conn:
        source, meta = conn.execute(text("SELECT source, meta FROM runs")).one()
    engine.dispose()
    meta = meta if isinstance(meta, dict) else json.loads(meta)
    assert PASSWORD not in source
    assert meta["reconnects"] >= 1 and meta["outage_s"] > 0, meta


def _health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def test_distributed_capture_reconnects_to_rtsp(rtsp: RtspServer, models_dir: Path, data_dir: Path,
                                                tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    redis_server = RedisServer(folder)
    ops_port = free_port()
    try:
        with pipeline_env(tmp_path, models_dir, data_dir, redis_server.url(0), redis_server.url(1), {}) as env:
            log = (tmp_path / "capture.log").open("w")
            cap = subprocess.Popen([sys.executable, "-m", "genesis.cli.main", "capture", "--camera", "entrance",
                                    "--source", rtsp.url, "--stride", "6", "--port", str(ops_port)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_for(lambda: _ok(ops_port) == "ok", 60, "capture connected")
                rtsp.kill()
                wait_for(lambda: _ok(ops_port) == "degraded", 30, "capture degraded", interval=0.3)
                degraded = _health(ops_port)
                assert PASSWORD not in json.dumps(degraded)
                time.sleep(2)
                rtsp.start()
                wait_for(lambda: _ok(ops_port) == "ok", 60, "capture connected again", interval=0.3)
                time.sleep(2)
                status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/status", timeout=10).read())
                assert PASSWORD not in json.dumps(status)
                cap.send_signal(signal.SIGTERM)  # a live capture ends when told to: the end of its run
                cap.wait(60)
            finally:
                if cap.poll() is None:
                    os.killpg(cap.pid, signal.SIGKILL)
                log.close()
            output = (tmp_path / "capture.log").read_text()
            assert cap.returncode == 0, output
            assert PASSWORD not in output
            match = re.search(r"published (\d+).*reconnects (\d+).*run ([0-9a-f]{32})", output)
            assert match, output
            published, reconnects, run_id = int(match[1]), int(match[2]), match[3]
            assert published > 0 and reconnects >= 1
            with workers(*SPECS, env=env, log_dir=tmp_path):
                genesis_cli(env, "drain", "--timeout", "300")
            got_dir = tmp_path / "report"
            genesis_cli(env, "report", "--run", run_id, "--out", str(got_dir))
            got = json.loads((got_dir / "report.json").read_text())
            assert got["run"]["status"] == "finished"
            assert got["results"]["frames"] == published
            assert got["run"]["reconnects"] >= 1 and got["run"]["outage_s"] > 0
            assert PASSWORD not in json.dumps(got)
    finally:
        redis_server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _ok(port: int) -> str | None:
    try:
        return str(_health(port)["status"])
    except OSError:
        return None
