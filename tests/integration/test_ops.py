"""The ops endpoints of the real processes: every worker launcher, beat and the capture serve
/health, /metrics and /status while a looping camera stream runs through the pipeline; the
counters move; the capture turns `degraded` when the camera goes away and stops cleanly on
SIGTERM (exit 0, run finished).

The same commands as docker/docker-compose.yml, as local processes: real Redis, PostgreSQL,
Celery workers (prefork detect pool) and models.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import pytest
import redis
import yaml
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.integration.workers import Worker, fresh_postgres_database, genesis_cli
from tests.ports import free_port
from tests.services import redis_url
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
BROKER = redis_url(6)
FRAMES = redis_url(7)


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def get_json(port: int, path: str) -> Any:
    return json.loads(get(port, path)[1])


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, body = get(port, "/metrics")
    assert code == 200
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(port: int, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(v for (n, lab), v in samples(port).items() if n == name and set(labels.items()) <= set(lab))


class MjpegCamera:
    """An HTTP MJPEG camera (``multipart/x-mixed-replace``, 10 frames a second, looping over a clip)
    that can be switched off: what the capture reads as a live URL source."""

    def __init__(self, video: Path, frames: int = 30, size: tuple[int, int] = (640, 360)) -> None:
        cap = cv2.VideoCapture(str(video))
        self.jpegs: list[bytes] = []
        for _ in range(frames):
            ok, image = cap.read()
            assert ok
            self.jpegs.append(cv2.imencode(".jpg", cv2.resize(image, size))[1].tobytes())
        cap.release()
        self.port = free_port()
        self.httpd: ThreadingHTTPServer | None = None
        self.off = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not camera.off.is_set():
                        jpeg = camera.jpegs[i % len(camera.jpegs)]
                        i += 1
                        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                        self.wfile.write(head + jpeg + b"\r\n")
                        time.sleep(0.1)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.off.clear()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        """Off: the open stream ends and new connections are refused."""
        self.off.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


@pytest.fixture(scope="module")
def env(models_dir: Path, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    out = tmp_path_factory.mktemp("ops")
    config = out / "settings.yaml"
    config.write_text(yaml.safe_dump({
        "distributed": {"gap_timeout_s": 6, "worker_dead_after_s": 3, "worker_heartbeat_s": 1,
                        "task_time_limit_s": {}},  # no limit fits a 6 s gap: none (this module is not about hung tasks)
        "cameras": [{"id": "entrance", "fps": 6}],
    }))
    for url in (BROKER, FRAMES):
        redis.Redis.from_url(url).flushdb()
    try:
        with fresh_postgres_database() as pg:
            e = {k: v for k, v in os.environ.items() if not k.startswith(("GENESIS_", "PROMETHEUS_"))}
            e.update(GENESIS_CONFIG=str(config), GENESIS_MODELS_DIR=str(models_dir), GENESIS_DATABASE_URL=pg,
                     GENESIS_BROKER_URL=BROKER, GENESIS_REDIS_URL=FRAMES, GENESIS_OPS__METRICS_DIR=str(out),
                     COLUMNS="200", TEST_OUT_DIR=str(out), PYTHONPATH=str(ROOT))
            genesis_cli(e, "db", "upgrade")
            faces = shared_dir / "models" / "faces"
            genesis_cli(e, "enroll", "obama", str(faces / "obama.jpg"))
            yield e
    finally:
        for url in (BROKER, FRAMES):
            redis.Redis.from_url(url).flushdb()


def test_every_process_serves_health_metrics_status(env: dict[str, str], data_dir: Path) -> None:
    out = Path(env["TEST_OUT_DIR"])
    ports = {role: free_port() for role in ("detect", "recognize", "analytics", "store", "beat", "capture")}
    launchers = [
        Worker(role, "", env, out, command=[sys.executable, str(ROOT / "workers" / f"{role}.py"),
                                           *(["--workers", "2"] if role == "detect" else []),
                                           "--port", str(ports[role])])
        for role in ("detect", "recognize", "analytics", "store")
    ]
    beat_log = (out / "beat.log").open("w")
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "genesis", "beat", "-s", str(out / "beat-schedule"),
         "--loglevel", "INFO"],
        env=dict(env, GENESIS_OPS__PORT=str(ports["beat"])), stdout=beat_log, stderr=subprocess.STDOUT,
        start_new_session=True, cwd=out,
    )
    camera = MjpegCamera(data_dir / "video" / "opencv4nodejs_people.mp4")
    camera.start()
    capture: subprocess.Popen[str] | None = None
    try:
        for w in launchers:
            w.wait_ready()
        wait_for(lambda: get(ports["beat"], "/health")[0] == 200, 30, "beat's endpoint")

        # Before any frame: workers are up, nothing processed; the detect children load the detector when they
        # start (before they take work), the recognize worker its face models on its first task.
        detect_health = get_json(ports["detect"], "/health")
        assert detect_health["status"] == "ok", detect_health
        assert detect_health["checks"]["broker"]["ok"] and detect_health["checks"]["database"]["ok"]
        wait_for(lambda: get_json(ports["detect"], "/status")["models"]["detector"]["loaded"] is True, 120,
                 "the detect children's detector loaded at their start")
        status = get_json(ports["detect"], "/status")
        assert status["role"] == "detect" and status["queues"] == ["detect"] and status["concurrency"] == 2
        # detector.threads 0 (the default): the CPUs shared among the 2 children, not onnxruntime's thread per core
        # in each of them
        from genesis.backends.onnx import available_cpus

        assert status["detector_threads"] == max(1, available_cpus() // 2), status
        assert status["uptime_s"] > 0 and status["processed"] == {}
        assert "not loaded yet" in get_json(ports["recognize"], "/health")["checks"]["models"]["detail"]

        capture = subprocess.Popen(
            [sys.executable, "-m", "genesis.cli.main", "capture", "--camera", "entrance",
             "--source", camera.url, "--port", str(ports["capture"])],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        # Frames go all the way through: rows stored, end-to-end latency observed.
        wait_for(lambda: value(ports["store"], "genesis_end_to_end_latency_seconds_count") >= 3, 90,
                 "stored rows (end-to-end latency)")

        # Capture: frames captured per camera, camera connected.
        assert value(ports["capture"], "genesis_frames_captured_total", camera="entrance") > 0
        assert value(ports["capture"], "genesis_frames_published_total", camera="entrance") > 0
        assert ("genesis_frames_dropped_total", (("camera", "entrance"), ("reason", "backpressure"))) in \
            samples(ports["capture"])
        cap_status = get_json(ports["capture"], "/status")
        assert cap_status["role"] == "capture" and cap_status["processed"]["published"] > 0
        assert cap_status["cameras"][0]["camera"] == "entrance"
        wait_for(lambda: get_json(ports["capture"], "/health")["status"] == "ok", 20, "capture healthy")

        # Detect (prefork, 2 children): tasks and inference times added up across the pool.
        assert value(ports["detect"], "genesis_tasks_total", task="genesis.detect", state="SUCCESS") > 0
        assert value(ports["detect"], "genesis_task_duration_seconds_count", task="genesis.detect") > 0
        assert value(ports["detect"], "genesis_inference_duration_seconds_count", stage="detect") > 0
        d_status = get_json(ports["detect"], "/status")
        assert d_status["processed"]["genesis.detect"]["SUCCESS"] > 0
        assert d_status["models"]["detector"]["loaded"] is True
        assert get_json(ports["detect"], "/health")["checks"]["models"]["detail"] == "detector loaded"

        # Recognize: the ordered stage ran; store: rows saved, recognitions counted by outcome.
        # (rows are stored while the first sequence task still runs: it ends with its turn, TURN_S at most)
        wait_for(lambda: value(ports["recognize"], "genesis_tasks_total", task="genesis.sequence",
                               state="SUCCESS") > 0, 60, "a sequence task finished")
        assert value(ports["store"], "genesis_tasks_total", task="genesis.store.save_outcome", state="SUCCESS") > 0
        assert value(ports["recognize"], "genesis_inference_duration_seconds_count", stage="face_detect") > 0
        r_status = get_json(ports["recognize"], "/status")
        assert r_status["queues"] == ["recognize"] and r_status["concurrency"] == 1
        assert set(r_status["models"]) == {"face_detector", "face_embedder"}

        # Cluster-wide gauges on every endpoint; analytics and beat are healthy too.
        for role in ("detect", "recognize", "analytics", "store", "beat", "capture"):
            s = samples(ports[role])
            assert ("genesis_queue_depth", (("queue", "detect"),)) in s, role
            assert ("genesis_dlq_size", ()) in s, role
            code, body = get(ports[role], "/health")
            assert code == 200, (role, body)
            assert json.loads(body)["role"] == role
            st = get_json(ports[role], "/status")
            assert {"role", "queues", "concurrency", "models", "uptime_s", "processed", "last_error"} <= set(st)
        assert get_json(ports["beat"], "/status")["role"] == "beat"

        # A message that cannot be decoded: dead-lettered, counted, the worker's last error.
        assert value(ports["detect"], "genesis_dlq_size") == 0
        sender = Celery("sender", broker=BROKER, set_as_current=False)
        sender.send_task("genesis.detect", args=[{"not": "a frame"}, "no-run", -1], queue="detect")
        # It waits behind the camera's frames in the detect queue: on a loaded 2-core machine that took over 30 s.
        wait_for(lambda: value(ports["store"], "genesis_dlq_size") == 1, 180, "the dead letter")
        wait_for(lambda: get_json(ports["detect"], "/status")["last_error"] is not None, 10, "the last error")
        last = get_json(ports["detect"], "/status")["last_error"]
        assert last["task"] == "genesis.detect" and "PermanentError: undecodable frame message" in last["error"]
        assert value(ports["detect"], "genesis_tasks_total", task="genesis.detect", state="FAILURE") == 1

        # The camera goes away: the capture is degraded, with the reason.
        camera.stop()

        def degraded() -> bool:
            body = get_json(ports["capture"], "/health")
            return body["status"] == "degraded" and any(
                "camera entrance: not connected: cannot open url source" in r for r in body["reasons"])

        wait_for(degraded, 20, "capture degraded")
        assert get(ports["capture"], "/health")[0] == 200  # degraded is still served as 200
        assert value(ports["capture"], "genesis_camera_connected", camera="entrance") == 0

        # SIGTERM: the capture stops cleanly (end of run published, exit 0) and the run is finished.
        run_id = cap_status["cameras"][0]["run_id"]
        capture.send_signal(signal.SIGTERM)
        output, _ = capture.communicate(timeout=30)
        assert capture.returncode == 0, output
        match = re.search(rf"camera entrance: published (\d+), .*run {run_id}", output)
        still_match = re.search(r", still (\d+) \(sent as markers", output)
        assert match, output

        def finished() -> bool:
            engine = create_engine(env["GENESIS_DATABASE_URL"])
            try:
                with engine.connect() as conn:
                    row = conn.execute(text("SELECT status FROM runs WHERE id = :id"), {"id": run_id}).first()
            finally:
                engine.dispose()
            return row is not None and row[0] == "finished"

        wait_for(finished, 60, "the run marked finished")
        # Each published frame that moved was detected once, by one of the two pool children (the endpoint adds
        # up both children's files); the still ones went to the sequencer as markers (motion gating, the default).
        published, still = int(match[1]), int(still_match[1]) if still_match else 0
        detected = value(ports["detect"], "genesis_tasks_total", task="genesis.detect", state="SUCCESS")
        assert detected == published - still, (published, still)
    finally:
        camera.stop()
        if capture is not None and capture.poll() is None:
            os.killpg(capture.pid, signal.SIGKILL)
            capture.wait(10)
        if beat.poll() is None:
            os.killpg(beat.pid, signal.SIGTERM)
            try:
                beat.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(beat.pid, signal.SIGKILL)
        beat_log.close()
        for w in launchers:
            w.stop()
