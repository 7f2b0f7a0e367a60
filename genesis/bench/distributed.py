"""Benchmark: the distributed pipeline (real Celery workers, Redis, PostgreSQL) on the frames
of the embedded benchmark, side by side with the embedded run and the detector-only loop.

    python -m genesis.bench.distributed --source VIDEO [--frames 120] [--stride 1] \\
        [--detect-workers 2] [--rounds 2] [--detect-threads 0] [--enroll DIR] \\
        [--parts throughput,noop,latency] [--noop-task-events] [--noop-unbatched] [--markdown]

Three parts, in one run:

1. **Throughput.** The same frames through (a) the detector alone, in this process (as
   ``genesis.bench.pipeline`` does), (b) ``run_embedded`` in this process on SQLite, and (c) the
   distributed pipeline: this process captures (JPEG into Redis, a FrameRef per frame on the
   detect queue), ``celery -A genesis worker`` processes detect (prefork, N children),
   sequence (recognize queue, solo) and store (solo) into a fresh PostgreSQL database, and
   the time runs from the capture's start to the moment ``genesis drain``'s test says that
   everything is stored (polled every 0.1 s; delayed sequence re-checks of a run that has
   already finished do not count: ``genesis drain`` itself waits for them, up to
   ``distributed.gap_timeout_s``, although they have nothing left to do). The distributed
   results must equal the embedded ones. Rounds alternate (a), (b), (c); medians are
   reported, with CPU time per frame by process: this one (capture, and the drain polls),
   each worker with its pool children, the Redis and PostgreSQL servers. CPU that other
   processes used meanwhile is reported as "foreign CPU": on a shared machine, a round with
   much of it is not a measurement of Genesis.
2. **Chain overhead.** The detect workers are swapped for benchmark workers whose detector
   returns no person (``--bench-worker --noop``: the product code is not touched, the
   worker's ``runtime.detector`` is replaced before the pool starts): frames/s of a small
   clip through JPEG, Redis, every queue and the database when detection costs nothing.
   ``--noop-task-events`` runs it again with Celery task events on (what Flower switches on),
   ``--noop-unbatched`` with one frame per detect message.
3. **Latency.** One camera paced at ``--latency-fps`` (5) through benchmark workers that
   stamp, per frame, when detection ended, when the sequencer sent its rows to the store
   queue and when they were committed (``--bench-worker --stamp``; stamps in Redis). The
   capture time is taken when the frame leaves the paced source, before JPEG encoding; the
   latency is capture → its sightings rows committed in PostgreSQL.

Every worker, the PostgreSQL database and the Redis databases (``--broker`` and
``--frames-redis``, flushed before and after) are cleaned up, whatever happens.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from genesis.adapters.db import Repository
from genesis.adapters.redis_keys import BENCH_PREFIX
from genesis.adapters.video import RawFrame, SourceInfo, VideoSource
from genesis.config import CameraConfig, Settings, load_settings
from genesis.domain.stats import percentile

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
BROKER = "redis://127.0.0.1:6379/6"
FRAMES = "redis://127.0.0.1:6379/7"
STAMP_PREFIX = BENCH_PREFIX
"""Redis keys of the latency stamps (outside ``genesis:run:*`` so ``drain`` never sees them)."""
DRAIN_POLL_S = 0.1

# ---------------------------------------------------------------------------------------------
# pure helpers (tested in tests/integration/test_bench_distributed.py)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencySummary:
    n: int
    p50_ms: float
    p95_ms: float
    max_ms: float

    def describe(self) -> str:
        return f"p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms, max {self.max_ms:.0f} ms (n={self.n})"


def latencies_ms(start: dict[int, float], end: dict[int, float]) -> list[float]:
    """Per seq present in both: (end - start) in ms, in seq order."""
    return [1000.0 * (end[s] - start[s]) for s in sorted(start.keys() & end.keys())]


def summarize(values_ms: Sequence[float]) -> LatencySummary | None:
    if not values_ms:
        return None
    return LatencySummary(len(values_ms), percentile(values_ms, 50), percentile(values_ms, 95), max(values_ms))


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the result table."""

    part: str
    measure: str
    value: str
    detail: str = ""


def summary_table(rows: Sequence[Row], title: str) -> Table:
    t = Table(title=title, show_lines=False)
    t.add_column("part")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("detail")
    last = None
    for r in rows:
        if last is not None and r.part != last:
            t.add_section()
        t.add_row(r.part if r.part != last else "", r.measure, r.value, r.detail)
        last = r.part
    return t


def markdown_table(rows: Sequence[Row]) -> str:
    """The same rows as a Markdown table (for docs/benchmarks.md)."""

    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| part | measure | value | detail |", "| --- | --- | --- | --- |"]
    last = None
    for r in rows:
        part = r.part if r.part != last else ""
        lines.append(f"| {cell(part)} | {cell(r.measure)} | {cell(r.value)} | {cell(r.detail)} |")
        last = r.part
    return "\n".join(lines)


def delayed_sequence_run(raw: bytes | str) -> str | None:
    """The run id of an unacknowledged broker message (an entry of kombu's ``unacked`` hash)
    when it is a ``genesis.sequence`` task with an ETA, i.e. a delayed gap re-check; else None."""
    from genesis.tasks.routing import SEQUENCE

    try:
        message = json.loads(raw)[0]
        headers = message.get("headers") or {}
        if headers.get("task") != SEQUENCE or not headers.get("eta"):
            return None
        args = json.loads(base64.b64decode(message["body"]))[0]
        return str(args[1])
    except (ValueError, TypeError, KeyError, IndexError, binascii.Error):
        return None


def fmt_runs(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def ratio_pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:.0f} %" if b > 0 else "n/a"


# ---------------------------------------------------------------------------------------------
# benchmark-only workers: ``python -m genesis.bench.distributed --bench-worker [...] -- ARGS``
# ---------------------------------------------------------------------------------------------


class NoopDetector:
    """A person detector that finds nobody, at no cost."""

    name = "noop"

    def detect(self, image: np.ndarray) -> list[Any]:
        return []


def stamp_key(kind: str, run_id: str) -> str:
    return f"{STAMP_PREFIX}{kind}:{run_id}"


def _stamp(client: Any, kind: str, run_id: str, seqs: set[int]) -> None:
    if not seqs:
        return
    now = repr(time.time())
    key = stamp_key(kind, run_id)
    with client.pipeline(transaction=False) as pipe:
        for s in seqs:
            pipe.hsetnx(key, str(s), now)  # the first time counts (a redelivery comes later)
        pipe.expire(key, 3600)
        pipe.execute()


def _install_stamps() -> None:
    """Record, per frame, when detection ended (detect worker), when the sequencer sent its
    rows to the store queue (recognize worker) and when they were committed (store worker)."""
    import genesis.tasks.detect as detect_mod
    from genesis.celery import app
    from genesis.domain import Sighting
    from genesis.pipeline.sequencer import FrameResult
    from genesis.tasks import routing, runtime

    push = cast(Any, detect_mod).push_results

    def push_and_stamp(redis: Any, run_id: str, results: list[FrameResult]) -> None:
        push(redis, run_id, results)
        _stamp(redis, "detected", run_id, {int(r.frame.seq) for r in results})

    cast(Any, detect_mod).push_results = push_and_stamp

    send = app.send_task

    def send_and_stamp(name: str, args: Any = None, **kwargs: Any) -> Any:
        out = send(name, args=args, **kwargs)
        if name == routing.SAVE_OUTCOME and args:
            seqs = {int(s["seq"]) for s in args[1].get("sightings", [])}
            _stamp(runtime.redis_client(), "emitted", str(args[0]), seqs)
        return out

    app.send_task = send_and_stamp

    save = Repository.save_outcome

    def save_and_stamp(self: Repository, run_id: str, sightings: Sequence[Sighting], *rest: Any) -> None:
        save(self, run_id, sightings, *rest)
        _stamp(runtime.redis_client(), "stored", run_id, {int(s.seq) for s in sightings})

    cast(Any, Repository).save_outcome = save_and_stamp


_PROFILE: dict[str, Any] = {}


def _install_profiler(out_dir: Path) -> None:
    """cProfile every process of the worker (the main process from ``worker_ready``, each pool
    child from ``worker_process_init``) and write ``<pid>.pstats`` into ``out_dir`` on shutdown."""
    import cProfile

    from celery import signals

    def start(**_: Any) -> None:
        old = _PROFILE.pop("p", None)  # a child inherits its parent's profiler: start afresh
        if old is not None:
            old.disable()
        _PROFILE["p"] = prof = cProfile.Profile()
        prof.enable()

    def dump(**_: Any) -> None:
        prof = _PROFILE.pop("p", None)
        if prof is not None:
            prof.disable()
            prof.dump_stats(str(out_dir / f"{os.getpid()}.pstats"))

    for sig in (signals.worker_ready, signals.worker_process_init):
        sig.connect(start, weak=False)
    for sig in (signals.worker_shutdown, signals.worker_process_shutdown):
        sig.connect(dump, weak=False)


WORKER_FLAGS = ("--noop", "--stamp", "--task-events", "--profile=DIR")


def worker_entry(argv: list[str]) -> None:
    """A Celery worker of ``genesis.celery:app`` with benchmark-only patches, applied before the
    pool forks so every child has them: ``--noop`` (the detector finds nobody), ``--stamp``
    (latency stamps), ``--task-events`` (Celery task events on, as when Flower watches),
    ``--profile=DIR`` (cProfile of every process).
    Arguments after ``--`` go to ``celery worker``."""
    if "--" not in argv:
        raise SystemExit(f"usage: python -m genesis.bench.distributed --bench-worker [{'] ['.join(WORKER_FLAGS)}] "
                         "-- CELERY_WORKER_ARGS")
    split = argv.index("--")
    flags, celery_args = argv[:split], argv[split + 1:]
    valued = {f.split("=", 1)[0]: f.split("=", 1)[1] for f in flags if "=" in f}
    unknown = {f for f in flags if "=" not in f} - set(WORKER_FLAGS)
    unknown |= {f"{k}=..." for k in valued if k != "--profile"}
    if unknown:
        raise SystemExit(f"unknown bench worker flags: {' '.join(sorted(unknown))}")
    from genesis.celery import app
    from genesis.tasks import runtime

    if "--noop" in flags:
        noop = NoopDetector()
        cast(Any, runtime).detector = lambda: noop
    if "--stamp" in flags:
        _install_stamps()
    if "--task-events" in flags:
        app.conf.worker_send_task_events = True
        app.conf.task_send_sent_event = True
    if "--profile" in valued:
        _install_profiler(Path(valued["--profile"]))
    app.worker_main(argv=["worker", *celery_args])


# ---------------------------------------------------------------------------------------------
# processes, databases
# ---------------------------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_stat() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, command name, the fields after it) of every live process's /proc/PID/stat (Linux): field 1 is the
    parent's pid, 2 the process group, 11 and 12 the user and system CPU ticks."""
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                raw = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            yield int(entry.name), raw[raw.index("(") + 1:raw.rindex(")")], raw[raw.rindex(")") + 2:].split()


def machine_busy_s() -> float:
    """CPU seconds the whole machine's processes spent busy (all cores; /proc/stat: user, nice,
    system, irq, softirq; not idle, iowait, or time stolen by the hypervisor)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in first[1:8])
    return (user + nice + system + irq + softirq) / _CLK_TCK


@contextlib.contextmanager
def foreign_share(shares: list[float]) -> Iterator[None]:
    """Appends to ``shares`` the share of all cores' time that processes other than this one
    used while the block ran (a busy neighbour on a shared machine shows up here)."""
    b0, c0, t0 = machine_busy_s(), time.process_time(), time.perf_counter()
    yield
    wall = time.perf_counter() - t0
    other = max(0.0, machine_busy_s() - b0 - (time.process_time() - c0))
    shares.append(other / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0)


SERVERS = {"redis-server": "redis", "postgres": "postgres"}


def labelled_ticks(groups: dict[int, str]) -> dict[int, tuple[str, int]]:
    """(label, CPU ticks) by pid of each live process of the process groups ``groups`` names (a worker and its
    pool children: the worker's role) and of each Redis and PostgreSQL server process (``SERVERS``)."""
    out: dict[int, tuple[str, int]] = {}
    for pid, comm, fields in proc_stat():
        label = groups.get(int(fields[2])) or SERVERS.get(comm)
        if label is not None:
            out[pid] = (label, int(fields[11]) + int(fields[12]))
    return out


def cpu_since(before: dict[int, tuple[str, int]], now: dict[int, tuple[str, int]],
              labels: Iterable[str] = ()) -> dict[str, float]:
    """CPU seconds by label between two :func:`labelled_ticks` (``labels``: those reported even at 0).

    Counted per process, so never negative: a process alive at both ends counts its difference, one started
    meanwhile all of its CPU, and one that exited meanwhile nothing. A pool child replaced meanwhile (one that a
    time limit stopped, say) or a PostgreSQL backend that exited takes its share with it; so does another user's
    Redis server stopped meanwhile, which summing the CPU of every live process at both ends would have
    subtracted from ours. The servers' CPU is shared with anything else that used them meanwhile."""
    out = dict.fromkeys([*labels, *SERVERS.values()], 0.0)
    for pid, (label, ticks) in now.items():
        prev = before.get(pid)
        start = prev[1] if prev is not None and prev[0] == label and prev[1] <= ticks else 0  # else: pid reused
        out[label] = out.get(label, 0.0) + (ticks - start) / _CLK_TCK
    return out


class deferred_signals:  # noqa: N801 - used as a context manager, like contextlib's
    """SIGTERM and SIGINT wait until the block has run: cleanup (stopping workers, dropping the
    database, flushing Redis) must not be cut short. A signal that came meanwhile is raised as
    ``SystemExit`` afterwards, unless an exception is already on its way out."""

    def __init__(self) -> None:
        self._got: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, lambda n, _f: self._got.append(n))

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._got and exc_type is None:
            raise SystemExit(128 + self._got[0])


class WorkerProcess:
    """A worker as a child process in its own session (so its pool children can be counted
    and stopped together), with its log in a file."""

    def __init__(self, role: str, queue: str, pool: str, concurrency: int, env: dict[str, str], log_dir: Path,
                 bench_flags: Sequence[str] | None = None) -> None:
        self.role = role
        self.name = f"bench-{role}-{uuid.uuid4().hex[:6]}@localhost"
        self.log = log_dir / f"{role}-{uuid.uuid4().hex[:4]}.log"
        args = ["-Q", queue, "-n", self.name, "-c", str(concurrency), "-P", pool,
                "--without-mingle", "--without-gossip", "--loglevel", "INFO"]
        if bench_flags is None:
            cmd = [sys.executable, "-m", "celery", "-A", "genesis", "worker", *args]
        else:
            cmd = [sys.executable, "-m", "genesis.bench.distributed", "--bench-worker", *bench_flags, "--", *args]
        self.cmd = cmd
        self._fh = self.log.open("w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.role} exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            if " ready." in self.log.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.role} not ready after {timeout:g} s:\n{self.log.read_text()[-4000:]}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # Pool children left behind by a worker that died (same process group).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._fh.close()


class Pool:
    """The benchmark's worker processes: started together, stopped in any case."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.workers: dict[str, WorkerProcess] = {}

    def start(self, specs: Sequence[tuple[str, str, str, int, dict[str, str], Sequence[str] | None]]) -> None:
        """(role, queue, pool, concurrency, extra env, bench flags or None for plain celery)."""
        for role, *_ in specs:
            self.stop(role)
        started = []
        for role, queue, pool, concurrency, extra, flags in specs:
            w = WorkerProcess(role, queue, pool, concurrency, {**self.env, **extra}, self.log_dir, flags)
            self.workers[role] = w
            started.append(w)
        for w in started:
            w.wait_ready()

    def stop(self, role: str) -> None:
        with deferred_signals():
            w = self.workers.pop(role, None)
            if w is not None:
                w.stop()

    def stop_all(self) -> None:
        with deferred_signals():
            for role in list(self.workers):
                self.stop(role)

    def cpu_mark(self) -> dict[int, tuple[str, int]]:
        """The CPU counters of the workers' processes and the servers' now (for :meth:`cpu_since`)."""
        return labelled_ticks(self._groups())

    def cpu_since(self, mark: dict[int, tuple[str, int]]) -> dict[str, float]:
        """CPU seconds since ``mark`` of each worker (with its pool children) and of the Redis and PostgreSQL
        servers (see :func:`cpu_since`)."""
        return cpu_since(mark, labelled_ticks(self._groups()), self.workers)

    def _groups(self) -> dict[int, str]:
        return {w.proc.pid: role for role, w in self.workers.items() if w.proc.poll() is None}


@contextlib.contextmanager
def fresh_postgres_database(admin_url: str, prefix: str = "genesis_bench") -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped afterwards (connections forced out). The
    integration tests use it too."""
    import psycopg2  # type: ignore[import-untyped]

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            host = admin_url.split("://", 1)[1].rsplit("/", 1)[0]
            yield f"postgresql+psycopg2://{host}/{name}"
        finally:
            with deferred_signals(), conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


@contextlib.contextmanager
def flushed_redis(*urls: str) -> Iterator[None]:
    import redis

    clients = [redis.Redis.from_url(u) for u in urls]
    for c in clients:
        c.flushdb()
    try:
        yield
    finally:
        with deferred_signals():
            for c in clients:
                with contextlib.suppress(redis.RedisError):
                    c.flushdb()
                c.close()


@contextlib.contextmanager
def bench_workdir(prefix: str, console: Console, keep: bool) -> Iterator[Path]:
    """A scratch folder for a benchmark (configuration, worker logs): removed afterwards, kept and named
    when the benchmark failed or ``keep``. Stopped on purpose (Ctrl-C, SIGTERM) is not failed."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    failed = True
    try:
        yield tmp
        failed = False
    except (KeyboardInterrupt, SystemExit):
        failed = False  # stopped on purpose: nothing to look into
        raise
    finally:
        if failed or keep:
            console.print(f"worker logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


_BENCH_URL_VARS = frozenset({"GENESIS_CONFIG", "GENESIS_DATABASE_URL", "GENESIS_BROKER_URL", "GENESIS_REDIS_URL"})


@contextlib.contextmanager
def bench_environment(
    args: argparse.Namespace, config: Path, *, drop_prefix: str | None = None
) -> Iterator[tuple[dict[str, str], Settings]]:
    """Flushed Redis databases (``args.broker``, ``args.frames_redis``) and a fresh PostgreSQL database
    (``args.pg_admin``) for a benchmark; yields the workers' environment and the settings it loads.

    The environment is this process's, without its configuration and URLs (and without the variables
    starting with ``drop_prefix``), pointed at ``config`` and those databases; ``GENESIS_MODELS_DIR`` is set
    to the settings' models folder unless it was set already."""
    base_env = {k: v for k, v in os.environ.items()
                if not (drop_prefix and k.startswith(drop_prefix)) and k not in _BENCH_URL_VARS}
    with flushed_redis(args.broker, args.frames_redis), fresh_postgres_database(args.pg_admin) as pg:
        env = {**base_env, "GENESIS_CONFIG": str(config), "GENESIS_DATABASE_URL": pg,
               "GENESIS_BROKER_URL": args.broker, "GENESIS_REDIS_URL": args.frames_redis}
        settings = load_settings(config, env)
        env.setdefault("GENESIS_MODELS_DIR", str(settings.models.path))
        yield env, settings


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------


class PacedSource:
    """A video file delivered at a fixed rate, as a live camera would; records the wall-clock
    time at which each frame left the source (before the capture's JPEG encoding)."""

    def __init__(self, source: str, fps: float, captured: dict[int, float]) -> None:
        self._video = VideoSource(source)
        self._interval = 1.0 / fps
        self._captured = captured

    @property
    def info(self) -> SourceInfo:
        return self._video.info

    def frames(self, stride: int = 1, max_frames: int | None = None) -> Iterator[RawFrame]:
        start = time.monotonic()
        for i, raw in enumerate(self._video.frames(stride, max_frames)):
            delay = start + i * self._interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._captured[raw.seq] = time.time()
            yield raw

    def close(self) -> None:
        self._video.close()


def make_small_clip(source: str, path: Path, width: int, frames: int) -> tuple[int, int]:
    """``frames`` frames of ``source`` scaled to ``width`` (looped if the source is shorter),
    written as an MJPG AVI; returns (width, height)."""
    import cv2

    writer: Any = None
    written = 0
    size = (width, width)
    try:
        while written < frames:
            before = written
            with VideoSource(source) as video:
                fps = video.info.fps
                for raw in video.frames():
                    h, w = raw.image.shape[:2]
                    size = (width, max(2, round(h * width / w / 2) * 2))
                    if writer is None:
                        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
                        if not writer.isOpened():
                            raise OSError(f"cannot write {path}")
                    writer.write(cv2.resize(raw.image, size, interpolation=cv2.INTER_AREA))
                    written += 1
                    if written >= frames:
                        break
            if written == before:
                raise OSError(f"no frame read from {source}")
    finally:
        if writer is not None:
            writer.release()
    return size


# ---------------------------------------------------------------------------------------------
# one distributed run
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class DistRun:
    run_id: str
    frames: int
    dropped: int
    capture_s: float
    total_s: float
    cpu_s: dict[str, float]
    """CPU seconds by process: ``capture`` (this process) and each worker role."""
    gap_rechecks: int = 0
    """Delayed sequence re-checks of this finished run still waiting on their ETA when
    everything was stored: ``genesis drain`` would wait for them (up to ``gap_timeout_s``)."""
    other_cpu_s: float = 0.0
    """CPU the machine spent meanwhile on processes that are not the pipeline's."""
    capture_steps_s: dict[str, float] = field(default_factory=dict)
    """The capture's CPU seconds by step (``CaptureStats.cpu_s``: read, gate, encode, send)."""
    drain_poll_cpu_s: float = 0.0
    """CPU of this process while it polled for the drain (the benchmark's, not counted in ``cpu_s``; before
    issue 22 it was counted as the capture's)."""

    @property
    def other_share(self) -> float:
        """Foreign CPU as a share of all cores' time during the run."""
        cores = os.cpu_count() or 1
        return self.other_cpu_s / (self.total_s * cores) if self.total_s > 0 else 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.total_s if self.total_s > 0 else 0.0

    @property
    def capture_fps(self) -> float:
        return self.frames / self.capture_s if self.capture_s > 0 else 0.0

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000.0 * sum(self.cpu_s.values()) / self.frames if self.frames else 0.0

    def cpu_breakdown(self) -> dict[str, float]:
        """CPU ms per frame by process."""
        return {k: 1000.0 * v / self.frames for k, v in self.cpu_s.items()} if self.frames else {}


def fmt_breakdown(parts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in parts.items())


def median_breakdown(runs: Sequence[DistRun]) -> dict[str, float]:
    keys = list(runs[0].cpu_breakdown())
    return {k: statistics.median(r.cpu_breakdown()[k] for r in runs) for k in keys}


@dataclass(slots=True)
class Harness:
    settings: Settings
    camera: CameraConfig
    repo: Repository
    pool: Pool
    app: Any = None
    client: Any = None
    broker: Any = None
    drain_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        import redis

        from genesis.tasks.celery_config import make_app

        self.app = make_app(self.settings)
        self.client = redis.Redis.from_url(self.settings.redis_url)
        self.broker = redis.Redis.from_url(self.settings.broker_url)

    def idle_rechecks(self, run_id: str) -> tuple[int, int, int]:
        """(unacknowledged broker messages, of which delayed sequence re-checks of finished runs,
        of which of this run)."""
        from genesis.adapters.redis_keys import done_key

        entries = self.broker.hvals("unacked")
        idle = mine = 0
        for raw in entries:
            run = delayed_sequence_run(raw)
            if run is not None and self.client.exists(done_key(run)):
                idle += 1
                mine += run == run_id
        return len(entries), idle, mine

    def wait_stored(self, run_id: str) -> tuple[float, int]:
        """``genesis drain``'s test (two empty looks in a row, here every 0.1 s), except that
        delayed sequence re-checks of runs already finished do not count: they will find the
        run done and do nothing. Returns the perf_counter time of the first of the two looks
        and how many such re-checks were waiting."""
        from genesis.pipeline.drain import backlog

        deadline = time.monotonic() + self.drain_timeout_s
        first_empty: float | None = None
        while True:
            state = backlog(self.settings, self.app, self.client, self.repo)
            now = time.perf_counter()
            mine = 0
            empty = state.empty
            if not empty and state.unacked and not any(state.queued.values()) and not state.pending_results \
                    and not state.unfinished_runs:
                total, idle, mine = self.idle_rechecks(run_id)
                empty = total == idle
            if empty:
                if first_empty is not None:
                    return first_empty, mine
                first_empty = now
            else:
                first_empty = None
            if time.monotonic() > deadline:
                raise RuntimeError(f"not drained after {self.drain_timeout_s:g} s: {state.describe()}")
            time.sleep(DRAIN_POLL_S)

    def run(self, source: str, frames: int, stride: int,
            open_source: Callable[[str], Any] | None = None) -> DistRun:
        from genesis.pipeline.capture import distributed_capture

        loop = distributed_capture(self.settings, self.camera, source, app=self.app, stride=stride,
                                   max_frames=frames, repository=self.repo)
        if open_source is not None:
            loop.open_source = open_source
        cpu0, mark, busy0 = time.process_time(), self.pool.cpu_mark(), machine_busy_s()
        t0 = time.perf_counter()
        stats = loop.run()
        t_captured = time.perf_counter()
        # The capture's CPU ends with it: the polling for the drain below is the benchmark's, not the pipeline's.
        cpu = {"capture": time.process_time() - cpu0}
        t_done, rechecks = self.wait_stored(stats.run_id)
        drain_poll = time.process_time() - cpu0 - cpu["capture"]
        cpu.update(self.pool.cpu_since(mark))
        # Whatever else ran on the machine meanwhile (another user's tests, say): not ours.
        cpu_other = max(0.0, machine_busy_s() - busy0 - sum(cpu.values()))
        run = self.repo.run(stats.run_id)
        if run is None or run.status != "finished":
            raise RuntimeError(f"run {stats.run_id} not finished after the drain: {run}")
        return DistRun(stats.run_id, stats.published, stats.dropped, t_captured - t0, t_done - t0, cpu, rechecks,
                       cpu_other, dict(stats.cpu_s), drain_poll)


# ---------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------


def bench_config(source: str) -> dict[str, Any]:
    """The benchmark's settings file: one camera with a zone and a line (analytics run), no
    backpressure drops (the whole clip is queued at once)."""
    return {
        "distributed": {"max_backlog": 1_000_000},
        "cameras": [{
            "id": "bench",
            "source": source,
            "zones": [{"name": "lower", "points": [[0.25, 0.45], [0.75, 0.45], [0.75, 1.0], [0.25, 1.0]]}],
            "lines": [{"name": "middle", "start": [0.5, 0.0], "end": [0.5, 1.0]}],
        }],
    }


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


@dataclass(slots=True)
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, part: str, measure: str, value: str, detail: str = "") -> None:
        self.rows.append(Row(part, measure, value, detail))


def _enroll(repo: Repository, folder: Path, settings: Settings, models: Any) -> int:
    from genesis.pipeline.model_loader import detector_label
    from genesis.services.enroll import enroll

    n = 0
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(p for p in person.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:2]
        if photos:
            enroll(repo, person.name, photos, models.face_detector, models.embedder, detector_label(settings))
            n += 1
    return n


def part_throughput(args: argparse.Namespace, h: Harness, emb_settings: Settings, models: Any,
                    res: Results, console: Console) -> None:
    from genesis.bench.pipeline import detector_only
    from genesis.pipeline.embedded import run_embedded
    from genesis.pipeline.report import build_results

    n_det = args.detect_workers
    console.print(f"[bold]1. throughput[/]: warming up the workers ({2 * n_det + 2} frames)...")
    h.run(args.source, 2 * n_det + 2, args.stride)
    detector_only(args.source, 5, args.stride, models.detector)
    det: list[tuple[float, float]] = []
    emb: list[tuple[float, float]] = []
    dist: list[DistRun] = []
    same: list[bool] = []
    foreign: list[float] = []
    for i in range(max(1, args.rounds)):
        with foreign_share(foreign):
            det.append(detector_only(args.source, args.frames, args.stride, models.detector))
        c0 = time.process_time()
        with foreign_share(foreign):
            out = run_embedded(emb_settings, args.source, h.camera, None, False, args.stride, args.frames, None,
                               models)
        n = out.report["run"]["frames_processed"]
        emb.append((float(out.report["run"]["fps"]), 1000.0 * (time.process_time() - c0) / n))
        d = h.run(args.source, args.frames, args.stride)
        dist.append(d)
        foreign.append(d.other_share)
        run = h.repo.run(d.run_id)
        assert run is not None
        same.append(build_results(h.repo, run, h.camera) == out.report["results"])
        console.print(f"  round {i + 1}: detector {det[-1][0]:.2f}, embedded {emb[-1][0]:.2f}, distributed "
                      f"{d.fps:.2f} frames/s (capture {d.capture_fps:.0f} frames/s, dropped {d.dropped}; "
                      f"results identical to embedded: {same[-1]}; CPU ms/frame {fmt_breakdown(d.cpu_breakdown())}; "
                      f"delayed gap re-checks left {d.gap_rechecks}; foreign CPU share det/emb/dist "
                      f"{' / '.join(f'{100 * v:.0f} %' for v in foreign[-3:])})")
    det_fps = statistics.median(v for v, _ in det)
    emb_fps = statistics.median(v for v, _ in emb)
    dist_fps = statistics.median(d.fps for d in dist)
    det_cpu = statistics.median(c for _, c in det)
    emb_cpu = statistics.median(c for _, c in emb)
    dist_cpu = statistics.median(d.cpu_ms_per_frame for d in dist)
    part = f"1. throughput, {dist[0].frames} frames"
    threads = args.detect_threads or "default"
    res.add(part, "detector only (in-process)", f"{det_fps:.2f} f/s",
            f"runs {fmt_runs([v for v, _ in det])}; CPU {det_cpu:.0f} ms/frame")
    res.add(part, "embedded (run_embedded, SQLite)", f"{emb_fps:.2f} f/s",
            f"runs {fmt_runs([v for v, _ in emb])}; CPU {emb_cpu:.0f} ms/frame")
    res.add(part, f"distributed ({n_det} detect children, onnx threads {threads})", f"{dist_fps:.2f} f/s",
            f"runs {fmt_runs([d.fps for d in dist])}; CPU {dist_cpu:.0f} ms/frame (all processes: "
            f"{fmt_breakdown(median_breakdown(dist))}); results = embedded: {'yes' if all(same) else 'NO'}")
    res.add(part, "distributed / embedded", ratio_pct(dist_fps, emb_fps),
            f"by CPU time: {ratio_pct(emb_cpu, dist_cpu)} (embedded CPU / distributed CPU)")
    res.add(part, "foreign CPU while measuring (max of all rounds)", f"{100 * max(foreign):.0f} %",
            "share of all cores used by processes outside the benchmark")


def _noop_variant(args: argparse.Namespace, h: Harness, clip: Path, detect_env: dict[str, str],
                  flags: list[str], console: Console, label: str, batch: int | None = None) -> list[DistRun]:
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        flags = [*flags, f"--profile={args.profile.resolve()}"]
    h.pool.start([
        ("detect", "detect", "prefork", args.detect_workers, detect_env, ["--noop", *flags]),
        ("recognize", "recognize", "solo", 1, {}, flags or None),
        ("store", "store", "solo", 1, {}, flags or None),
    ])
    h.app.conf.task_send_sent_event = "--task-events" in flags
    settings = h.settings
    if batch is not None:  # only the capture (this process) batches
        dist = settings.distributed.model_copy(update={"detect_batch_frames": batch})
        h.settings = settings.model_copy(update={"distributed": dist})
    try:
        h.run(str(clip), 20, 1)  # warm-up
        runs = []
        for i in range(max(1, args.rounds)):
            r = h.run(str(clip), args.noop_frames, 1)
            runs.append(r)
            console.print(f"  {label} round {i + 1}: {r.fps:.1f} frames/s to the database; capture "
                          f"{r.capture_fps:.0f} frames/s; CPU {r.cpu_ms_per_frame:.2f} ms/frame "
                          f"({fmt_breakdown(r.cpu_breakdown())}); dropped {r.dropped}; delayed gap re-checks left "
                          f"{r.gap_rechecks}; foreign CPU share {100 * r.other_share:.0f} %")
    finally:
        h.app.conf.task_send_sent_event = False
        h.settings = settings
    return runs


def part_noop(args: argparse.Namespace, h: Harness, tmp: Path, res: Results, console: Console,
              detect_env: dict[str, str]) -> None:
    clip = tmp / "noop_clip.avi"
    w, ht = make_small_clip(args.source, clip, args.noop_width, args.noop_frames)
    console.print(f"[bold]2. chain overhead[/]: no-op detect workers, {args.noop_frames} frames {w}x{ht}...")
    runs = _noop_variant(args, h, clip, detect_env, [], console, "as is")
    part = f"2. no-op detector, {runs[0].frames} frames {w}x{ht}"
    fps = statistics.median(r.fps for r in runs)
    res.add(part, "capture → all queues → PostgreSQL (drained)", f"{fps:.1f} f/s",
            f"runs {fmt_runs([r.fps for r in runs])}; goal ≥ 300: {'met' if fps >= 300 else 'not met'}")
    res.add(part, "capture thread (read, JPEG, Redis, publish)",
            f"{statistics.median(r.capture_fps for r in runs):.0f} f/s", "while the workers run beside it")
    cpu = statistics.median(r.cpu_ms_per_frame for r in runs)
    res.add(part, "CPU per frame, all processes", f"{cpu:.2f} ms",
            f"{fmt_breakdown(median_breakdown(runs))}; 2 cores → at most {2000.0 / cpu:.0f} f/s")
    foreign = [r.other_share for r in runs]
    variants: list[tuple[str, list[str], int | None]] = []
    if args.noop_task_events:
        variants.append(("with Celery task events on (as when Flower watches)", ["--task-events"], None))
    if args.noop_unbatched:
        variants.append(("one frame per detect message (detect_batch_frames 1)", [], 1))
    for label, flags, batch in variants:
        vr = _noop_variant(args, h, clip, detect_env, flags, console, label, batch=batch)
        vcpu = statistics.median(r.cpu_ms_per_frame for r in vr)
        res.add(part, label, f"{statistics.median(r.fps for r in vr):.1f} f/s",
                f"runs {fmt_runs([r.fps for r in vr])}; CPU {vcpu:.2f} ms/frame "
                f"({fmt_breakdown(median_breakdown(vr))})")
        foreign += [r.other_share for r in vr]
    res.add(part, "foreign CPU while measuring (max)", f"{100 * max(foreign):.0f} %",
            "share of all cores used by processes outside the benchmark")


def _stamps(client: Any, kind: str, run_id: str) -> dict[int, float]:
    raw = client.hgetall(stamp_key(kind, run_id))
    return {int(k): float(v) for k, v in raw.items()}


def part_latency(args: argparse.Namespace, h: Harness, res: Results, console: Console,
                 detect_env: dict[str, str]) -> None:
    with VideoSource(args.source) as v:
        stride = max(1, round(v.info.fps / args.latency_fps))
    console.print(f"[bold]3. latency[/]: {args.latency_frames} frames paced at {args.latency_fps:g} fps "
                  f"(stride {stride}), stamping workers...")
    h.pool.start([
        ("detect", "detect", "prefork", args.detect_workers, detect_env, ["--stamp"]),
        ("recognize", "recognize", "solo", 1, {}, ["--stamp"]),
        ("store", "store", "solo", 1, {}, ["--stamp"]),
    ])
    h.run(args.source, 2 * args.detect_workers + 2, stride)  # warm-up: models in every process
    captured: dict[int, float] = {}
    r = h.run(args.source, args.latency_frames, stride, lambda s: PacedSource(s, args.latency_fps, captured))
    detected = _stamps(h.client, "detected", r.run_id)
    emitted = _stamps(h.client, "emitted", r.run_id)
    stored = _stamps(h.client, "stored", r.run_id)
    total = summarize(latencies_ms(captured, stored))
    part = f"3. latency at {args.latency_fps:g} fps, {r.frames} frames"
    if total is None:
        res.add(part, "capture → sightings stored", "n/a", "no frame had a sighting")
        return
    res.add(part, "capture → sightings row committed, p50", f"{total.p50_ms:.0f} ms",
            f"{total.n} of {r.frames} frames had sightings")
    res.add(part, "capture → sightings row committed, p95", f"{total.p95_ms:.0f} ms", f"max {total.max_ms:.0f} ms")
    stages = [
        ("capture → detected (JPEG, Redis, queue, detect)", captured, detected),
        ("detected → rows sent to store (queue, sequencer)", detected, emitted),
        ("sent → committed (queue, PostgreSQL)", emitted, stored),
    ]
    for name, a, b in stages:
        s = summarize(latencies_ms(a, b))
        if s is not None:
            res.add(part, f"  {name}", f"{s.p50_ms:.0f} ms", f"p50; p95 {s.p95_ms:.0f} ms")
    res.add(part, "foreign CPU while measuring", f"{100 * r.other_share:.0f} %",
            f"CPU {r.cpu_ms_per_frame:.0f} ms/frame ({fmt_breakdown(r.cpu_breakdown())})")
    console.print(f"  capture → stored: {total.describe()}")


def run_benchmark(args: argparse.Namespace, argv: list[str]) -> None:
    from genesis.adapters.db import Repository
    from genesis.pipeline.model_loader import load_models

    console = Console() if sys.stdout.isatty() else Console(width=220)
    parts = {p.strip() for p in args.parts.split(",")}
    with bench_workdir("genesis-bench-dist-", console, args.keep_logs) as tmp:
        source = str(Path(args.source).resolve())
        args.source = source
        config = tmp / "settings.yaml"
        config.write_text(yaml.safe_dump(bench_config(source)))
        with bench_environment(args, config) as (env, settings):
            emb_settings = load_settings(config, {**env, "GENESIS_DATABASE_URL": f"sqlite:///{tmp / 'embedded.db'}"})
            detect_env = {"GENESIS_DETECTOR__THREADS": str(args.detect_threads)} if args.detect_threads else {}
            camera = settings.camera("bench")
            repo = Repository(settings.database_url)  # creates the schema before any worker starts
            pool = Pool(env, tmp)
            try:
                models = load_models(emb_settings, with_faces=True)
                enrolled = 0
                if args.enroll:
                    with Repository(emb_settings.database_url) as emb_repo:
                        enrolled = _enroll(emb_repo, args.enroll, settings, models)
                    _enroll(repo, args.enroll, settings, models)
                console.print(f"starting workers: detect prefork x{args.detect_workers}, recognize solo, "
                              f"store solo (logs in {tmp})")
                pool.start([
                    ("detect", "detect", "prefork", args.detect_workers, detect_env, None),
                    ("recognize", "recognize", "solo", 1, {}, None),
                    ("store", "store", "solo", 1, {}, None),
                ])
                h = Harness(settings, camera, repo, pool)
                res = Results()
                load_before = load_average()
                if "throughput" in parts:
                    part_throughput(args, h, emb_settings, models, res, console)
                if "noop" in parts:
                    part_noop(args, h, tmp, res, console, detect_env)
                if "latency" in parts:
                    part_latency(args, h, res, console, detect_env)
            finally:
                pool.stop_all()
                repo.close()
        with VideoSource(source) as v:
            info = v.info
        title = (f"Genesis distributed pipeline — {Path(source).name} ({info.width}x{info.height}), "
                 f"stride {args.stride}, {os.cpu_count()} CPUs, {enrolled} identities enrolled")
        console.print(summary_table(res.rows, title))
        console.print(f"load average before / after: {load_before} / {load_average()}")
        console.print("command: " + shlex.join(["python", "-m", "genesis.bench.distributed", *argv]),
                      highlight=False, soft_wrap=True)
        if args.markdown:
            console.print(markdown_table(res.rows), highlight=False, soft_wrap=True, markup=False)


def _sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: workers, databases, Redis


def add_database_arguments(ap: argparse.ArgumentParser) -> None:
    """``--pg-admin``, ``--broker`` and ``--frames-redis``: the databases a benchmark creates or flushes."""
    ap.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL URL allowed to CREATE DATABASE.")
    ap.add_argument("--broker", default=BROKER, help="Redis DB of the broker (flushed before and after).")
    ap.add_argument("--frames-redis", default=FRAMES, help="Redis DB of the frames (flushed before and after).")


def run_until_sigterm(run: Callable[[argparse.Namespace, list[str]], None], args: argparse.Namespace,
                      argv: list[str]) -> None:
    """``run(args, argv)`` with SIGTERM turned into SystemExit (see `_sigterm`), restored afterwards."""
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        run(args, argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--bench-worker":
        worker_entry(argv[1:])
        return
    ap = argparse.ArgumentParser(prog="python -m genesis.bench.distributed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="Video file (parts 1 and 3; part 2 uses a small copy).")
    ap.add_argument("--frames", type=int, default=120, help="Frames per throughput run.")
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--detect-workers", type=int, default=2, help="Prefork children of the detect worker.")
    ap.add_argument("--detect-threads", type=int, default=0,
                    help="onnxruntime intra-op threads per detect child (GENESIS_DETECTOR__THREADS; 0 = default).")
    ap.add_argument("--rounds", type=int, default=2, help="Rounds of each part (medians reported).")
    ap.add_argument("--enroll", type=Path, help="Folder with a sub-folder of photos per identity (2 each).")
    ap.add_argument("--parts", default="throughput,noop,latency", help="Any of throughput,noop,latency.")
    ap.add_argument("--noop-frames", type=int, default=600)
    ap.add_argument("--noop-width", type=int, default=320)
    ap.add_argument("--noop-task-events", action="store_true",
                    help="Part 2: also run the chain with Celery task events on (as when Flower watches).")
    ap.add_argument("--noop-unbatched", action="store_true",
                    help="Part 2: also run the chain with one frame per detect message (detect_batch_frames 1).")
    ap.add_argument("--profile", type=Path,
                    help="Part 2: cProfile every worker process of the no-op chain into this folder (.pstats).")
    ap.add_argument("--latency-frames", type=int, default=90)
    ap.add_argument("--latency-fps", type=float, default=5.0)
    add_database_arguments(ap)
    ap.add_argument("--markdown", action="store_true", help="Print the table as Markdown too.")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args(argv)
    unknown = {p.strip() for p in args.parts.split(",")} - {"throughput", "noop", "latency"}
    if unknown:
        ap.error(f"unknown parts: {', '.join(sorted(unknown))}")
    run_until_sigterm(run_benchmark, args, argv)


if __name__ == "__main__":
    main()
