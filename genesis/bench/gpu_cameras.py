"""``python -m genesis.bench gpu --cameras N``: N simulated cameras through the distributed pipeline with a
batching detect worker (the GPU queue), end to end.

    python -m genesis.bench gpu --cameras 32 [--source VIDEO] [--fps 5] [--frames 40] [--width 1280]
        [--weights FILE --backend ultralytics] [--half] [--batch 32] [--recognize-workers 2] [--check] [--markdown]

- **Cameras**: one clip (``--source``, scaled once to ``--width``, 1280 = 720p for the shared 16:9 clips) shared
  by N cameras, each its own capture (threads of this process, as N capture processes would) paced at ``--fps``
  (5: a live camera; the clip is taken every ``source fps / fps`` frames; ``--fps 0``: as fast as the pipeline
  takes them, with the capture's backpressure, for the throughput ceiling).
- **Pipeline**: real Celery workers, Redis (``--broker``, ``--frames-redis``, flushed before and after) and a
  fresh PostgreSQL database: one batching detect worker (threads pool of ``--batch`` tasks, one model; on a GPU
  ``workers/detect.py --gpu 0``'s pool and the ``gpu`` queue, on the CPU the ``detect`` queue), recognize workers
  (solo, ``--recognize-workers``; the per-camera lock keeps each camera in order) and a store worker. The workers
  stamp, per frame, when its sightings were committed (``genesis.bench.distributed --bench-worker --stamp``).
- **Reported**: frames/s end to end (frames published ÷ time from the first capture to everything stored),
  frames dropped by backpressure, p50/p95 capture → sightings committed, the detector's batch sizes (the detect
  worker's ``genesis_detector_batch_frames`` histogram), GPU utilisation and memory (``nvidia-smi`` sampled every
  0.5 s) when there is a GPU, the CPU per frame of every process; with ``--check``, whether each camera's
  ``results`` equal the embedded run of the same frames.

Without a GPU it says so and runs on the CPU (the onnx detector, batched by the same worker): keep N small there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from genesis.adapters.video import VideoSource
from genesis.bench.distributed import (
    Harness,
    PacedSource,
    Pool,
    Results,
    add_database_arguments,
    bench_environment,
    bench_workdir,
    fmt_breakdown,
    latencies_ms,
    load_average,
    make_small_clip,
    markdown_table,
    run_until_sigterm,
    stamp_key,
    summarize,
    summary_table,
)
from genesis.config import Settings, load_settings

DEFAULT_SOURCE = "../shared/data/video/opencv4nodejs_people.mp4"
BATCH_METRIC = "genesis_detector_batch_frames"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gpu_present() -> bool:
    """Whether ``nvidia-smi`` sees a GPU (torch is not imported in this process for that)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


@dataclass(slots=True)
class GpuSampler:
    """``nvidia-smi`` every ``every_s`` in a thread: utilisation (%) and memory used (MiB) of each sample."""

    every_s: float = 0.5
    util: list[float] = field(default_factory=list)
    memory_mib: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits", "-i", "0"], capture_output=True, text=True,
                                     timeout=10, check=False).stdout
                util, mem = (float(v) for v in out.strip().splitlines()[0].split(","))
            except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
                continue
            self.util.append(util)
            self.memory_mib.append(mem)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


@dataclass(frozen=True, slots=True)
class BatchSizes:
    calls: float
    frames: float
    buckets: dict[float, float]
    """Upper bound -> calls with at most that many frames (cumulative, as Prometheus writes them)."""

    @property
    def mean(self) -> float:
        return self.frames / self.calls if self.calls else 0.0

    def describe(self) -> str:
        parts, below = [], 0.0
        for le, n in sorted(self.buckets.items()):
            if n > below:
                parts.append(f"≤{le:g}: {n - below:g}")
            below = n
        return ", ".join(parts)

    def largest_bound(self) -> float:
        """The smallest bucket bound that holds every call (the largest batch is at most this)."""
        for le, n in sorted(self.buckets.items()):
            if n >= self.calls:
                return le
        return float("inf")


def parse_batch_sizes(metrics_text: str) -> BatchSizes | None:
    """The detector batch histogram from a Prometheus text page (None when it has none)."""
    count = re.search(rf"^{BATCH_METRIC}_count (\S+)", metrics_text, re.MULTILINE)
    total = re.search(rf"^{BATCH_METRIC}_sum (\S+)", metrics_text, re.MULTILINE)
    if not count or not total:
        return None
    buckets = {float(le): float(v) for le, v in
               re.findall(rf'^{BATCH_METRIC}_bucket{{le="([0-9.]+)"}} (\S+)', metrics_text, re.MULTILINE)}
    return BatchSizes(float(count[1]), float(total[1]), buckets)


def scrape_batch_sizes(port: int) -> BatchSizes | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            return parse_batch_sizes(resp.read().decode())
    except OSError:
        return None


def bench_config(args: argparse.Namespace, clip: str, gpu: bool) -> dict[str, Any]:
    """N cameras on the same clip, each with a zone and a line; the detector of ``--weights``/``--backend``."""
    detector: dict[str, Any] = {}
    if args.weights:
        detector.update(weights=str(Path(args.weights).resolve()), backend=args.backend)
        if gpu:
            detector.update(device="cuda:0", half=args.half)
    cameras = [{
        "id": f"cam{i:02d}",
        "source": clip,
        "zones": [{"name": "lower", "points": [[0.25, 0.45], [0.75, 0.45], [0.75, 1.0], [0.25, 1.0]]}],
        "lines": [{"name": "middle", "start": [0.5, 0.0], "end": [0.5, 1.0]}],
    } for i in range(1, args.cameras + 1)]
    config: dict[str, Any] = {
        "distributed": {"detect_queue": "gpu" if gpu else "detect", "detect_batch_size": args.batch},
        "recognition": {"enabled": not args.no_recognition},
        "cameras": cameras,
    }
    if detector:
        config["detector"] = detector
    return config


def preflight(settings: Settings, with_faces: bool) -> None:
    """The models load here, on the CPU, before any worker starts: a missing weight file is one clear error, not
    a dead letter per frame."""
    from genesis.pipeline.model_loader import load_models

    cpu = settings.model_copy(update={"detector": settings.detector.model_copy(update={"device": "cpu"})})
    load_models(cpu, with_faces=with_faces)


@dataclass(slots=True)
class CameraRun:
    camera_id: str
    run_id: str = ""
    published: int = 0
    dropped: int = 0
    captured: dict[int, float] = field(default_factory=dict)
    error: str | None = None


def capture_cameras(settings: Settings, app: Any, repo: Any, clip: str, frames: int, stride: int,
                    fps: float) -> list[CameraRun]:
    """Every camera's capture in its own thread, started together; returns when all have ended."""
    from genesis.pipeline.capture import distributed_capture

    runs = [CameraRun(c.id) for c in settings.cameras]

    def one(run: CameraRun) -> None:
        try:
            loop = distributed_capture(settings, settings.camera(run.camera_id), clip, app=app, stride=stride,
                                       max_frames=frames, repository=repo)
            if fps > 0:
                loop.open_source = lambda s: PacedSource(s, fps, run.captured)
            stats = loop.run()
            run.run_id, run.published, run.dropped = stats.run_id, stats.published, stats.dropped
        except Exception as exc:  # reported, the other cameras go on
            run.error = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=one, args=(r,), name=f"capture-{r.camera_id}") for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return runs


def run_benchmark(args: argparse.Namespace, argv: list[str]) -> None:
    from genesis.adapters.db import Repository
    from genesis.pipeline.report import build_results
    from genesis.tasks.celery_config import make_app

    console = Console() if sys.stdout.isatty() else Console(width=220)
    gpu = gpu_present() and not args.cpu
    res = Results()
    if not gpu:
        note = ("no GPU here (nvidia-smi sees none)" if not args.cpu else "--cpu") + \
            f": a CPU-only run, the detector on the CPU, {args.cameras} cameras"
        console.print(f"[yellow]{note}[/]")
        res.notes.append(note)
    with bench_workdir("genesis-bench-gpu-", console, args.keep_logs) as tmp:
        with VideoSource(args.source) as v:
            src_fps = v.info.fps or 25.0
        stride = max(1, round(src_fps / args.fps)) if args.fps > 0 else 1
        clip = tmp / "clip.avi"
        width, height = make_small_clip(str(Path(args.source).resolve()), clip, args.width, args.frames * stride)
        config = tmp / "settings.yaml"
        config.write_text(yaml.safe_dump(bench_config(args, str(clip), gpu)))
        with bench_environment(args, config) as (env, settings):
            preflight(settings, with_faces=not args.no_recognition)
            repo = Repository(settings.database_url)
            pool = Pool(env, tmp)
            port = free_port()
            sampler = GpuSampler() if gpu else None
            try:
                detect_env = {"GENESIS_OPS__ROLE": "detect", "GENESIS_OPS__PORT": str(port)}
                if gpu:
                    detect_env.update(CUDA_VISIBLE_DEVICES=str(args.gpu), GENESIS_DETECTOR__DEVICE="cuda:0")
                queue = "gpu,detect" if gpu else "detect"
                specs: list[tuple[str, str, str, int, dict[str, str], list[str] | None]] = [
                    ("detect", queue, "threads", args.batch, detect_env, ["--stamp"]),
                    ("store", "store", "solo", 1, {}, ["--stamp"]),
                ]
                specs += [(f"recognize{i}", "recognize", "solo", 1, {}, ["--stamp"])
                          for i in range(args.recognize_workers)]
                console.print(f"starting workers: detect threads x{args.batch} ({'GPU' if gpu else 'CPU'}, queue "
                              f"{queue}), recognize solo x{args.recognize_workers}, store solo (logs in {tmp})")
                pool.start(specs)
                app = make_app(settings)
                h = Harness(settings, settings.cameras[0], repo, pool)
                # Warm-up: the model loaded (and, on a GPU, its kernels chosen) before the clock starts.
                warm = capture_cameras(settings.model_copy(update={"cameras": settings.cameras[:1]}), app, repo,
                                       str(clip), 4, stride, 0)
                h.wait_stored(warm[0].run_id)
                before = scrape_batch_sizes(port)
                console.print(f"{args.cameras} cameras x {args.frames} frames at "
                              f"{f'{args.fps:g} fps' if args.fps > 0 else 'full speed'}, {width}x{height}...")
                if sampler is not None:
                    sampler.start()
                mark = pool.cpu_mark()
                t0 = time.perf_counter()
                runs = capture_cameras(settings, app, repo, str(clip), args.frames, stride, args.fps)
                failed = [r for r in runs if r.error]
                if failed:
                    raise RuntimeError("; ".join(f"{r.camera_id}: {r.error}" for r in failed))
                t_done, _ = h.wait_stored(runs[-1].run_id)
                wall = t_done - t0
                unfinished = [(r.camera_id, rec.status if rec else "missing")
                              for r in runs if (rec := repo.run(r.run_id)) is None or rec.status != "finished"]
                if unfinished:
                    raise RuntimeError(f"runs not finished after the drain (worker logs in {tmp}): {unfinished}")
                if sampler is not None:
                    sampler.stop()
                cpu = pool.cpu_since(mark)
                after = scrape_batch_sizes(port)
                published = sum(r.published for r in runs)
                dropped = sum(r.dropped for r in runs)
                lat: list[float] = []
                for r in runs:
                    raw = h.client.hgetall(stamp_key("stored", r.run_id))
                    lat += latencies_ms(r.captured, {int(k): float(v) for k, v in raw.items()})
                part = f"{args.cameras} cameras, {'GPU' if gpu else 'CPU only'}"
                res.add(part, "frames end to end", f"{published / wall:.1f} frames/s",
                        f"{published} frames in {wall:.1f} s (offered {args.cameras * args.fps:g} frames/s)"
                        if args.fps > 0 else f"{published} frames in {wall:.1f} s (unpaced)")
                res.add(part, "frames dropped (backpressure)", str(dropped))
                total = summarize(lat)
                if total is not None and args.fps > 0:
                    res.add(part, "capture → sightings committed, p50", f"{total.p50_ms:.0f} ms",
                            f"{total.n} frames with sightings")
                    res.add(part, "capture → sightings committed, p95", f"{total.p95_ms:.0f} ms",
                            f"max {total.max_ms:.0f} ms")
                if args.batch == 1:
                    res.add(part, "detector batch", "1 frame", "--batch 1: no batching, one frame per call")
                elif after is not None:
                    calls = after.calls - (before.calls if before else 0.0)
                    frames = after.frames - (before.frames if before else 0.0)
                    buckets = {le: n - (before.buckets.get(le, 0.0) if before else 0.0)
                               for le, n in after.buckets.items()}
                    sizes = BatchSizes(calls, frames, buckets)
                    res.add(part, "detector batch, mean", f"{sizes.mean:.1f} frames",
                            f"{calls:g} calls; largest ≤ {sizes.largest_bound():g}; {sizes.describe()}")
                else:
                    res.add(part, "detector batch", "n/a", f"no {BATCH_METRIC} on the detect worker's /metrics")
                if sampler is not None and sampler.util:
                    res.add(part, "GPU utilisation", f"{statistics.mean(sampler.util):.0f} % mean",
                            f"max {max(sampler.util):.0f} %, {len(sampler.util)} samples")
                    res.add(part, "GPU memory used", f"{max(sampler.memory_mib):.0f} MiB max")
                res.add(part, "CPU per frame", f"{1000 * sum(cpu.values()) / max(published, 1):.1f} ms",
                        fmt_breakdown({k: 1000 * v / max(published, 1) for k, v in cpu.items()}))
                if args.check:
                    from genesis.pipeline.embedded import run_embedded

                    emb = load_settings(config, {**env, "GENESIS_DATABASE_URL": f"sqlite:///{tmp / 'emb.db'}"})
                    if gpu:
                        emb = emb.model_copy(update={"detector": emb.detector.model_copy(update={"device": "cuda:0"})})
                    out = run_embedded(emb, str(clip), emb.cameras[0], None, False, stride, args.frames)
                    want = dict(out.report["results"], camera=None)
                    same = 0
                    for r in runs:
                        rec = repo.run(r.run_id)
                        if rec is not None and dict(build_results(repo, rec, settings.camera(r.camera_id)),
                                                    camera=None) == want:
                            same += 1
                    res.add(part, "cameras whose results equal the embedded run", f"{same} of {len(runs)}")
            finally:
                if sampler is not None:
                    sampler.stop()
                pool.stop_all()
                repo.close()
        title = (f"Genesis GPU queue — {args.cameras} cameras, {Path(args.source).name} at {width}x{height}, "
                 f"{os.cpu_count()} CPUs")
        console.print(summary_table(res.rows, title))
        for note in res.notes:
            console.print(note)
        console.print(f"load average after: {load_average()}")
        console.print("command: " + shlex.join(["python", "-m", "genesis.bench", "gpu", *argv]), highlight=False,
                      soft_wrap=True)
        if args.markdown:
            console.print(markdown_table(res.rows), highlight=False, soft_wrap=True, markup=False)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m genesis.bench gpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, required=True, help="Simulated cameras (32 on a GPU; 2 on a small CPU).")
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="The clip every camera shows.")
    ap.add_argument("--fps", type=float, default=5.0, help="Frames per second of each camera (0: unpaced).")
    ap.add_argument("--frames", type=int, default=40, help="Frames per camera.")
    ap.add_argument("--width", type=int, default=1280, help="Width the clip is scaled to (1280: 720p).")
    ap.add_argument("--weights", help="Detector weights (a local .pt or .onnx; default: the settings' int8 ONNX).")
    ap.add_argument("--backend", choices=["onnx", "ultralytics"], default="ultralytics",
                    help="Backend of --weights (ultralytics: torch, the GPU path).")
    ap.add_argument("--half", action="store_true", help="FP16 on the GPU (ultralytics).")
    ap.add_argument("--batch", type=int, default=32, help="Detect tasks in flight, and most frames per batch.")
    ap.add_argument("--gpu", type=int, default=0, help="CUDA device of the detect worker.")
    ap.add_argument("--cpu", action="store_true", help="Run on the CPU even where there is a GPU.")
    ap.add_argument("--recognize-workers", type=int, default=2)
    ap.add_argument("--no-recognition", action="store_true", help="Tracking and analytics only (no face models).")
    ap.add_argument("--check", action="store_true", help="Compare each camera's results with an embedded run.")
    add_database_arguments(ap)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args(argv)
    if args.cameras < 1 or args.frames < 1 or args.batch < 1:
        ap.error("--cameras, --frames and --batch must be at least 1")
    with contextlib.suppress(KeyboardInterrupt):
        run_until_sigterm(run_benchmark, args, argv)


if __name__ == "__main__":
    main()
