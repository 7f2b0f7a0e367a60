"""Benchmark: the embedded pipeline against a detector-only loop over the same frames.

    python -m genesis.bench.pipeline --source VIDEO [--frames 240] [--stride 1] [--enroll DIR]

Both loops read the same frames of the same video, in the same process, with the same
detector; the pipeline adds JPEG round trip, tracking, recognition per track, analytics and
database writes. A third loop shows what recognising every person in every frame would cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from genesis.adapters.db import Repository
from genesis.adapters.video import VideoSource
from genesis.backends.detectors import PersonDetector
from genesis.config import load_settings
from genesis.pipeline.embedded import run_embedded
from genesis.pipeline.model_loader import detector_label, load_models
from genesis.services.enroll import enroll
from genesis.stages.recognize import find_face


def detector_only(source: str, frames: int, stride: int, detector: PersonDetector,
                  max_width: int | None = None) -> tuple[float, float]:
    """(frames/s, CPU ms/frame) of reading (shrunk to ``max_width``, as a camera's ``max_width`` reads) and
    detecting."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    with VideoSource(source, max_width=max_width) as video:
        for f in video.frames(stride=stride, max_frames=frames):
            detector.detect(f.image)
            n += 1
    return n / (time.perf_counter() - t0), 1000 * (time.process_time() - c0) / n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True)
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--enroll", type=Path, help="Folder with one sub-folder of photos per identity to enroll.")
    ap.add_argument("--naive-frames", type=int, default=40, help="Frames for the per-frame recognition loop.")
    ap.add_argument("--rounds", type=int, default=3, help="Alternate detector-only and pipeline runs this many times.")
    ap.add_argument("--config", type=Path)
    args = ap.parse_args(argv)

    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="genesis-bench-"))
    os.environ["GENESIS_DATABASE_URL"] = f"sqlite:///{tmp / 'bench.db'}"
    settings = load_settings(args.config)
    models = load_models(settings, with_faces=True)
    assert models.face_detector is not None and models.embedder is not None
    enrolled = 0
    if args.enroll:
        with Repository(settings.database_url) as repo:
            for folder in sorted(p for p in args.enroll.iterdir() if p.is_dir()):
                photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:2]
                enroll(repo, folder.name, photos, models.face_detector, models.embedder, detector_label(settings))
                enrolled += 1

    camera = settings.camera(None)
    # Warm up once (first-call allocations), then alternate the two loops so that a slow
    # moment of a shared machine hits both alike; report the medians.
    detector_only(args.source, 5, args.stride, models.detector)
    det_runs: list[float] = []
    pipe_runs: list[float] = []
    det_cpu: list[float] = []
    pipe_cpu: list[float] = []
    for _ in range(max(1, args.rounds)):
        fps, cpu = detector_only(args.source, args.frames, args.stride, models.detector)
        det_runs.append(fps)
        det_cpu.append(cpu)
        c0 = time.process_time()
        out = run_embedded(settings, args.source, camera, None, False, args.stride, args.frames, None, models)
        pipe_runs.append(out.report["run"]["fps"])
        pipe_cpu.append(1000 * (time.process_time() - c0) / out.report["run"]["frames_processed"])
    det_fps = statistics.median(det_runs)
    pipe_fps = statistics.median(pipe_runs)

    # Naive: every person of every frame gets a face search and, if found, an embedding.
    gallery_size = enrolled
    t0 = time.perf_counter()
    n = faces = 0
    from genesis.domain import TrackedPerson

    with VideoSource(args.source) as video:
        for f in video.frames(stride=args.stride, max_frames=args.naive_frames):
            for d in models.detector.detect(f.image):
                face = find_face(f.image, TrackedPerson(0, d.box, d.score), models.face_detector, 0.5)
                if face is not None:
                    models.embedder.embed(f.image, [face])
                    faces += 1
            n += 1
    naive_fps = n / (time.perf_counter() - t0)

    res = out.report["results"]
    attempts = sum(t["attempts"] for t in res["tracks"])
    t = Table(title=f"Genesis benchmark — {Path(args.source).name}, {out.report['run']['frames_processed']} frames "
                    f"(stride {args.stride}), {os.cpu_count()} CPUs")
    t.add_column("loop")
    t.add_column("frames/s", justify="right")
    t.add_column("vs detector-only", justify="right")
    t.add_row("detector only (same frames, same model)", f"{det_fps:.2f}", "100%")
    t.add_row(f"genesis run: track + recognise per track ({gallery_size} identities) + analytics + SQLite",
              f"{pipe_fps:.2f}", f"{100 * pipe_fps / det_fps:.0f}%")
    t.add_row(f"naive: detect + face search/embed every person every frame ({n} frames)",
              f"{naive_fps:.2f}", f"{100 * naive_fps / det_fps:.0f}%")
    console.print(t)
    console.print(f"detector-only runs: {', '.join(f'{v:.2f}' for v in det_runs)} frames/s; "
                  f"pipeline runs: {', '.join(f'{v:.2f}' for v in pipe_runs)} frames/s; "
                  f"pipeline: {res['people']['tracks']} tracks ({res['people'].get('segments', 0)} identity segments), "
                  f"{attempts} face embeddings in all "
                  f"(naive loop: {faces} in {n} frames)")
    det_c, pipe_c = statistics.median(det_cpu), statistics.median(pipe_cpu)
    console.print(f"CPU time per frame (median; immune to a busy neighbour): detector only {det_c:.1f} ms, "
                  f"pipeline {pipe_c:.1f} ms (ratio {det_c / pipe_c:.2f})")
    console.print(f"pipeline/detector frame-rate ratio: {pipe_fps / det_fps:.2f}")


if __name__ == "__main__":
    main()
