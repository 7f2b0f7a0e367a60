"""``python -m genesis.bench cameras``: how many cameras at 5 fps this machine carries in the distributed mode.

    python -m genesis.bench cameras [--source VIDEO] [--static-source VIDEO] [--fps 5] [--frames 30]
        [--presets default,crowd,overhead,doorway] [--detect-workers 2] [--detect-threads 0]
        [--detector FIELD=VALUE ...] [--max-width PX] [--markdown]

For each detector preset, with real Celery workers (detect prefork, recognize solo, store solo), Redis and a fresh
PostgreSQL database (all started here and removed afterwards, as ``genesis.bench.distributed`` does):

- a **moving-crowd clip** (``--source``, taken at ``--fps``: stride = source fps / fps) and a **mostly-static
  clip** made from ``--static-source`` (``genesis.bench.clips.make_static_clip``: still stretches of ``--still-s``
  seconds with sensor noise, then ``--walk-s`` seconds of walking, ``--cycles`` times) each go through the
  distributed pipeline with motion gating off, then on (one run each, side by side);
- the CPU of every process (capture, workers with their pool children, Redis, PostgreSQL) per frame gives the
  cameras the machine carries: ``cores x 1000 / (CPU ms per frame x fps)``; the drained frame rate ÷ fps is
  the same figure by wall time (lower when other jobs share the machine: their CPU is reported as foreign);
- detector calls are the frames the gate did not mark static (the capture's own gate, replayed on the frames);
- the zone and line counts of each run show what gating changed;
- a second table says where the CPU of a frame goes (:data:`WHERE`: the capture's steps, the inference and the
  rest of the detect worker, the sequence task, the store, Redis and PostgreSQL), so the next step is chosen by
  measurement;
- in-process, the detector-only loop and ``run_embedded`` on the moving clip give the pipeline / detector ratio
  per preset (goal >= 0.80).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from genesis.adapters.video import VideoSource
from genesis.backends.onnx import available_cpus, threads_per_process
from genesis.bench.clips import make_static_clip
from genesis.bench.distributed import (
    DistRun,
    Harness,
    Pool,
    add_database_arguments,
    bench_config,
    bench_environment,
    bench_workdir,
    load_average,
    run_until_sigterm,
)
from genesis.config import CameraConfig, ConfigError, MotionConfig, Settings, load_settings
from genesis.eval.table import markdown_table
from genesis.stages.motion import MotionGate

WHERE = ("read+decode", "gate", "encode", "send", "capture other", "inference", "detect other", "sequence",
         "store", "redis", "postgres")
"""Where the CPU of a frame goes (columns of the bench's second table): the capture thread's steps (reading and
decoding the source, the motion gate, the JPEG encode, storing + publishing through the Redis and broker
clients; ``capture other``: the rest of the capture process until the source ends, starting the run and its
heartbeat thread among it), the detect worker
split into the inference (the detector's own CPU per call, measured in-process on the same clip, times the
detector calls) and the rest (fetching and decoding the JPEG, the task, pushing results), the sequence task
(tracking, recognition, analytics, its sinks: the ``recognize`` worker), the store worker, and the Redis and
PostgreSQL servers (counted per process: a PostgreSQL backend that exited meanwhile takes its CPU with it)."""

PRESETS = ("default", "crowd", "overhead", "doorway")
DEFAULT_SOURCE = "../shared/data/video/opencv4nodejs_people.mp4"


@dataclass(slots=True)
class CameraRow:
    preset: str
    clip: str
    gating: bool
    frames: int
    detector_calls: int
    fps: float
    cpu_ms: float
    foreign: float
    counts: str
    camera_fps: float
    where: dict[str, float] = field(default_factory=dict)
    """CPU ms per frame by step (:data:`WHERE`), inference not yet split from the detect worker."""
    drain_poll_ms: float = 0.0
    """The bench's own CPU per frame while it waited for the drain: not the pipeline's, not in ``cpu_ms``."""

    @property
    def cameras_cpu(self) -> float:
        """Cameras at ``camera_fps`` that all cores carry at this CPU cost per frame."""
        return (os.cpu_count() or 1) * 1000.0 / (self.cpu_ms * self.camera_fps) if self.cpu_ms > 0 else 0.0

    @property
    def cameras_wall(self) -> float:
        return self.fps / self.camera_fps


def where_cpu_goes(d: DistRun, detector_calls: int, inference_ms: float | None) -> dict[str, float]:
    """CPU ms per frame by step (:data:`WHERE`) of one distributed run; ``inference_ms``: the detector's CPU
    per call (None: not split)."""
    if not d.frames:
        return {}
    per = d.cpu_breakdown()
    steps = {k: 1000.0 * d.capture_steps_s.get(k, 0.0) / d.frames for k in ("read", "gate", "encode", "send")}
    inference = detector_calls * inference_ms / d.frames if inference_ms is not None else 0.0
    detect = per.get("detect", 0.0)
    return {"read+decode": steps["read"], "gate": steps["gate"], "encode": steps["encode"], "send": steps["send"],
            "capture other": max(0.0, per.get("capture", 0.0) - sum(steps.values())),
            "inference": min(inference, detect), "detect other": max(0.0, detect - inference),
            "sequence": per.get("recognize", 0.0), "store": per.get("store", 0.0),
            "redis": per.get("redis", 0.0), "postgres": per.get("postgres", 0.0)}


def static_frames(source: str, stride: int, frames: int, motion: MotionConfig) -> int:
    """How many frames the capture's gate marks static (the same decisions: same pixels, same times)."""
    gate = MotionGate(MotionConfig(**{**motion.model_dump(), "enabled": True}))
    with VideoSource(source) as video:
        for raw in video.frames(stride=stride, max_frames=frames):
            gate.check(raw.image, raw.ts)
    return gate.static_frames


def counts_of(results: dict[str, Any]) -> str:
    zones = " ".join(f"{z['name']} {z['entries']}/{z['exits']}" for z in results["zones"])
    lines = " ".join(f"{ln['name']} {ln['in']}/{ln['out']}" for ln in results["lines"])
    return f"tracks {results['people']['tracks']}; zone in/out {zones}; line in/out {lines}"


def detector_env(pairs: list[str]) -> dict[str, str]:
    """``--detector FIELD=VALUE`` (``dequantize=false``, ``motion.min_changed=0.001``) as the
    ``GENESIS_DETECTOR__*`` variables that set those fields. ValueError: not FIELD=VALUE."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or not all(parts):
            raise ValueError(f"--detector {pair!r}: give FIELD=VALUE, e.g. dequantize=false, motion.min_changed=0.001")
        env["GENESIS_DETECTOR__" + "__".join(p.upper() for p in parts)] = value.strip()
    return env


def preset_env(preset: str, threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The detect workers' (and the in-process settings') detector variables of one preset: the threads, the
    preset, then ``--detector``'s fields (which apply to every preset)."""
    env = {"GENESIS_DETECTOR__THREADS": str(threads)} if threads else {}
    if preset != "default":
        env["GENESIS_DETECTOR__PRESET"] = preset
    return {**env, **(extra or {})}


def run(args: argparse.Namespace, argv: list[str]) -> None:
    from genesis.adapters.db import Repository
    from genesis.bench.pipeline import detector_only
    from genesis.pipeline.embedded import run_embedded
    from genesis.pipeline.model_loader import load_models
    from genesis.pipeline.report import build_results

    console = Console() if sys.stdout.isatty() else Console(width=220)
    rows: list[CameraRow] = []
    runs: list[tuple[CameraRow, DistRun]] = []
    ratios: list[list[str]] = []
    with bench_workdir("genesis-bench-cameras-", console, args.keep_logs) as tmp:
        source = str(Path(args.source).resolve())
        static_clip = tmp / "static.avi"
        console.print(f"making the mostly-static clip from {args.static_source or source} ...")
        layout = make_static_clip(str(Path(args.static_source or source).resolve()), static_clip, width=args.width,
                                  still_s=args.still_s, walk_s=args.walk_s, cycles=args.cycles)
        with VideoSource(source) as v:
            src_fps = v.info.fps
        stride = max(1, round(src_fps / args.fps))
        static_stride = max(1, round(layout["fps"] / args.fps))
        static_n = -(-int(layout["frames"]) // static_stride)
        clips = [("moving crowd", source, stride, args.frames), ("mostly static", str(static_clip), static_stride,
                                                                    static_n)]
        config = tmp / "settings.yaml"
        doc = bench_config(source)
        if args.max_width is not None:
            doc["cameras"][0]["max_width"] = args.max_width
        config.write_text(yaml.safe_dump(doc))
        with bench_environment(args, config, drop_prefix="GENESIS_DETECTOR__") as (env, base):
            repo = Repository(base.database_url)
            pool = Pool(env, tmp)
            try:
                pool.start([("recognize", "recognize", "solo", 1, {}, None), ("store", "store", "solo", 1, {}, None)])
                for preset in args.presets:
                    penv = preset_env(preset, args.detect_threads, args.detector_env)
                    console.print(f"[bold]{preset}[/]: detect prefork x{args.detect_workers} ({penv or 'defaults'})")
                    pool.start([("detect", "detect", "prefork", args.detect_workers, penv, None)])
                    settings: dict[bool, Settings] = {
                        on: load_settings(config, {**env, **penv, "GENESIS_DETECTOR__MOTION__ENABLED": str(on).lower()})
                        for on in (False, True)
                    }
                    camera = settings[False].camera("bench")
                    harness = {on: Harness(s, camera, repo, pool) for on, s in settings.items()}
                    harness[False].run(source, 2 * args.detect_workers + 2, stride)  # warm-up
                    for label, clip, clip_stride, n in clips:
                        calls_on = n - static_frames(clip, clip_stride, n, settings[True].detector.motion)
                        for on in (False, True):
                            d = harness[on].run(clip, n, clip_stride)
                            run_row = repo.run(d.run_id)
                            assert run_row is not None
                            results = build_results(repo, run_row, camera)
                            row = CameraRow(preset, label, on, d.frames, calls_on if on else d.frames, d.fps,
                                            d.cpu_ms_per_frame, d.other_share, counts_of(results), args.fps,
                                            drain_poll_ms=1000.0 * d.drain_poll_cpu_s / max(1, d.frames))
                            rows.append(row)
                            runs.append((row, d))
                            console.print(f"  {label}, gating {'on' if on else 'off'}: {d.frames} frames, "
                                          f"{row.detector_calls} detector calls, {d.fps:.2f} f/s drained, CPU "
                                          f"{d.cpu_ms_per_frame:.0f} ms/frame -> {row.cameras_cpu:.1f} cameras "
                                          f"(foreign CPU {100 * d.other_share:.0f} %); {row.counts}")
                    # Pipeline / detector-only, in this process, on the moving clip, with the onnxruntime threads
                    # of one detect child (the "inference" share of the table of where the CPU goes is this
                    # process's detector CPU, and the ratio compares one core's work with one core's, as before)
                    child = threads_per_process(args.detect_threads, args.detect_workers, available_cpus())
                    emb = load_settings(config, {**env, **penv, "GENESIS_DATABASE_URL": f"sqlite:///{tmp / 'e.db'}",
                                                 "GENESIS_DETECTOR__THREADS": str(child)})
                    models = load_models(emb)
                    detector_only(source, 3, stride, models.detector, args.max_width)
                    det_fps, det_cpu = detector_only(source, args.frames, stride, models.detector, args.max_width)
                    for row, d in runs:
                        if row.preset == preset:
                            row.where = where_cpu_goes(d, row.detector_calls, det_cpu)
                    c0 = time.process_time()
                    out = run_embedded(emb, source, emb.camera("bench"), None, False, stride, args.frames, None,
                                       models)
                    n_emb = out.report["run"]["frames_processed"]
                    emb_cpu = 1000.0 * (time.process_time() - c0) / n_emb
                    emb_fps = float(out.report["run"]["fps"])
                    ratios.append([preset, models.detector.name, f"{det_fps:.2f}", f"{det_cpu:.0f}", f"{emb_fps:.2f}",
                                   f"{emb_cpu:.0f}", f"{emb_fps / det_fps:.2f}", f"{det_cpu / emb_cpu:.2f}"])
                    console.print(f"  detector only {det_fps:.2f} f/s ({det_cpu:.0f} ms CPU), embedded pipeline "
                                  f"{emb_fps:.2f} f/s ({emb_cpu:.0f} ms CPU): ratio {emb_fps / det_fps:.2f} by rate, "
                                  f"{det_cpu / emb_cpu:.2f} by CPU")
            finally:
                pool.stop_all()
                repo.close()
        print_tables(console, rows, ratios, args, argv, layout)


def print_tables(console: Console, rows: list[CameraRow], ratios: list[list[str]], args: argparse.Namespace,
                 argv: list[str], layout: dict[str, Any]) -> None:
    cols = ("preset", "clip", "motion gating", "frames", "detector calls", "drained f/s", "CPU ms/frame",
            f"cameras @{args.fps:g} fps (CPU)", f"cameras @{args.fps:g} fps (wall)", "foreign CPU", "counts")
    body = [[r.preset, r.clip, "on" if r.gating else "off", str(r.frames), str(r.detector_calls), f"{r.fps:.2f}",
             f"{r.cpu_ms:.0f}", f"{r.cameras_cpu:.1f}", f"{r.cameras_wall:.1f}", f"{100 * r.foreign:.0f} %",
             r.counts] for r in rows]
    gains = []
    for preset in dict.fromkeys(r.preset for r in rows):
        for clip in dict.fromkeys(r.clip for r in rows):
            pair = {r.gating: r for r in rows if r.preset == preset and r.clip == clip}
            if len(pair) == 2 and pair[True].detector_calls:
                fewer = pair[False].detector_calls / pair[True].detector_calls
                more = pair[True].cameras_cpu / pair[False].cameras_cpu
                gains.append(f"{preset}, {clip}: {fewer:.1f}x fewer detector calls, {more:.2f}x the cameras (CPU)")
    md = markdown_table(cols, body)
    md_where = markdown_table(("preset", "clip", "motion gating", *WHERE, "total", "(bench drain polling)"),
                              [[r.preset, r.clip, "on" if r.gating else "off",
                                *(f"{r.where.get(k, 0.0):.1f}" for k in WHERE), f"{r.cpu_ms:.0f}",
                                f"{r.drain_poll_ms:.1f}"] for r in rows])
    md2 = markdown_table(("preset", "detector", "detector only f/s", "CPU ms", "embedded pipeline f/s", "CPU ms",
                          "ratio by rate", "ratio by CPU"), ratios)
    console.print(md, highlight=False, soft_wrap=True, markup=False)
    console.print("\n".join(gains), highlight=False, soft_wrap=True, markup=False)
    console.print("where the CPU of a frame goes (ms per frame; inference = detector calls x the detector's CPU "
                  "per call measured in-process below, divided by the frames):", highlight=False, soft_wrap=True,
                  markup=False)
    console.print(md_where, highlight=False, soft_wrap=True, markup=False)
    console.print(md2, highlight=False, soft_wrap=True, markup=False)
    console.print(f"static clip: {layout['frames']} frames at {layout['fps']:.2f} fps, walks at frames "
                  f"{layout['walks']}; {os.cpu_count()} CPUs; load average {load_average()}")
    console.print("command: " + shlex.join(["python", "-m", "genesis.bench", "cameras", *argv]), highlight=False,
                  soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[2:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m genesis.bench cameras", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="Moving-crowd video (default: %(default)s).")
    ap.add_argument("--static-source", help="Video the mostly-static clip is made from (default: --source).")
    ap.add_argument("--fps", type=float, default=5.0, help="Camera rate (default: %(default)s).")
    ap.add_argument("--frames", type=int, default=30, help="Frames of the moving clip per run.")
    ap.add_argument("--still-s", type=float, default=6.0, help="Still stretch of the static clip (s).")
    ap.add_argument("--walk-s", type=float, default=2.0, help="Walk between still stretches (s).")
    ap.add_argument("--cycles", type=int, default=2, help="Still + walk cycles of the static clip.")
    ap.add_argument("--width", type=int, default=800, help="Width of the static clip (px).")
    ap.add_argument("--presets", default="default,crowd,doorway",
                    help=f"Comma-separated, of {','.join(PRESETS)} (default: %(default)s).")
    ap.add_argument("--detect-workers", type=int, default=2, help="Prefork children of the detect worker.")
    ap.add_argument("--detect-threads", type=int, default=0,
                    help="onnxruntime threads per detect child (default 0: the shipped default, detector.threads 0, "
                    "which gives each child the CPUs divided among the children).")
    ap.add_argument("--detector", action="append", default=[], metavar="FIELD=VALUE",
                    help="A detector setting for every preset's workers and runs (repeatable; e.g. dequantize=false, "
                    "motion.min_changed=0.001). The bench ignores GENESIS_DETECTOR__* of its own environment.")
    ap.add_argument("--max-width", type=int, help="The bench camera's max_width: frames shrunk to it as they are "
                    "read (default: as the clips are).")
    add_database_arguments(ap)
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args(argv)
    args.presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    bad = [p for p in args.presets if p not in PRESETS]
    if bad or not args.presets:
        ap.error(f"unknown preset {', '.join(bad) or '(none)'}: one of {', '.join(PRESETS)}")
    if not Path(args.source).is_file():
        ap.error(f"no such video: {args.source}")
    try:
        args.detector_env = detector_env(args.detector)
        for preset in args.presets:  # a bad field or value fails here, before any worker starts
            load_settings(None, preset_env(preset, args.detect_threads, args.detector_env))
        if args.max_width is not None:
            CameraConfig(id="bench", max_width=args.max_width)
    except (ValueError, ConfigError) as exc:
        ap.error(str(exc))
    run_until_sigterm(run, args, argv)
