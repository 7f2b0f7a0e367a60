"""``python -m genesis.bench.live``: what the live view costs the run loop.

Real frames of a video go through the real detector and camera stages once; then each frame's
outcome is offered to a `LivePublisher` (a) while nobody watches, (b) while a browser watches, every
frame published (interval 0: the encode + write cost of one publication), on a SQLite database
(embedded) and, with ``--redis``, on Redis (distributed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from genesis.adapters.db import Repository
from genesis.adapters.video import VideoSource
from genesis.config import load_settings
from genesis.domain import FrameRef
from genesis.pipeline.model_loader import load_models
from genesis.services.live import LiveBackend, LivePublisher, RedisLive, SqlLive, mark_watched
from genesis.stages.camera import CameraState
from genesis.stages.detect import detect_frame


def _frames(video: str, n: int, stride: int) -> list[tuple[Any, Any, Any]]:
    settings = load_settings(None)
    models = load_models(settings)
    src = VideoSource(video)
    out = []
    try:
        state = None
        for raw in src.frames(stride=stride, max_frames=n):
            h, w = raw.image.shape[:2]
            if state is None:
                state = CameraState(settings, settings.camera("bench"), w, h, src.info.fps, None, stride)
            ref = FrameRef("bench", raw.seq, raw.ts, f"k{raw.seq}", w, h)
            out.append((state.process(detect_frame(models.detector, ref, raw.image), raw.image), state, raw.image))
    finally:
        src.close()
    return out


def _time(publisher: LivePublisher, frames: list[tuple[Any, Any, Any]], fps: float = 0.0) -> list[float]:
    """Offer each frame (paced at ``fps`` when given, as a camera would); the time of each offer (ms)."""
    times = []
    for outcome, state, image in frames:
        t0 = time.perf_counter()
        publisher.offer("bench", outcome, state, image)
        times.append((time.perf_counter() - t0) * 1000)
        if fps:
            time.sleep(max(0.0, 1 / fps - (time.perf_counter() - t0)))
    return times


def _row(label: str, times: list[float], published: int) -> str:
    q = statistics.quantiles(times, n=20)
    return f"| {label} | {len(times)} | {published} | {statistics.median(times):.3f} | {q[-1]:.3f} |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genesis.bench.live", description=__doc__.split("\n")[0])
    parser.add_argument("--video", default="../shared/data/video/opencv4nodejs_people.mp4")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--fps", type=float, default=10.0, help="Pace of the frames in the default-interval case.")
    parser.add_argument("--redis", default=None, help="A Redis URL to measure the distributed backend too.")
    args = parser.parse_args(argv)
    frames = _frames(args.video, args.frames, args.stride)
    print("| backend, case | offers | published | median (ms) | p95 (ms) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repository(f"sqlite:///{Path(tmp) / 'live.db'}")
        backends: list[tuple[str, Callable[[], LiveBackend], Any, Any]] = [
            ("sqlite", lambda: SqlLive(repo.engine), repo.engine, None)]
        if args.redis:
            import redis

            client = redis.Redis.from_url(args.redis)
            client.delete("genesis:live:bench:watch", "genesis:live:bench:gate")
            backends.append(("redis", lambda: RedisLive(client), None, client))
        for name, backend, engine, client in backends:
            idle = LivePublisher(backend())
            print(_row(f"{name}, nobody watching", _time(idle, frames), idle.published))
            mark_watched("bench", 600, engine, client)
            busy = LivePublisher(backend(), interval_s=0.0 if client is None else 0.001)  # Redis gates in ms
            print(_row(f"{name}, watched, every frame published", _time(busy, frames), busy.published))
            time.sleep(0.6)
            default = LivePublisher(backend())
            times = _time(default, frames, args.fps)
            print(_row(f"{name}, watched, default 0.5 s, frames at {args.fps:g} fps", times, default.published))
        repo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
