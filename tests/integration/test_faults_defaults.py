"""Faults with the SHIPPED DEFAULTS (no shortened timeout anywhere): a detect worker killed with
SIGKILL mid-run, Redis really stopped and restarted mid-run, a capture and its workers killed
mid-stream. Each test starts its own redis-server (append-only file, as docker compose runs it)
on a free port, real Celery worker processes and a fresh PostgreSQL database.

Times on the 2-core CI machine: about 1-2 minutes each (the abandoned-run test waits for the
default ``run_stale_after_s``, 60 s).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from genesis.adapters.dlq import DeadLetters
from genesis.config import DistributedConfig
from tests.integration.test_ops import MjpegCamera
from tests.integration.workers import (
    Worker,
    capture,
    clip,
    embedded,
    genesis_cli,
    launchers,
    pipeline_env,
    workers,
    workers_started,
)
from tests.ports import free_port
from tests.stored import stored_sightings
from tests.waiting import wait_for

SPECS = [("detect", "detect", 1, "prefork"), ("recognize", "recognize", 1, "solo"), ("store", "store", 1, "solo")]
DEFAULTS = DistributedConfig()


class RedisServer:
    """A redis-server of the test's own, with an append-only file (as in docker compose), that can
    be stopped and started again on the same port with the same data."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "everysec", "--dir", str(self.folder)],
            stdout=(self.folder / "redis.log").open("a"), stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        """A clean stop (SIGTERM, as `docker restart` does): the append-only file is flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        self.proc = None


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    srv = RedisServer(folder)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def env(server: RedisServer, models_dir: Path, tmp_path: Path, data_dir: Path) -> Iterator[dict[str, str]]:
    with pipeline_env(tmp_path, models_dir, data_dir, server.url(0), server.url(1), {}) as e:
        yield e


def report(env: dict[str, str], *args: str) -> tuple[dict[str, Any], str]:
    out = Path(env["TEST_OUT_DIR"]) / f"report-{time.monotonic_ns()}"
    proc = subprocess.run([os.sys.executable, "-m", "genesis.cli.main", "report", *args, "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "report.json").read_text()), proc.stderr


def held(broker: redis.Redis, task: str) -> list[str]:
    """Delivery tags of unacknowledged messages of ``task``."""
    tags = []
    for tag, raw in broker.hgetall("unacked").items():
        if json.loads(raw)[0]["headers"]["task"] == task:
            tags.append(tag.decode())
    return tags


def held_for_other_run(broker: redis.Redis, run_id: str) -> bool:
    """Whether a detect message of another run than ``run_id`` is taken and not acknowledged."""
    from genesis.pipeline.liveness import describe_message

    return any(describe_message(raw).run_id not in (None, run_id) and describe_message(raw).task == "genesis.detect"
               for raw in broker.hvals("unacked"))


def rows(env: dict[str, str], table: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(env["GENESIS_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def run_status(env: dict[str, str], run_id: str, other: bool = False) -> str | None:
    """The status of a run (with ``other``: of the one run that is not ``run_id``)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(env["GENESIS_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT id, status FROM runs")).all()
    finally:
        engine.dispose()
    for rid, status in found:
        if (rid != run_id) if other else (rid == run_id):
            return str(status)
    return None


def test_defaults_wait_for_a_dead_workers_message() -> None:
    """The shipped defaults themselves: a dead worker's message comes back well before its gap is skipped."""
    assert DEFAULTS.gap_timeout_s >= 2 * DEFAULTS.worker_dead_after_s
    assert DEFAULTS.visibility_timeout_s > DEFAULTS.gap_timeout_s  # only a backstop


class TaskEvents:
    """Celery task events of the workers of one broker, gathered by a thread (for workers started with ``-E``)."""

    def __init__(self, url: str) -> None:
        from celery import Celery

        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._app = Celery(broker=url, set_as_current=False)
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._capture, daemon=True)
        self._thread.start()

    def _capture(self) -> None:
        with self._app.connection() as conn:
            self._receiver = self._app.events.Receiver(conn, handlers={"*": self.events.put})
            with contextlib.suppress(Exception):  # the broker gone at the end of the test
                self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        self.seen.append(event)
        return event

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True


def stop_a_pool_child_mid_task(events: TaskEvents, hostname: str, timeout: float) -> tuple[int, str]:
    """SIGSTOP the pool child of ``hostname`` that runs a detect task, while it runs it (a hung child: its
    main process goes on beating); returns the child's pid and the task's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = events.next(1.0)
        if not event or event.get("type") != "task-started" or event.get("hostname") != hostname:
            continue
        # The event comes from the worker's main process (on the child's acceptance): its one pool child runs it.
        children = Path(f"/proc/{event['pid']}/task/{event['pid']}/children").read_text().split()
        assert len(children) == 1, children
        pid, task_id = int(children[0]), str(event["uuid"])
        os.kill(pid, signal.SIGSTOP)
        # Stopped mid-task unless it had already finished (its own event then arrives): if so, go on, try the next.
        finished = False
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:
            later = events.next(0.1)
            if later and later.get("uuid") == task_id and later.get("type") in ("task-succeeded", "task-failed"):
                finished = True
        if not finished:
            return pid, task_id
        os.kill(pid, signal.SIGCONT)
    raise AssertionError(f"no detect task of {hostname} caught mid-run in {timeout} s")


def test_detect_worker_killed_mid_batch_loses_nothing(env: dict[str, str], server: RedisServer,
                                                      data_dir: Path) -> None:
    """kill -9 of the detect worker holding a batch, another detect worker going on with the next
    ones: the dead worker's batch is back on the queue within the gap timeout, so no frame is
    skipped and the stored results equal the embedded run's. Then the pool child of that second worker
    hangs (SIGSTOP) in a task while its main process keeps beating: the task's time limit
    (distributed.task_time_limit_s, the default) stops it and sends it again, no dead letter. ~90 s."""
    want = embedded(env, data_dir)
    logs = Path(env["TEST_OUT_DIR"])
    broker = redis.Redis.from_url(server.url(0))
    run_id = capture(env, data_dir)
    events = TaskEvents(server.url(0))
    with workers(*SPECS, env=env, log_dir=logs) as started:
        detect = started[0]
        wait_for(lambda: held(broker, "genesis.detect"), 120, "a detect batch in a worker's hands", interval=0.02)
        detect.kill()
        victims = held(broker, "genesis.detect")
        assert victims, "the killed worker held no detect message"
        killed_at = time.monotonic()
        second = Worker("detect2", "detect", env, logs, extra=("-E",))  # -E: its task events tell when to stop it
        with workers_started(second):
            child, hung_task = stop_a_pool_child_mid_task(events, second.name, 120)
            hung_at = time.monotonic()
            limit = DEFAULTS.task_time_limit_s["detect"]
            retried = None
            while retried is None and time.monotonic() < hung_at + limit + 30:
                event = events.next(1.0)
                if event and event.get("uuid") == hung_task and event.get("type") == "task-retried":
                    retried = time.monotonic() - hung_at
            assert retried is not None, (
                f"the hung task {hung_task} was not sent again: "
                f"{[e for e in events.seen if e.get('hostname') == second.name and 'task' in e.get('type', '')]}\n"
                f"{second.log.read_text()[-4000:]}")
            assert retried < limit + 5 < DEFAULTS.gap_timeout_s, retried
            wait_for(lambda: not Path(f"/proc/{child}").exists(), 30, "the hung pool child stopped")

            def back() -> bool:  # out of the dead worker's hands: queued again, or taken by the new worker
                taken = set(held(broker, "genesis.detect"))
                return all(t not in taken or broker.get(f"genesis:held:{t}") not in (None, detect.name.encode())
                           for t in victims)

            wait_for(back, 60, "the dead worker's batch back in the queue")
            back_after = time.monotonic() - killed_at
            assert back_after < DEFAULTS.gap_timeout_s, back_after
            genesis_cli(env, "drain", "--timeout", "300")
    events.close()
    got, _ = report(env, "--run", run_id)
    letters = DeadLetters(redis.Redis.from_url(server.url(1), decode_responses=True)).list(limit=100)
    assert not letters, [f"{x.task_name} ({x.retries} retries): {x.error}" for x in letters]
    assert got["run"]["status"] == "finished"
    assert got["run"]["missing_frames"] == 0
    assert got["results"] == want
    assert stored_sightings(env["GENESIS_DATABASE_URL"], finished=True) == sum(t["frames"] for t in want["tracks"])


def test_redis_restarted_mid_run_completes(env: dict[str, str], server: RedisServer, data_dir: Path) -> None:
    """Redis stopped for 9 s while tasks are in flight, then started again (same data): tasks retry
    instead of being dead-lettered, the run finishes with everything, drain tells the truth. ~80 s."""
    want = embedded(env, data_dir)
    logs = Path(env["TEST_OUT_DIR"])
    run_id = capture(env, data_dir)
    with workers(*SPECS, env=env, log_dir=logs):
        wait_for(lambda: stored_sightings(env["GENESIS_DATABASE_URL"]) > 0
                 or held(redis.Redis.from_url(server.url(0)), "genesis.detect"),
                 120, "work in flight")
        server.stop()
        time.sleep(9)
        server.start()
        out = genesis_cli(env, "drain", "--timeout", "300")
        assert "drained" in out
    got, _ = report(env, "--run", run_id)
    letters = DeadLetters(redis.Redis.from_url(server.url(1), decode_responses=True)).list(limit=100)
    assert not letters, [f"{x.task_name} ({x.retries} retries): {x.error}" for x in letters]
    assert got["run"]["status"] == "finished"
    assert got["results"]["frames"] + got["run"]["missing_frames"] + got["run"]["skipped_frames"] == 40
    assert got["run"]["missing_frames"] == 0
    assert got["results"] == want


def test_capture_and_workers_killed_run_is_abandoned(env: dict[str, str], server: RedisServer,
                                                     data_dir: Path, tmp_path: Path) -> None:
    """A live capture and every worker killed with SIGKILL mid-stream: drain names the messages
    held by dead workers; once workers are back the run is marked failed (abandoned, with why) after
    run_stale_after_s, its keys expire, drain returns, and report --camera says it skipped it. ~3 min
    (the default run_stale_after_s, 60 s, and two starts of four workers)."""
    logs = Path(env["TEST_OUT_DIR"])
    everyone = [*SPECS, ("analytics", "analytics", 1, "solo")]
    finished = capture(env, data_dir)  # an earlier, complete run of the same camera
    camera = MjpegCamera(Path(clip(data_dir)))
    camera.start()
    frames = redis.Redis.from_url(server.url(1))
    broker = redis.Redis.from_url(server.url(0))
    cap_log = (tmp_path / "capture.log").open("w")
    cap: subprocess.Popen[bytes] | None = None
    try:
        with workers(*everyone, env=env, log_dir=logs) as started:
            wait_for(lambda: run_status(env, finished) == "finished", 120, "the earlier run stored", interval=0.5)
            # Started now (not before): few of its frames wait when everything is killed.
            cap = subprocess.Popen([os.sys.executable, "-m", "genesis.cli.main", "capture", "--camera", "entrance",
                                    "--source", camera.url, "--stride", "2"], env=env, stdout=cap_log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
            wait_for(lambda: held_for_other_run(broker, finished), 60, "the live run in the workers' hands",
                     interval=0.05)
            os.killpg(cap.pid, signal.SIGKILL)
            for w in started:
                w.kill()
        cap.wait(10)
        # No worker alive: drain names the dead worker's messages and stops on its own, well
        # before its --timeout (3 x worker_dead_after_s without any heartbeat).
        began = time.monotonic()
        stuck = subprocess.run([os.sys.executable, "-m", "genesis.cli.main", "drain", "--timeout", "300"], env=env,
                               capture_output=True, text=True, timeout=400, check=False)
        assert stuck.returncode == 1 and time.monotonic() - began < 120, stuck.stderr
        assert "no live Genesis worker" in stuck.stderr, stuck.stderr
        assert "held by a dead worker" in stuck.stderr and "no live worker to put them back" in stuck.stderr
        with workers(*everyone, env=env, log_dir=logs):
            # The dead workers' messages come back, everything published is stored: drained.
            genesis_cli(env, "drain", "--timeout", "300")
            # The run never ends (its capture is dead): the workers' heartbeat marks it abandoned.
            wait_for(lambda: run_status(env, finished, other=True) == "failed",
                     DEFAULTS.run_stale_after_s + 60, "the run marked abandoned", interval=2)
    finally:
        if cap is not None and cap.poll() is None:
            os.killpg(cap.pid, signal.SIGKILL)
        cap_log.close()
        camera.stop()
    got, warned = report(env, "--camera", "entrance")
    assert got["run"]["run_id"] == finished
    assert "skipped newer run" in warned and "capture stopped without ending the stream" in warned, warned
    from sqlalchemy import create_engine, text

    engine = create_engine(env["GENESIS_DATABASE_URL"])
    with engine.connect() as conn:
        found = conn.execute(text("SELECT id, status, meta FROM runs WHERE id != :f"), {"f": finished}).all()
    engine.dispose()
    [(abandoned, status, meta)] = found
    meta = meta if isinstance(meta, dict) else json.loads(meta)
    assert status == "failed"
    assert "capture stopped without ending the stream" in meta["abandoned"]
    # No key of the run lives forever (frames, results, sequencer state, heartbeats).
    forever = [k for k in frames.scan_iter(match=f"*{abandoned}*") if frames.ttl(k) < 0]
    assert not forever, forever
    assert genesis_cli(env, "drain", "--timeout", "30")  # nothing left to wait for


def test_capture_waits_out_a_redis_restart(server: RedisServer, data_dir: Path, tmp_path: Path) -> None:
    """A live capture while its Redis is stopped for 5 s and started again: degraded meanwhile (the
    frames read then dropped and counted), then publishing again; the end of the run gets through. ~30 s."""
    import threading

    from genesis.config import CameraConfig, load_settings
    from genesis.pipeline.capture import distributed_capture
    from genesis.tasks.dispatch import end_key

    settings = load_settings(environ={"GENESIS_BROKER_URL": server.url(0), "GENESIS_REDIS_URL": server.url(1),
                                      "GENESIS_DATABASE_URL": f"sqlite:///{tmp_path / 'genesis.db'}"})
    camera = MjpegCamera(Path(clip(data_dir)))
    camera.start()
    stop = threading.Event()
    loop = distributed_capture(settings, CameraConfig(id="gate"), camera.url, stop=stop)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(stats=loop.run()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: loop.status()["published"] >= 5, 30, "frames published")
        server.stop()
        wait_for(lambda: loop.status()["state"] == "degraded", 15, "capture degraded")
        assert "unreachable" in (loop.status()["last_error"] or "")
        time.sleep(5)
        before = loop.status()["published"]
        server.start()
        wait_for(lambda: loop.status()["published"] > before + 5 and loop.status()["state"] == "connected", 60,
                 "publishing again")
    finally:
        stop.set()
        thread.join(30)
        camera.stop()
    assert not thread.is_alive()
    stats = result["stats"]
    assert stats.dropped > 0  # the frames read while Redis was away, counted
    summary = json.loads(redis.Redis.from_url(server.url(1)).get(end_key(stats.run_id)) or b"null")
    assert summary["last_seq"] == stats.last_seq and summary["frames"] == stats.published


def test_redis_restarted_like_docker_restart_with_the_compose_layout(env: dict[str, str], server: RedisServer,
                                                                      data_dir: Path) -> None:
    """The compose layout (the per-service launchers, detect with two processes, the analytics
    worker sequencing) and Redis restarted as ``docker restart`` does (SIGTERM, started again at
    once) while detect messages are taken, prefetched and retried: every frame is processed once,
    none is skipped or given up, and the results equal the embedded run's. ~90 s."""
    want = embedded(env, data_dir)
    logs = Path(env["TEST_OUT_DIR"])
    broker = redis.Redis.from_url(server.url(0))
    commands = [("detect", ["--workers", "2"]), ("recognize", []), ("analytics", []), ("store", [])]
    with launchers(*commands, env=env, log_dir=logs):
        run_id = capture(env, data_dir)
        wait_for(lambda: stored_sightings(env["GENESIS_DATABASE_URL"]) > 0 and held(broker, "genesis.detect"), 120,
                 "rows stored and detect messages taken", interval=0.05)
        server.stop()
        server.start()
        genesis_cli(env, "drain", "--timeout", "300")
    got, _ = report(env, "--run", run_id)
    assert got["run"]["status"] == "finished"
    assert (got["run"]["missing_frames"], got["run"]["skipped_frames"]) == (0, 0), got["run"]
    assert got["results"] == want
    assert stored_sightings(env["GENESIS_DATABASE_URL"], finished=True) == sum(t["frames"] for t in want["tracks"])


@contextmanager
def dlq_worker(env: dict[str, str], tmp_path: Path, pool: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A worker of the test tasks (tests/integration/dlq_tasks.py) on the test's Redis, with
    Genesis' consumer and heartbeat; its log is printed at the end."""
    from tests.integration import dlq_tasks

    name = f"restart-{os.getpid()}-{pool}@localhost"
    log = tmp_path / f"worker-{pool}.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [os.sys.executable, "-m", "celery", "-A", "tests.integration.dlq_tasks", "worker", "-Q", dlq_tasks.QUEUE,
             "--pool", pool, "-c", "1", "-n", name, "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield worker, name
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        print(log.read_text()[-3000:])


def restart_redis_while_held(server: RedisServer, broker: redis.Redis, name: str, task: str, args: list[Any],
                             countdown: float | None = None, running: bool = False) -> None:
    """Send a test task, wait until the worker ``name`` holds it (``running``: until its main process
    counts it as running, not only taken), then restart Redis (down 3 s: long enough for the worker to
    notice, and for anything sent through the old connection to fail)."""
    from celery import Celery

    from tests.integration import dlq_tasks

    wait_for(lambda: broker.exists(f"genesis:worker:{name}:alive"), 60, "the worker's heartbeat")
    sender = Celery("sender", broker=server.url(0), set_as_current=False)  # this test's Redis, a new pool
    try:
        sent = sender.send_task(task, args=args, queue=dlq_tasks.QUEUE, countdown=countdown)
        wait_for(lambda: any(broker.get(f"genesis:held:{t.decode()}") for t in broker.hkeys("unacked")), 30,
                 "the message held by the worker")
        if running:
            # A prefork worker counts a task as running once its child has said it started. A message
            # handed to a child that had not said so yet when the connection broke is one Celery forgets
            # (it would come back over the broker): the heartbeat puts it back and it runs twice, as
            # designed for a task that was only taken. This test is about a task already running.
            def running_now() -> bool:
                active = sender.control.inspect(destination=[name], timeout=2).active() or {}
                return any(t.get("id") == sent.id for t in active.get(name, []))

            wait_for(running_now, 60, "the task running in the worker")
    finally:
        sender.close()
    server.stop()
    time.sleep(3)
    server.start()


def test_a_countdown_held_across_a_redis_restart_still_runs(env: dict[str, str], server: RedisServer,
                                                            tmp_path: Path) -> None:
    """A retry waiting for its countdown sits in the worker's memory and in Redis' ``unacked``.
    Redis restarted: Celery drops it from memory with the broken connection, and kombu cannot give
    it back while Redis is away (it used to end the worker trying), so it would wait the
    visibility timeout (an hour) held by a living worker. The worker survives, and its heartbeat
    puts the message back: it runs at its time, once. ~40 s."""
    from tests.integration import dlq_tasks

    broker = redis.Redis.from_url(server.url(0))
    frames = redis.Redis.from_url(server.url(1))
    with dlq_worker(env, tmp_path, "solo") as (worker, name):
        restart_redis_while_held(server, broker, name, dlq_tasks.FLAKY, ["later", 0], countdown=15)
        wait_for(lambda: frames.get("later:done") is not None, 90, "the task to run at its countdown")
        assert int(frames.get("later:attempts") or 0) == 1
        wait_for(lambda: not broker.hlen("unacked"), 10, "the message acknowledged")
        assert worker.poll() is None, "the worker died with its broker connection"


def test_a_task_running_across_a_redis_restart_is_acknowledged_once(env: dict[str, str], server: RedisServer,
                                                                    tmp_path: Path) -> None:
    """A task still running when Redis restarts finishes after it is back: its acknowledgement
    goes through (not through the closed channel, which used to end the worker), so it runs
    once and nothing is left in ``unacked``. Prefork, as the detect workers run. ~40 s."""
    from tests.integration import dlq_tasks

    broker = redis.Redis.from_url(server.url(0))
    frames = redis.Redis.from_url(server.url(1))
    with dlq_worker(env, tmp_path, "prefork") as (worker, name):
        restart_redis_while_held(server, broker, name, dlq_tasks.SLOW, ["busy", 8.0], running=True)
        wait_for(lambda: frames.get("busy:done") is not None, 60, "the task to finish")
        wait_for(lambda: not broker.hlen("unacked"), 30, "the message acknowledged")
        time.sleep(6)  # two heartbeats: nothing is put back to run again
        assert int(frames.get("busy:attempts") or 0) == 1
        assert not broker.llen(dlq_tasks.QUEUE)
        assert worker.poll() is None, "the worker died with its broker connection"


def detect_messages(broker: redis.Redis) -> list[tuple[bytes, list[int]]]:
    """The detect queue's messages, oldest first, each with its frames' seqs."""
    from genesis.adapters.broker import broker_queue_keys
    from genesis.config import load_settings
    from genesis.tasks.celery_config import make_app

    out = []
    for key in broker_queue_keys(make_app(load_settings(environ={})), "detect"):
        for raw in reversed(broker.lrange(key, 0, -1)):  # LPUSH in, BRPOP from the right: oldest last
            envelope = json.loads(raw)
            body = json.loads(base64.b64decode(envelope["body"]))
            out.append((raw, [int(f["seq"]) for f in body[0][0]]))
    return out


def test_detect_messages_lost_by_the_broker_are_sent_again(env: dict[str, str], server: RedisServer,
                                                           data_dir: Path) -> None:
    """A Redis restart can lose a message that a worker was taking: kombu pops it (BRPOP, in the
    append-only file) and records it as unacknowledged in a second command, and when the
    connection breaks in between (or Redis exits before sending the BRPOP's reply) it is in
    neither place — no heartbeat, no visibility timeout brings it back. Here two detect messages
    are taken off the queue between the capture and the workers, as that would: one in the
    middle of the run and the last one. With the shipped defaults the sequencer sends them again
    (the capture kept them) after the gap timeout (30 s) instead of giving their frames up (and,
    for the last one, instead of leaving the run to be abandoned): complete, the embedded
    results. ~2 min (one gap timeout and a second chance)."""
    want = embedded(env, data_dir)
    logs = Path(env["TEST_OUT_DIR"])
    broker = redis.Redis.from_url(server.url(0))
    run_id = capture(env, data_dir)  # no worker yet: every detect message waits on the queue
    queued = detect_messages(broker)
    assert len(queued) >= 3, queued
    lost = [queued[len(queued) // 2], queued[-1]]
    for raw, _ in lost:
        assert broker.lrem("detect", 1, raw) == 1
    lost_frames = sum(len(seqs) for _, seqs in lost)
    began = time.monotonic()
    with workers(*SPECS, env=env, log_dir=logs):
        genesis_cli(env, "drain", "--timeout", "300")
    took = time.monotonic() - began
    got, _ = report(env, "--run", run_id)
    assert got["run"]["status"] == "finished", got["run"]
    assert (got["run"]["missing_frames"], got["run"]["skipped_frames"]) == (0, 0), (got["run"], lost_frames)
    assert got["results"] == want
    assert stored_sightings(env["GENESIS_DATABASE_URL"], finished=True) == sum(t["frames"] for t in want["tracks"])
    assert took >= DEFAULTS.gap_timeout_s  # they were waited for first, with the shipped timeout
