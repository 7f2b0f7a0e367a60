"""Dead letters and the PipelineTask base class, on a real Redis and real Celery worker processes.

Redis DB 14 of the test server (tests/services.py; or ``GENESIS_TEST_REDIS_URL``) is the broker and the
dead-letter store; it is flushed before and after this module. The workers run
``tests/integration/dlq_tasks.py`` with max_retries=3 and a backoff capped at 1 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.exceptions import Retry
from kombu import Connection, Exchange, Producer, Queue

from genesis.adapters.dlq import DeadLetter, DeadLetters, ReplayError
from genesis.celery import configure
from genesis.config import Settings, load_settings
from genesis.tasks import routing
from genesis.tasks.base import TRANSIENT_ERRORS, PermanentError, PipelineTask
from genesis.tasks.dispatch import replay
from tests.integration.dlq_tasks import CORRUPT, CRASH, CRASH_RETRIES, DOWN, FLAKY, PREFORK_QUEUE, QUEUE
from tests.services import redis_url

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("GENESIS_TEST_REDIS_URL", redis_url(14))
MAX_RETRIES = 3
WAIT_S = 20.0
READY_S = 120.0
"""How long a test worker may take to answer a ping after its start (a loaded 2-core machine: four test workers)."""


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of the workers and CLI runs (and the source of this module's settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env.update(
        GENESIS_BROKER_URL=REDIS_URL,
        GENESIS_REDIS_URL=REDIS_URL,
        GENESIS_DATABASE_URL=f"sqlite:///{tmp_path_factory.mktemp('db') / 'genesis.db'}",
        GENESIS_DISTRIBUTED__MAX_RETRIES=str(MAX_RETRIES),
        GENESIS_DISTRIBUTED__RETRY_BACKOFF_MAX_S="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        COLUMNS="200",
    )
    return env


@pytest.fixture(scope="module")
def settings(env: dict[str, str]) -> Settings:
    return load_settings(environ=env)


@pytest.fixture(scope="module")
def rdb(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"these tests need Redis at {REDIS_URL} (GENESIS_TEST_REDIS_URL): {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def client(settings: Settings, rdb: redis.Redis) -> Iterator[Celery]:
    """A Celery app that only sends (and pings the workers)."""
    app = Celery("genesis_dlq_client")
    configure(app, settings)
    yield app
    app.close()


@pytest.fixture()
def dlq(settings: Settings, rdb: redis.Redis) -> Iterator[DeadLetters]:
    store = DeadLetters.from_settings(settings)
    yield store
    store.redis.close()


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    name: str
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def _start_worker(client: Celery, env: dict[str, str], queue: str, pool: str, folder: Path) -> Worker:
    name = f"{queue}-{uuid.uuid4().hex[:8]}@localhost"
    log = folder / f"{queue}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.integration.dlq_tasks", "worker", "-Q", queue,
             "--pool", pool, "-c", "1", "-n", name, "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    worker = Worker(proc, name, log)
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"worker {name} exited with {proc.returncode}:\n{worker.log_tail()}")
        if client.control.ping(destination=[name], timeout=0.5):
            return worker
    _stop_worker(worker)
    raise AssertionError(f"worker {name} not ready after {READY_S} s:\n{worker.log_tail()}")


def _stop_worker(worker: Worker) -> None:
    """SIGTERM (warm shutdown), then SIGKILL to its whole process group; every wait bounded."""
    if worker.proc.poll() is None:
        worker.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.proc.pid, signal.SIGKILL)  # its own session: pool children included
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def worker(client: Celery, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = _start_worker(client, env, QUEUE, "solo", tmp_path_factory.mktemp("worker"))
    yield w
    _stop_worker(w)


@pytest.fixture(scope="module")
def prefork_worker(client: Celery, env: dict[str, str],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = _start_worker(client, env, PREFORK_QUEUE, "prefork", tmp_path_factory.mktemp("prefork"))
    yield w
    _stop_worker(w)


def wait_for(what: str, check: Callable[[], Any], worker: Worker | None = None, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    tail = f"\nworker log:\n{worker.log_tail()}" if worker else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{tail}")


@dataclass
class CLI:
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        from genesis.cli.main import app as main_app

        # `genesis dlq` once genesis/cli/main.py registers it; the module alone until then.
        wired = any(g.name == "dlq" for g in main_app.registered_groups)
        cmd = ["-m", "genesis.cli.main", "dlq"] if wired else ["-m", "genesis.cli.dlq"]
        proc = subprocess.run([sys.executable, *cmd, *args], cwd=self.cwd, env=self.env, input=input,
                              capture_output=True, text=True, timeout=60, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"genesis dlq {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def cli(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> CLI:
    return CLI(env, tmp_path_factory.mktemp("cli"))


def attempts(rdb: redis.Redis, key: str) -> int:
    return int(rdb.get(f"{key}:attempts") or 0)


def letter_sample(n: int, failed_at: datetime) -> DeadLetter:
    return DeadLetter(task_name=routing.SAVE_TRACKS, task_id=f"task-{n}", args=[f"run-{n}", n],
                      kwargs={"camera": "cam0", "n": n}, queue="store", exc_type="sqlalchemy.exc.OperationalError",
                      exc_message=f"server closed the connection ({n})", traceback=f"Traceback ...\nline {n}\n",
                      retries=n, failed_at=failed_at, first_failed_at=failed_at - timedelta(seconds=30))


# -- the store ---------------------------------------------------------------------------------


def test_dead_letters_crud_order_size_and_json(dlq: DeadLetters) -> None:
    dlq.purge()
    assert dlq.size() == 0 and dlq.list() == []
    t0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    # added out of order: listing follows failed_at, not insertion
    for n in (2, 0, 3, 1):
        assert dlq.add(letter_sample(n, t0 + timedelta(minutes=n))) == f"task-{n}"
    assert dlq.size() == 4
    assert [x.id for x in dlq.list()] == ["task-0", "task-1", "task-2", "task-3"]
    assert [x.id for x in dlq.list(limit=2, offset=1)] == ["task-1", "task-2"]
    assert [x.id for x in dlq.list(limit=2, newest_first=True)] == ["task-3", "task-2"]
    assert [x.id for x in dlq] == ["task-0", "task-1", "task-2", "task-3"]

    got = dlq.get("task-2")
    assert got == dataclasses.replace(letter_sample(2, t0 + timedelta(minutes=2)), id="task-2")
    assert got is not None and got.failed_at.tzinfo is not None and got.error.startswith("OperationalError: ")
    assert dlq.get("nope") is None
    assert dlq.find("task-") and dlq.find("task-3") == ["task-3"] and dlq.find("zzz") == []

    # the same task id again replaces its letter (a redelivered message failing twice)
    dlq.add(letter_sample(2, t0 + timedelta(minutes=9)))
    assert dlq.size() == 4 and [x.id for x in dlq.list()][-1] == "task-2"

    assert dlq.remove("task-1") is True and dlq.remove("task-1") is False
    assert dlq.size() == 3 and dlq.get("task-1") is None
    # a letter without a task id gets its own id
    assert len(dlq.add(DeadLetter(task_name="x", task_id=""))) == 32
    assert dlq.purge() == 4 and dlq.size() == 0 and dlq.list() == []


def test_dead_letter_json_round_trip() -> None:
    letter = letter_sample(1, datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    letter.id, letter.hostname, letter.body = "abc", "w1@host", None
    text = letter.to_json()
    assert DeadLetter.from_json(text) == letter
    assert json.loads(text)["failed_at"] == "2025-01-02T03:04:05.678000+00:00"
    # naive times are taken as UTC; missing first failure = the failure
    naive = DeadLetter(task_name="t", task_id="i", failed_at=datetime(2025, 1, 1, 0, 0))
    assert naive.failed_at.tzinfo is UTC and naive.first_failed_at == naive.failed_at
    with pytest.raises(ValueError, match="unknown dead-letter fields"):
        DeadLetter.from_dict({**letter.to_dict(), "colour": "red"})
    with pytest.raises(ValueError):
        DeadLetter.from_json("[1, 2]")
    huge = DeadLetter(task_name="t", task_id="i", traceback="x" * 100_000, body="y" * 100_000)
    assert len(huge.traceback) < 21_000 and huge.traceback.endswith("x") and len(huge.body or "") < 11_000


# -- the base class, in process (no worker needed) ---------------------------------------------


def test_retry_settings_come_from_the_app_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    app = Celery("genesis_base_test")
    configure(app, settings)

    @app.task(base=PipelineTask, name="test.base.transient", bind=True)
    def transient(self: PipelineTask, kind: str) -> None:
        raise {"redis": redis.exceptions.ConnectionError("down"), "permanent": PermanentError("corrupt"),
               "bug": KeyError("oops"), "os": ConnectionRefusedError("refused")}[kind]

    @app.task(base=PipelineTask, name="test.base.explicit", bind=True, max_retries=7)
    def explicit(self: PipelineTask) -> None: ...

    task = app.tasks["test.base.transient"]
    assert (task.max_retries, task.retry_backoff_max, task.default_retry_delay) == (MAX_RETRIES, 1, 1)
    assert task.acks_late and task.reject_on_worker_lost and task.retry_on_worker_lost
    # The backoff's jitter is ours (half_jitter, in retry()), not Celery's full jitter.
    assert task.retry_backoff and not task.retry_jitter and task.autoretry_for == TRANSIENT_ERRORS
    assert app.tasks["test.base.explicit"].max_retries == 7  # the decorator wins
    assert settings.distributed.max_retries == MAX_RETRIES

    # What Celery's autoretry wrapper asks for: countdowns capped by retry_backoff_max (1 s),
    # even at a retry count where the uncapped backoff would be 2**8 s.
    calls: list[dict[str, Any]] = []

    def fake_retry(**kw: Any) -> Retry:
        calls.append(kw)
        return Retry("retry", kw.get("exc"))

    monkeypatch.setattr(task, "retry", fake_retry)
    task.push_request(retries=8, id="t1")
    try:
        for _ in range(40):
            with pytest.raises(Retry):
                task.run("redis")
            with pytest.raises(Retry):
                task.run("os")  # builtin ConnectionError subclass
        with pytest.raises(PermanentError):
            task.run("permanent")
        with pytest.raises(KeyError):
            task.run("bug")
    finally:
        task.pop_request()
    assert len(calls) == 80
    assert {c["countdown"] for c in calls} == {1}
    assert all("max_retries" not in c for c in calls)  # retry() then uses task.max_retries


# -- with real workers -------------------------------------------------------------------------


def test_flaky_task_succeeds_after_retries(client: Celery, worker: Worker, rdb: redis.Redis,
                                           dlq: DeadLetters) -> None:
    key = f"dlqtest:{uuid.uuid4().hex}"
    failures = 2
    result = client.send_task(FLAKY, args=[key, failures], queue=QUEUE)
    wait_for("the flaky task to succeed", lambda: rdb.get(f"{key}:done") is not None, worker)
    assert attempts(rdb, key) == failures + 1
    assert rdb.get(f"{key}:done") == str(failures)  # request.retries on the successful attempt
    times = [float(t) for t in rdb.lrange(f"{key}:times", 0, -1)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g < 1.9 for g in gaps), gaps  # backoff capped at 1 s (+ scheduling slack)
    assert dlq.get(result.id) is None
    assert rdb.get(f"genesis:dlq:first:{result.id}") is None  # cleared on success


def test_always_failing_task_is_dead_lettered_listed_shown_and_replayed(
        client: Celery, worker: Worker, rdb: redis.Redis, dlq: DeadLetters, cli: CLI) -> None:
    key = f"dlqtest:{uuid.uuid4().hex}"
    sent_at = datetime.now(UTC)
    result = client.send_task(DOWN, args=[key], queue=QUEUE)
    letter = wait_for("the dead letter", lambda: dlq.get(result.id), worker)
    assert attempts(rdb, key) == MAX_RETRIES + 1
    assert letter.id == result.id == letter.task_id
    assert letter.task_name == DOWN and letter.args == [key] and letter.kwargs == {}
    assert letter.queue == QUEUE
    assert letter.exc_type == "ConnectionError" and letter.exc_message == "database is down"
    assert "ConnectionError: database is down" in letter.traceback and "dlq_tasks.py" in letter.traceback
    assert letter.retries == MAX_RETRIES
    assert letter.first_failed_at is not None
    assert sent_at - timedelta(seconds=1) <= letter.first_failed_at < letter.failed_at <= datetime.now(UTC)
    assert letter.hostname == worker.name and letter.replayable
    time.sleep(0.3)
    assert attempts(rdb, key) == MAX_RETRIES + 1  # no further retry after the letter

    listed = cli("list").stdout
    assert letter.id[:8] in listed and DOWN in listed and "ConnectionError: database is down" in listed
    assert letter.id in cli("list", "--full-ids", "--newest", "--limit", "1").stdout
    shown = cli("show", letter.id[:12]).stdout  # a unique prefix is enough
    for text in (letter.id, DOWN, json.dumps([key]), "database is down", "Traceback", QUEUE, str(MAX_RETRIES)):
        assert text in shown, (text, shown)
    as_json = json.loads(cli("show", letter.id, "--json").stdout)
    assert DeadLetter.from_dict(as_json) == letter

    rdb.set(f"{key}:healed", 1)  # the database is back
    out = cli("replay", letter.id).stdout
    assert f"replayed {letter.id}" in out and f"on queue {QUEUE}" in out
    wait_for("the replayed task to succeed", lambda: rdb.get(f"{key}:done") is not None, worker)
    assert attempts(rdb, key) == MAX_RETRIES + 2
    assert rdb.get(f"{key}:done") == "0"  # a fresh task: no retries counted from before
    assert dlq.get(letter.id) is None
    missing = cli("replay", letter.id, check=False)
    assert missing.returncode == 1 and "no dead letter" in missing.stderr


def test_permanent_error_is_dead_lettered_after_one_attempt(client: Celery, worker: Worker, rdb: redis.Redis,
                                                            dlq: DeadLetters) -> None:
    key = f"dlqtest:{uuid.uuid4().hex}"
    result = client.send_task(CORRUPT, args=[key, "zz-not-hex"], queue=QUEUE)
    letter = wait_for("the dead letter", lambda: dlq.get(result.id), worker)
    assert attempts(rdb, key) == 1 and letter.retries == 0
    assert letter.exc_type == "genesis.tasks.base.PermanentError"
    assert letter.exc_message.startswith("bad frame: ValueError")
    assert letter.args == [key, "zz-not-hex"] and letter.first_failed_at == letter.failed_at


def test_messages_the_worker_cannot_run_are_dead_lettered(client: Celery, worker: Worker, settings: Settings,
                                                          dlq: DeadLetters, cli: CLI) -> None:
    # an unregistered task name: kept with its arguments, replayable once the task exists
    unknown = client.send_task("test.dlq.not_deployed_yet", args=[1, "a"], kwargs={"k": 2}, queue=QUEUE)
    letter = wait_for("the unknown-task letter", lambda: dlq.get(unknown.id), worker)
    assert letter.exc_type == "celery.exceptions.NotRegistered" and letter.exc_message == "test.dlq.not_deployed_yet"
    assert (letter.task_name, letter.args, letter.kwargs, letter.queue) == ("test.dlq.not_deployed_yet", [1, "a"],
                                                                           {"k": 2}, QUEUE)
    assert letter.replayable

    # a body that is not JSON, for a known task: kept raw, not replayable
    bad_id = str(uuid.uuid4())
    with Connection(settings.broker_url) as conn:
        queue = Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)
        Producer(conn).publish(b"{not json", routing_key=QUEUE, exchange=queue.exchange, declare=[queue],
                               content_type="application/json", content_encoding="utf-8",
                               headers={"task": DOWN, "id": bad_id, "lang": "py"})
    bad = wait_for("the undecodable-message letter", lambda: dlq.get(bad_id), worker)
    assert bad.task_name == DOWN and bad.body == "{not json" and not bad.replayable
    assert bad.exc_type == "genesis.tasks.base.PermanentError" and "cannot be decoded" in bad.exc_message
    refused = cli("replay", bad_id, check=False)
    assert refused.returncode == 1 and "could not be decoded" in refused.stderr
    assert dlq.get(bad_id) is not None
    dlq.remove(bad_id)
    dlq.remove(unknown.id)


def test_worker_lost_poison_message_is_dead_lettered(client: Celery, prefork_worker: Worker, rdb: redis.Redis,
                                                     dlq: DeadLetters) -> None:
    key = f"dlqtest:{uuid.uuid4().hex}"
    result = client.send_task(CRASH, args=[key], queue=PREFORK_QUEUE)
    letter = wait_for("the worker-lost letter", lambda: dlq.get(result.id), prefork_worker, timeout=30)
    assert attempts(rdb, key) == CRASH_RETRIES + 1 and letter.retries == CRASH_RETRIES
    assert letter.exc_type.endswith("WorkerLostError") and letter.args == [key]
    assert letter.queue == PREFORK_QUEUE
    dlq.remove(letter.id)


# -- replay and purge --------------------------------------------------------------------------


def test_replay_routes_by_task_name_and_sends_each_letter_once(client: Celery, settings: Settings,
                                                               rdb: redis.Redis, dlq: DeadLetters) -> None:
    rdb.delete("store")
    letter = letter_sample(5, datetime.now(UTC))
    letter.queue = "somewhere-else"  # routing knows SAVE_TRACKS: it goes to "store"
    dlq.add(letter)
    new_id = replay(client, settings, letter, dlq)
    assert new_id != letter.task_id and dlq.get(letter.id) is None
    assert rdb.llen("store") == 1
    message = json.loads(rdb.lindex("store", 0) or "{}")
    assert message["headers"]["task"] == routing.SAVE_TRACKS and message["headers"]["id"] == new_id
    with pytest.raises(ReplayError, match="no longer in the DLQ"):
        replay(client, settings, letter, dlq)  # a second replay of the same letter sends nothing
    assert rdb.llen("store") == 1

    # another replayer holds the letter: this one backs off without sending
    dlq.add(letter)
    rdb.set(f"genesis:dlq:replaying:{letter.id}", "someone-else", ex=5)
    with pytest.raises(ReplayError, match="being replayed"):
        replay(client, settings, letter, dlq)
    assert rdb.llen("store") == 1 and dlq.get(letter.id) is not None
    rdb.delete(f"genesis:dlq:replaying:{letter.id}", "store")
    dlq.remove(letter.id)


def test_cli_replay_all_and_purge(client: Celery, worker: Worker, rdb: redis.Redis, dlq: DeadLetters,
                                  cli: CLI) -> None:
    dlq.purge()
    keys = [f"dlqtest:{uuid.uuid4().hex}" for _ in range(2)]
    for i, key in enumerate(keys):
        rdb.set(f"{key}:healed", 1)
        dlq.add(DeadLetter(task_name=DOWN, task_id=f"all-{i}", args=[key], queue=QUEUE,
                           exc_type="ConnectionError", exc_message="database is down"))
    out = cli("replay", "--all").stdout
    assert "replayed 2 dead letter(s)" in out
    for key in keys:
        wait_for("a replayed task", lambda key=key: rdb.get(f"{key}:done") is not None, worker)
    assert dlq.size() == 0

    for i in range(3):
        dlq.add(letter_sample(i, datetime.now(UTC)))
    declined = cli("purge", input="n\n", check=False)
    assert declined.returncode == 1 and dlq.size() == 3
    assert "purged 3 dead letter(s)" in cli("purge", "--yes").stdout
    assert dlq.size() == 0
    assert "empty" in cli("list").stdout
    usage = cli("replay", check=False)
    assert usage.returncode == 2 and "--all" in usage.stderr


def test_cli_reports_unreachable_redis(cli: CLI) -> None:
    env = {**cli.env, "GENESIS_REDIS_URL": "redis://127.0.0.1:1/0"}
    proc = CLI(env, cli.cwd)("list", check=False)
    assert proc.returncode == 1 and "cannot reach Redis at redis://127.0.0.1:1/0" in proc.stderr
