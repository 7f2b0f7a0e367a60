"""``python -m genesis.bench soak``: overload degrades and counts, never fails (issue 23's soak).

    python -m genesis.bench soak [--cameras 4] [--fps 5] [--minutes 60] [--source VIDEO ...]
        [--detect-workers 2] [--redis-maxmemory-mb 256] [--interval-s 60] [--markdown]

Live cameras on a small machine, with the shipped defaults of the distributed mode:

- a private ``redis-server`` (broker and frame store, on a free port) with ``maxmemory``
  (``--redis-maxmemory-mb``, 256 MB) and ``noeviction``, so "below its limit" means something (the
  shared Redis of the machine is never touched); a fresh PostgreSQL database; real Celery workers
  (detect prefork x ``--detect-workers``, recognize solo, store solo), as ``genesis.bench.distributed``
  starts them;
- ``--cameras`` live cameras: each serves a clip (``--source``, several given go round the cameras) in a
  loop as an MJPEG-over-HTTP stream at ``--fps``, from a thread of this process. A camera does not wait:
  each frame has its time on the wall clock, and a frame whose time passed while the reader was not
  reading is skipped by the camera (counted as ``camera skipped``: it was never offered);
- one ``genesis capture --all`` process reads every camera (its ``/status`` gives the counters);
- every ``--interval-s`` (60) one line: frames offered (read by the capture), published, dropped by
  reason, processed by the sequencer, expired (pixels gone before detection), dead letters, Redis
  ``used_memory`` against ``maxmemory``, and the RSS of every process (capture, each worker and each of its
  pool children, Redis, this process);
- after ``--minutes`` the capture is stopped (SIGTERM: each camera's run ends with its end marker), the
  workers drain what was admitted (within ``--drain-timeout-s``: a verdict too), and a table gives the verdict
  on each target:

  * processed + dropped == offered (per camera, from each run's stored meta and the capture's end
    marker; nothing missing, skipped or expired on the way),
  * 0 expired frames, 0 dead letters,
  * Redis memory below ``maxmemory`` at every sample and flat: the samples after the warm-up (the first
    quarter of the soak, and at least ``distributed.frame_ttl_s``, 300 s: processed frames stay in Redis until
    their TTL, so its memory fills for that long), mean of their first half against their last half,
  * the RSS of every process flat by the same measure.

  Flat means a growth of at most ``--flat-pct`` (10 %) or ``--flat-mb`` (16 MB), whichever is larger.
  The exit status is 1 when a target failed (2 for a usage error).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from genesis.bench.distributed import (
    PG_ADMIN,
    Harness,
    Pool,
    bench_environment,
    bench_workdir,
    load_average,
    proc_stat,
    run_until_sigterm,
)
from genesis.eval.table import markdown_table

DEFAULT_SOURCE = "../shared/data/video/opencv4nodejs_people.mp4"
CAMERA_FRAMES = 150
"""Frames of a clip a camera loops over (taken at the camera's rate: 30 s at 5 fps)."""
MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# pure helpers (tested in tests/unit/bench/test_soak.py)
# ---------------------------------------------------------------------------------------------


def steady_change(points: Sequence[tuple[float, float]], warmup_s: float) -> tuple[float, float]:
    """(mean of the first half, mean of the last half) of the samples ``(t_s, value)`` taken after the warm-up;
    when fewer than two samples come after it (a short soak), of all the samples."""
    steady = [v for t, v in points if t >= warmup_s]
    if len(steady) < 2:
        steady = [v for _, v in points]
    if not steady:
        return 0.0, 0.0
    half = max(1, len(steady) // 2)
    return statistics.fmean(steady[:half]), statistics.fmean(steady[-half:])


def warmup_s(duration_s: float, frame_ttl_s: float) -> float:
    """The samples before this are the warm-up: the first quarter of the soak, and at least ``frame_ttl_s`` (the
    frames a worker has processed stay in Redis until their TTL, so its memory fills for that long)."""
    return max(duration_s / 4.0, frame_ttl_s)


def is_flat(before: float, after: float, pct: float, abs_bytes: float) -> bool:
    """Whether ``after`` grew from ``before`` by at most ``pct`` percent or ``abs_bytes``, whichever is larger."""
    return after - before <= max(abs(before) * pct / 100.0, abs_bytes)


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str
    value: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class Sample:
    """One look at the whole pipeline."""

    t_s: float
    offered: int
    published: int
    dropped_by: dict[str, int]
    processed: int
    expired: int
    missing: int
    skipped: int
    dead_letters: int
    redis_used: int
    redis_max: int
    rss: dict[str, int]
    served: int = 0
    camera_skipped: int = 0
    load: str = ""

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by.values())

    def count_from(self, totals: Sequence[CameraTotals]) -> None:
        """Offered, published and dropped from the runs' end (after the capture stopped)."""
        self.offered = sum(t.offered for t in totals)
        self.published = sum(t.published for t in totals)
        self.dropped_by = {}
        for t in totals:
            for k, v in t.dropped_by.items():
                self.dropped_by[k] = self.dropped_by.get(k, 0) + v

    def line(self) -> str:
        m, s = divmod(round(self.t_s), 60)
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped_by.items()) if v) or "none"
        rss = " ".join(f"{k} {v / MB:.0f}" for k, v in self.rss.items())
        return (f"[{m:3d}:{s:02d}] offered {self.offered} published {self.published} dropped {self.dropped} ({why}) "
                f"processed {self.processed} expired {self.expired} missing {self.missing} dead letters "
                f"{self.dead_letters} | redis {self.redis_used / MB:.1f}/{self.redis_max / MB:.0f} MB | RSS MB {rss} "
                f"| camera served {self.served} skipped {self.camera_skipped} | load {self.load}")


@dataclass(frozen=True, slots=True)
class CameraTotals:
    """One camera's run at the end: the capture's end marker and the run's stored meta."""

    camera: str
    run_id: str
    status: str
    offered: int
    published: int
    dropped_by: dict[str, int]
    processed: int
    skipped: int
    missing: int
    expired: int

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by.values())


def verdicts(totals: Sequence[CameraTotals], samples: Sequence[Sample], dead_letters: int, pct: float,
             abs_mb: float, warmup: float = 0.0) -> list[Verdict]:
    """The verdict on each target of the soak (see the module docstring)."""
    out: list[Verdict] = []
    offered = sum(t.offered for t in totals)
    processed = sum(t.processed for t in totals)
    dropped = sum(t.dropped for t in totals)
    bad = [t for t in totals if t.processed + t.dropped != t.offered or t.status != "finished"]
    detail = "; ".join(f"{t.camera}: {t.processed} + {t.dropped} of {t.offered} ({t.status}, skipped {t.skipped}, "
                       f"missing {t.missing}, expired {t.expired})" for t in bad)
    out.append(Verdict("processed + dropped == offered", f"{processed} + {dropped} = {processed + dropped} of "
                       f"{offered}", bool(totals) and not bad, detail or f"{len(totals)} runs finished"))
    expired = sum(t.expired for t in totals)
    out.append(Verdict("0 expired in a queue", str(expired), expired == 0,
                       f"most seen while running: {max((s.expired for s in samples), default=0)}"))
    out.append(Verdict("0 dead letters", str(dead_letters), dead_letters == 0,
                       f"most seen while running: {max((s.dead_letters for s in samples), default=0)}"))
    if samples:
        used = [float(s.redis_used) for s in samples]
        limit = samples[-1].redis_max
        top = max(used)
        out.append(Verdict("Redis memory below maxmemory", f"max {top / MB:.1f} of {limit / MB:.0f} MB",
                           limit > 0 and top < limit, "maxmemory not set" if limit <= 0 else ""))
        a, b = steady_change([(s.t_s, s.redis_used) for s in samples], warmup)
        out.append(Verdict("Redis memory flat", f"{a / MB:.1f} → {b / MB:.1f} MB", is_flat(a, b, pct, abs_mb * MB),
                           f"samples after the warm-up ({warmup:.0f} s): mean of the first half → of the last half"))
        names = list(dict.fromkeys(k for s in samples for k in s.rss))
        for name in names:
            points = [(s.t_s, float(s.rss[name])) for s in samples if name in s.rss]
            series = [v for _, v in points]
            a, b = steady_change(points, warmup)
            out.append(Verdict(f"RSS flat: {name}", f"{a / MB:.0f} → {b / MB:.0f} MB", is_flat(a, b, pct, abs_mb * MB),
                               f"{len(series)} samples, max {max(series) / MB:.0f} MB"))
    return out


def verdict_rows(items: Sequence[Verdict]) -> list[list[str]]:
    return [[v.target, v.value, "ok" if v.ok else "FAILED", v.detail] for v in items]


# ---------------------------------------------------------------------------------------------
# live cameras: MJPEG over HTTP, paced by the wall clock
# ---------------------------------------------------------------------------------------------


def load_jpegs(source: str, fps: float, frames: int, width: int) -> list[bytes]:
    """Up to ``frames`` frames of ``source`` taken at ``fps`` (stride = source fps / fps), scaled to ``width``
    when the source is wider, as JPEG."""
    import cv2

    from genesis.adapters.video import VideoSource

    out: list[bytes] = []
    with VideoSource(source) as video:
        stride = max(1, round(video.info.fps / fps))
        for raw in video.frames(stride=stride, max_frames=frames):
            image = raw.image
            h, w = image.shape[:2]
            if width and w > width:
                image = cv2.resize(image, (width, max(2, round(h * width / w))), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                out.append(buf.tobytes())
    if not out:
        raise OSError(f"no frame read from {source}")
    return out


class LiveCameras:
    """``n`` MJPEG cameras on one HTTP server of this process: ``/cam/<i>.mjpg``. Each frame is due at its
    time (``start + k / fps``); a frame whose time passed while the socket was full is skipped."""

    def __init__(self, clips: Sequence[list[bytes]], fps: float) -> None:
        self.clips = list(clips)
        self.fps = fps
        self.served = [0] * len(self.clips)
        self.skipped = [0] * len(self.clips)
        self._lock = threading.Lock()
        self._off = threading.Event()
        self.httpd: ThreadingHTTPServer | None = None
        self.port = 0

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/cam/{i}.mjpg"

    def totals(self) -> tuple[int, int]:
        with self._lock:
            return sum(self.served), sum(self.skipped)

    def start(self) -> None:
        cams = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    i = int(self.path.removeprefix("/cam/").removesuffix(".mjpg"))
                    clip = cams.clips[i]
                except (ValueError, IndexError):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                interval = 1.0 / cams.fps
                start = time.monotonic()
                k = 0
                try:
                    while not cams._off.is_set():
                        delay = start + k * interval - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        jpeg = clip[(k + 7 * i) % len(clip)]
                        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                        self.wfile.write(head + jpeg + b"\r\n")
                        # Frames whose time passed while this one was being written: never offered.
                        due = int((time.monotonic() - start) / interval)
                        missed = max(0, due - k - 1)
                        with cams._lock:
                            cams.served[i] += 1
                            cams.skipped[i] += missed
                        k += 1 + missed
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                         name="soak-cameras").start()

    def stop(self) -> None:
        self._off.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


# ---------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a live process (Linux /proc), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def children_of(pid: int) -> list[int]:
    """Pids of the live children of ``pid``, in pid order."""
    return sorted(child for child, _, fields in proc_stat() if int(fields[1]) == pid)


@contextlib.contextmanager
def private_redis(workdir: Path, maxmemory_mb: int) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A ``redis-server`` of this benchmark on a free port (``maxmemory``, ``noeviction``, no persistence);
    yields (port, process); shut down afterwards."""
    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("the soak starts its own Redis: redis-server is not on PATH")
    port = free_port()
    log = (workdir / "redis.log").open("w")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--maxmemory", f"{maxmemory_mb}mb", "--maxmemory-policy", "noeviction",
                             "--dir", str(workdir)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (workdir / "redis.log").read_text()[-2000:]
                    raise RuntimeError(f"redis-server did not start: {tail}") from None
                time.sleep(0.1)
        client.close()
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


def soak_config(urls: Sequence[str], models_dir: Path | None = None) -> dict[str, Any]:
    """The soak's settings: the shipped defaults, one camera per URL with a zone and a line."""
    return {
        **({"models": {"dir": str(models_dir)}} if models_dir is not None else {}),
        "cameras": [{
            "id": f"soak{i + 1}",
            "source": url,
            "zones": [{"name": "lower", "points": [[0.25, 0.45], [0.75, 0.45], [0.75, 1.0], [0.25, 1.0]]}],
            "lines": [{"name": "middle", "start": [0.5, 0.0], "end": [0.5, 1.0]}],
        } for i, url in enumerate(urls)],
    }


def provision_models(target: Path, source: Path) -> Path:
    """The weights the default settings need, copied from ``source`` into ``target`` (no network); a clear
    error naming what is missing."""
    from genesis.backends.weights import pull, required_weights
    from genesis.config import load_settings

    settings = load_settings(environ={"GENESIS_MODELS_DIR": str(target)})
    results = pull([spec for spec, _ in required_weights(settings)], target, [source], use_pypi=False,
                   use_network=False)
    failed = [f"{r}" for r in results if r.error]
    if failed:
        raise SystemExit(f"cannot provision the models from {source}: {'; '.join(failed)}")
    return target


def get_status(port: int, timeout: float = 5.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=timeout) as r:
            data = json.loads(r.read())
            return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


@dataclass(slots=True)
class Soak:
    """What a sample looks at."""

    settings: Any
    capture: subprocess.Popen[bytes]
    capture_port: int
    redis_proc: subprocess.Popen[bytes]
    pool: Pool
    cameras: LiveCameras
    client: Any
    repo: Any
    run_ids: dict[str, str] = field(default_factory=dict)
    last_status: dict[str, Any] = field(default_factory=dict)

    def progress(self, run_id: str) -> Any:
        """The sequencer's progress of a run (its state in Redis), or None before its first pass."""
        from genesis.adapters.redis_keys import state_key
        from genesis.domain.codec import decode
        from genesis.pipeline.loop import RunProgress

        raw = self.client.get(state_key(run_id))
        if raw is not None:
            return decode(RunProgress, json.loads(raw)["progress"])
        run = self.repo.run(run_id)  # a finished run's state is gone: its stored meta has the counts
        if run is None or run.status == "running":
            return None
        meta = run.meta
        return RunProgress(frames=int(meta.get("frames", 0)), expired=int(meta.get("expired_frames", 0)),
                           missing=int(meta.get("missing_frames", 0)), skipped=int(meta.get("skipped_frames", 0)))

    def rss(self) -> dict[str, int]:
        out: dict[str, int] = {}
        procs = [("capture", self.capture.pid), ("redis", self.redis_proc.pid), ("bench", os.getpid())]
        for role, w in self.pool.workers.items():
            procs.append((role, w.proc.pid))
            for i, kid in enumerate(children_of(w.proc.pid)):
                procs.append((f"{role}[{i + 1}]", kid))
        for name, pid in procs:
            value = rss_bytes(pid)
            if value is not None:
                out[name] = value
        return out

    def sample(self, t_s: float) -> Sample:
        from genesis.adapters.dlq import DeadLetters

        status = get_status(self.capture_port)
        if status is not None:
            self.last_status = status
        cams = self.last_status.get("cameras", [])
        for c in cams:
            self.run_ids[str(c["camera"])] = str(c["run_id"])
        dropped_by: dict[str, int] = {}
        for c in cams:
            for k, v in c.get("dropped_by", {}).items():
                dropped_by[k] = dropped_by.get(k, 0) + int(v)
        processed = expired = missing = skipped = 0
        for run_id in self.run_ids.values():
            p = self.progress(run_id)
            if p is not None:
                processed += p.frames
                expired += p.expired
                missing += p.missing
                skipped += p.skipped
        info = self.client.info("memory")
        served, cam_skipped = self.cameras.totals()
        return Sample(
            t_s, sum(int(c["read"]) for c in cams), sum(int(c["published"]) for c in cams), dropped_by, processed,
            expired, missing, skipped, DeadLetters.from_settings(self.settings).size(), int(info["used_memory"]),
            int(info.get("maxmemory", 0)), self.rss(), served, cam_skipped, load_average())

    def stop_capture(self, timeout: float = 60.0) -> None:
        """SIGTERM: each camera ends its run with its end marker."""
        if self.capture.poll() is None:
            self.capture.send_signal(signal.SIGTERM)
            try:
                self.capture.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.capture.pid, signal.SIGKILL)
                self.capture.wait(10)


def camera_totals(client: Any, repo: Any, camera: str, run_id: str) -> CameraTotals:
    """A camera's run at the end: offered, published and dropped from the capture's end marker, processed
    (and skipped, missing, expired) from the run's stored meta."""
    from genesis.adapters.redis_keys import end_key

    raw = client.get(end_key(run_id))
    end: dict[str, Any] = json.loads(raw) if raw is not None else {}
    run = repo.run(run_id)
    meta: dict[str, Any] = run.meta if run is not None else {}
    published = int(end.get("frames", 0))
    dropped_by = {str(k): int(v) for k, v in (end.get("dropped_by") or {}).items()}
    if not dropped_by and int(end.get("dropped", 0)):
        dropped_by = {"unknown": int(end["dropped"])}
    return CameraTotals(camera, run_id, run.status if run is not None else "absent",
                        published + sum(dropped_by.values()), published, dropped_by, int(meta.get("frames", 0)),
                        int(meta.get("skipped_frames", 0)), int(meta.get("missing_frames", 0)),
                        int(meta.get("expired_frames", 0)))


# ---------------------------------------------------------------------------------------------
# the soak
# ---------------------------------------------------------------------------------------------


def wait_capture_ready(soak: Soak, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if soak.capture.poll() is not None:
            raise RuntimeError(f"the capture exited {soak.capture.returncode} before it started")
        status = get_status(soak.capture_port, timeout=2.0)
        if status is not None and len(status.get("cameras", [])) == n and all(
                c.get("state") == "connected" for c in status["cameras"]):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the capture's cameras were not connected after {timeout:g} s")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from genesis.adapters.db import Repository
    from genesis.adapters.dlq import DeadLetters

    console = Console() if sys.stdout.isatty() else Console(width=250)
    sources = [str(Path(s).resolve()) for s in (args.source or [DEFAULT_SOURCE])]
    duration = args.minutes * 60.0
    samples: list[Sample] = []
    with bench_workdir("genesis-bench-soak-", console, args.keep_logs) as tmp:
        console.print(f"loading {len(sources)} clip(s) at {args.fps:g} fps ...")
        clips = {s: load_jpegs(s, args.fps, CAMERA_FRAMES, args.width) for s in sources}
        cameras = LiveCameras([clips[sources[i % len(sources)]] for i in range(args.cameras)], args.fps)
        cameras.start()
        try:
            with private_redis(tmp, args.redis_maxmemory_mb) as (port, redis_proc):
                args.broker = f"redis://127.0.0.1:{port}/0"
                args.frames_redis = f"redis://127.0.0.1:{port}/1"
                config = tmp / "settings.yaml"
                models = None
                if not os.environ.get("GENESIS_MODELS_DIR"):
                    models = provision_models(tmp / "models", Path(args.models_from).resolve())
                urls = [cameras.url(i) for i in range(args.cameras)]
                config.write_text(yaml.safe_dump(soak_config(urls, models)))
                with bench_environment(args, config) as (env, settings):
                    repo = Repository(settings.database_url)  # the schema, before any worker starts
                    pool = Pool(env, tmp)
                    capture: subprocess.Popen[bytes] | None = None
                    try:
                        console.print(f"starting workers: detect prefork x{args.detect_workers}, recognize solo, "
                                      f"store solo; Redis maxmemory {args.redis_maxmemory_mb} MB noeviction (port "
                                      f"{port}); logs in {tmp}")
                        pool.start([
                            ("detect", "detect", "prefork", args.detect_workers, {}, None),
                            ("recognize", "recognize", "solo", 1, {}, None),
                            ("store", "store", "solo", 1, {}, None),
                        ])
                        capture_port = free_port()
                        capture_log = (tmp / "capture.log").open("w")
                        capture = subprocess.Popen(
                            [sys.executable, "-m", "genesis.cli.main", "capture", "--all", "--config", str(config),
                             "--port", str(capture_port)],
                            env=env, stdout=capture_log, stderr=subprocess.STDOUT, start_new_session=True)
                        import redis

                        soak = Soak(settings, capture, capture_port, redis_proc, pool, cameras,
                                    redis.Redis.from_url(settings.redis_url), repo)
                        wait_capture_ready(soak, args.cameras)
                        console.print(f"{args.cameras} cameras at {args.fps:g} fps live; sampling every "
                                      f"{args.interval_s:g} s for {args.minutes:g} min")
                        warmup = warmup_s(duration, settings.distributed.frame_ttl_s)
                        t0 = time.monotonic()
                        while True:
                            now = time.monotonic() - t0
                            due = (len(samples) + 1) * args.interval_s
                            end = min(due, duration)
                            if end > now:
                                time.sleep(end - now)
                            if capture.poll() is not None:
                                raise RuntimeError(f"the capture exited {capture.returncode} during the soak:\n"
                                                   f"{(tmp / 'capture.log').read_text()[-3000:]}")
                            samples.append(soak.sample(time.monotonic() - t0))
                            console.print(samples[-1].line(), highlight=False, soft_wrap=True)
                            if end >= duration:
                                break
                        console.print("stopping the capture (SIGTERM) and draining what was admitted ...")
                        soak.stop_capture()
                        capture_log.close()
                        t_stop = time.monotonic()
                        h = Harness(settings, settings.camera("soak1"), repo, pool,
                                    drain_timeout_s=args.drain_timeout_s)
                        undrained = ""
                        try:
                            h.wait_stored(next(iter(soak.run_ids.values()), ""))
                        except RuntimeError as exc:  # a verdict, not a crash: the counts below say what is left
                            undrained = str(exc)
                            console.print(f"[bold red]{undrained}[/]", highlight=False, soft_wrap=True)
                        drain_s = time.monotonic() - t_stop
                        totals = [camera_totals(soak.client, repo, cam, rid)
                                  for cam, rid in sorted(soak.run_ids.items())]
                        final = soak.sample(time.monotonic() - t0)
                        final.count_from(totals)  # the capture's end markers: its last frames included
                        console.print(final.line() + f"  (after the drain, {drain_s:.0f} s)", highlight=False,
                                      soft_wrap=True)
                        dead = DeadLetters.from_settings(settings).size()
                        capture_out = (tmp / "capture.log").read_text()
                    finally:
                        if capture is not None and capture.poll() is None:
                            with contextlib.suppress(ProcessLookupError):
                                os.killpg(capture.pid, signal.SIGKILL)
                            capture.wait(10)
                        pool.stop_all()
                        repo.close()
        finally:
            cameras.stop()
    result = verdicts(totals, samples, dead, args.flat_pct, args.flat_mb, warmup)
    result.insert(0, Verdict("drained after the stop", f"{drain_s:.0f} s", not undrained,
                             undrained or f"limit {args.drain_timeout_s:g} s"))
    print_report(console, args, argv, sources, samples, totals, result, drain_s, capture_out)
    return 0 if all(v.ok for v in result) else 1


def print_report(console: Console, args: argparse.Namespace, argv: list[str], sources: list[str],
                 samples: list[Sample], totals: list[CameraTotals], result: list[Verdict], drain_s: float,
                 capture_out: str) -> None:
    cams = markdown_table(
        ("camera", "offered", "published", "dropped", "dropped by reason", "processed", "skipped", "missing",
         "expired", "run"),
        [[t.camera, str(t.offered), str(t.published), str(t.dropped),
          ", ".join(f"{k} {v}" for k, v in sorted(t.dropped_by.items())) or "-", str(t.processed), str(t.skipped),
          str(t.missing), str(t.expired), t.status] for t in totals])
    verdict = markdown_table(("target", "value", "verdict", "detail"), verdict_rows(result))
    console.print("capture's own summary:\n" + "\n".join(ln for ln in capture_out.splitlines()
                                                          if ln.startswith("camera ")), highlight=False,
                  soft_wrap=True, markup=False)
    console.print(cams, highlight=False, soft_wrap=True, markup=False)
    console.print(verdict, highlight=False, soft_wrap=True, markup=False)
    failed = [v.target for v in result if not v.ok]
    console.print(f"{len(samples)} samples over {args.minutes:g} min, drain after the stop {drain_s:.0f} s; "
                  f"{args.cameras} cameras at {args.fps:g} fps from {', '.join(Path(s).name for s in sources)}; "
                  f"{os.cpu_count()} CPUs; load average {load_average()}", highlight=False, soft_wrap=True)
    console.print(f"VERDICT: {'all targets met' if not failed else 'FAILED: ' + '; '.join(failed)}",
                  highlight=False, soft_wrap=True, markup=False)
    console.print("command: " + shlex.join(["python", "-m", "genesis.bench", "soak", *argv]), highlight=False,
                  soft_wrap=True, markup=False)
    if args.markdown:
        lines = ["| time | offered | published | dropped | processed | expired | dead letters | Redis MB | "
                 "RSS MB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for s in samples:
            rss = ", ".join(f"{k} {v / MB:.0f}" for k, v in s.rss.items())
            lines.append(f"| {s.t_s / 60:.1f} min | {s.offered} | {s.published} | {s.dropped} | {s.processed} | "
                         f"{s.expired} | {s.dead_letters} | {s.redis_used / MB:.1f} / {s.redis_max / MB:.0f} | {rss} |")
        console.print("\n".join(lines), highlight=False, soft_wrap=True, markup=False)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[2:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m genesis.bench soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=4, help="Live cameras (default: %(default)s).")
    ap.add_argument("--fps", type=float, default=5.0, help="Frames a second of each camera (default: %(default)s).")
    ap.add_argument("--minutes", type=float, default=60.0, help="Length of the soak (default: %(default)s).")
    ap.add_argument("--source", action="append",
                    help=f"Clip a camera loops over (repeat: they go round the cameras; default: {DEFAULT_SOURCE}).")
    ap.add_argument("--width", type=int, default=0, help="Scale wider clips down to this width (0: as they are).")
    ap.add_argument("--detect-workers", type=int, default=2, help="Prefork children of the detect worker.")
    ap.add_argument("--redis-maxmemory-mb", type=int, default=256, help="maxmemory of the soak's Redis (noeviction).")
    ap.add_argument("--interval-s", type=float, default=60.0, help="Seconds between samples (default: %(default)s).")
    ap.add_argument("--flat-pct", type=float, default=10.0, help="Growth allowed to a flat memory (percent).")
    ap.add_argument("--flat-mb", type=float, default=16.0, help="Growth allowed to a flat memory (MB), if larger.")
    ap.add_argument("--drain-timeout-s", type=float, default=900.0,
                    help="How long the workers may take to drain after the capture stops.")
    ap.add_argument("--models-from", default="../shared/models",
                    help="Folder the weights are copied from without GENESIS_MODELS_DIR (default: %(default)s).")
    ap.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL URL allowed to CREATE DATABASE.")
    ap.add_argument("--markdown", action="store_true", help="The samples as a Markdown table too.")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args(argv)
    if args.cameras < 1 or args.fps <= 0 or args.minutes <= 0 or args.interval_s <= 0:
        ap.error("--cameras, --fps, --minutes and --interval-s must be positive")
    for s in args.source or [DEFAULT_SOURCE]:
        if not Path(s).is_file():
            ap.error(f"no such video: {s}")
    code: list[int] = []
    run_until_sigterm(lambda a, v: code.append(run(a, v)), args, argv)
    raise SystemExit(code[0] if code else 1)
