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
from collections.abc import Sequence
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


def _time(publisher: LivePublisher, frames: list[tuple[Any, Any, Any]]) -> list[float]:
    times = []
    for outcome, state, image in frames:
        t0 = time.perf_counter()
        publisher.offer("bench", outcome, state, image)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _row(label: str, times: list[float], published: int) -> str:
    q = statistics.quantiles(times, n=20)
    return f"| {label} | {len(times)} | {published} | {statistics.median(times):.3f} | {q[-1]:.3f} |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genesis.bench.live", description=__doc__.split("\n")[0])
    parser.add_argument("--video", default="../shared/data/video/opencv4nodejs_people.mp4")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--redis", default=None, help="A Redis URL to measure the distributed backend too.")
    args = parser.parse_args(argv)
    frames = _frames(args.video, args.frames, args.stride)
    print("| backend, case | offers | published | median (ms) | p95 (ms) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repository(f"sqlite:///{Path(tmp) / 'live.db'}")
        backends: list[tuple[str, LiveBackend, Any, Any]] = [("sqlite", SqlLive(repo.engine), repo.engine, None)]
        if args.redis:
            import redis

            client = redis.Redis.from_url(args.redis)
            backends.append(("redis", RedisLive(client), None, client))
        for name, backend, engine, client in backends:
            idle = LivePublisher(backend)
            print(_row(f"{name}, nobody watching", _time(idle, frames), idle.published))
            mark_watched("bench", 600, engine, client)
            busy = LivePublisher(backend, interval_s=0.0)
            if client is not None:
                busy.interval_s = 0.001  # Redis gates in whole milliseconds
            times = _time(busy, frames)
            print(_row(f"{name}, watched, every frame published", times, busy.published))
            default = LivePublisher(backend)
            print(_row(f"{name}, watched, default interval 0.5 s", _time(default, frames), default.published))
        repo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
