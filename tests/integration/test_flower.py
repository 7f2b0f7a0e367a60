"""`celery -A genesis flower` against a real worker: the worker and its tasks appear in Flower's
HTTP API (Flower turns task events on in the workers with its default ``enable_events``)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from genesis.adapters.db import Repository
from genesis.tasks.routing import FINISH_RUN
from tests.integration.workers import Worker
from tests.ports import free_port
from tests.services import redis_url
from tests.waiting import wait_for

URL = redis_url(10)


AUTH = "ops:secret"  # Flower's API needs authentication (or FLOWER_UNAUTHENTICATED_API=true)


def api(port: int, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    request.add_header("Authorization", "Basic " + base64.b64encode(AUTH.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def test_flower_shows_the_worker_and_its_tasks(tmp_path: Path) -> None:
    import flower as _flower  # noqa: F401  (the `ops` extra, installed by scripts/setup.sh --dev: never skipped)
    rds = redis.Redis.from_url(URL)
    rds.flushdb()
    db = f"sqlite:///{tmp_path / 'genesis.db'}"
    with Repository(db) as repo:
        repo.start_run("flower-run", "entrance", "clip.mp4", {"mode": "distributed"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env.update(GENESIS_BROKER_URL=URL, GENESIS_REDIS_URL=URL, GENESIS_DATABASE_URL=db,
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    port, ops_port = free_port(), free_port()
    # A plain `celery -A genesis worker` serves the ops endpoint when given a port.
    worker = Worker("store", "store", dict(env, GENESIS_OPS__PORT=str(ops_port)), tmp_path, pool="solo")
    flower_log = (tmp_path / "flower.log").open("w")
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "genesis", "flower", f"--port={port}", "--address=127.0.0.1"],
        env=dict(env, FLOWER_BASIC_AUTH=AUTH),  # as docker/docker-compose.yml sets it
        stdout=flower_log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
    )
    try:
        worker.wait_ready()
        wait_for(lambda: worker.name in api(port, "/api/workers?refresh=1"), 60, "the worker in Flower")
        # The compose healthcheck's URL answers without a login; the API does not.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=10) as resp:
            assert resp.status == 200
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/workers", timeout=10)
        # The worker starts with task events off (distributed.task_events): Flower switches them
        # on by itself, every few seconds. Tasks run before that are not seen, so send one at a
        # time until Flower shows one.
        sender = Celery("sender", broker=URL, set_as_current=False)
        sent: list[str] = []

        def seen(task_id: str) -> bool:
            try:
                task = api(port, f"/api/task/info/{task_id}")
            except urllib.error.HTTPError:
                return False
            return bool(task.get("state") == "SUCCESS" and task.get("worker") == worker.name)

        def a_task_seen() -> bool:
            sent.append(sender.send_task(FINISH_RUN, args=["flower-run", 7, {}], queue="store").id)
            time.sleep(2)
            return any(seen(t) for t in sent)

        wait_for(a_task_seen, 90, "a task in Flower")
        tasks = api(port, "/api/tasks")
        assert any(tasks.get(t, {}).get("name") == FINISH_RUN for t in sent)
        with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/status", timeout=10) as resp:
            status = json.loads(resp.read())
        assert status["role"] == "worker" and status["queues"] == ["store"]
        wait_for(lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/status", timeout=10).read())
                 ["processed"] == {FINISH_RUN: {"SUCCESS": len(sent)}}, 30, "every task counted in /status")
    finally:
        worker.stop()
        if flower.poll() is None:
            os.killpg(flower.pid, signal.SIGTERM)
            try:
                flower.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(flower.pid, signal.SIGKILL)
                flower.wait(10)
        flower_log.close()
        rds.flushdb()
    with Repository(db) as repo:
        run = repo.run("flower-run")
    assert run is not None and run.status == "finished" and run.frames == 7
