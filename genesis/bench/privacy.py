"""Cost of the privacy blur (genesis/services/privacy.py) and of MQTT publishing with the broker away.

``python -m genesis.bench.privacy [--source VIDEO] [--frames 60] [--stride 2]``

1. Per image: frames of the clip (and the same frames upscaled to 1920x1080, where YuNet runs on
   tiles) with the person boxes the detector finds, every person unenrolled: milliseconds of
   :meth:`Redactor.image`, faces blurred, against the JPEG encoding every stored frame pays anyway.
2. A run: ``genesis run --annotate`` on the clip with ``privacy.blur_unenrolled_faces`` off and on
   (the annotated video blurs every frame; snapshots only once a minute), frames per second.
3. MQTT with nothing listening on the port: microseconds per ``publish`` and the messages dropped.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from genesis.adapters.video import VideoSource
from genesis.backends.detectors import build_detector
from genesis.config import CameraConfig, Settings, load_settings
from genesis.config.mqtt import MqttConfig
from genesis.domain import TrackedPerson
from genesis.eval.table import markdown_table
from genesis.services.mqtt import Message, MqttPublisher
from genesis.services.privacy import FrameView, Redactor, privacy_detector


def _frames(source: str, count: int, stride: int) -> list[np.ndarray]:
    video = VideoSource(source)
    try:
        return [f.image for f in video.frames(stride=stride, max_frames=count)]
    finally:
        video.close()


def per_image(settings: Settings, frames: list[np.ndarray]) -> list[list[str]]:
    detector = build_detector(settings.detector, settings.models.path)
    redactor = Redactor(privacy_detector(settings), settings.privacy, "unenrolled",
                        settings.recognition.upper_fraction)
    check = Redactor(privacy_detector(settings), settings.privacy, "everyone")  # YuNet at the blur's 0.5
    rows = []
    for label, scale in (("clip size", None), ("1920x1080", (1920, 1080))):
        blur_ms, jpeg_ms, detect_ms, faces, left, people = [], [], [], 0, 0, 0
        for frame in frames:
            img = frame if scale is None else cv2.resize(frame, scale, interpolation=cv2.INTER_LINEAR)
            t = time.perf_counter()
            detections = detector.detect(img)
            detect_ms.append((time.perf_counter() - t) * 1000)
            persons = tuple(TrackedPerson(n, d.box, d.score) for n, d in enumerate(detections))
            people += len(persons)
            view = FrameView(persons, {p.track_id: None for p in persons})
            t = time.perf_counter()
            out = redactor.image(img, view)
            blur_ms.append((time.perf_counter() - t) * 1000)
            faces += len(redactor.faces(img, persons))
            left += len(check.faces(out, persons))
            t = time.perf_counter()
            cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, settings.pipeline.jpeg_quality])
            jpeg_ms.append((time.perf_counter() - t) * 1000)
        size = f"{img.shape[1]}x{img.shape[0]}"
        blur_ms.sort()
        rows.append([f"{label} ({size})", str(len(frames)), f"{people / len(frames):.1f}", str(faces),
                     f"{statistics.median(blur_ms):.1f}", f"{blur_ms[int(0.95 * (len(blur_ms) - 1))]:.1f}",
                     f"{statistics.median(detect_ms):.1f}", f"{statistics.median(jpeg_ms):.1f}", str(left)])
        print(f"{label}: p50 {statistics.median(blur_ms):.1f} ms", flush=True)
    return rows


def runs(settings: Settings, source: str, frames: int, stride: int) -> list[list[str]]:
    from genesis.pipeline.embedded import run_embedded
    from genesis.pipeline.model_loader import load_models

    models = load_models(settings)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for blur in ("off", "unenrolled", "off", "unenrolled"):  # alternating rounds
            s = settings.model_copy(update={"database_url": f"sqlite:///{tmp}/{blur}-{time.time_ns()}.db"})
            camera = CameraConfig(id="bench", blur_faces=blur)  # type: ignore[arg-type]
            out = run_embedded(s, source, camera, out_dir=Path(tmp) / blur, annotate=True, stride=stride,
                               max_frames=frames, models=models)
            rows.append([blur, str(out.report["run"]["frames_processed"]), f"{out.report['run']['fps']:.2f}"])
            print(f"run, blur {blur}: {out.report['run']['fps']:.2f} fps", flush=True)
    return rows


def mqtt_publish(messages: int = 100_000) -> list[str]:
    import socket

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pub = MqttPublisher(MqttConfig(enabled=True, port=port))
    payload = b'{"type":"zone_enter","camera_id":"bench","track_id":1}'
    t = time.perf_counter()
    for i in range(messages):
        pub.publish(Message(f"genesis/bench/event/zone_enter/{i % 10}", payload))
    elapsed = time.perf_counter() - t
    pub.close()
    return [str(messages), f"{elapsed * 1e6 / messages:.2f}", str(pub.dropped), str(pub.config.buffer_messages)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genesis.bench.privacy", description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="../shared/data/video/opencv4nodejs_people.mp4")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--config", default=None, help="settings file (default: the built-in defaults)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    frames = _frames(args.source, args.frames, args.stride)
    header = ("image", "frames", "people / frame", "faces found", "blur p50 (ms)", "blur p95 (ms)",
              "person detector p50 (ms)", "JPEG encode p50 (ms)", "faces left (YuNet 0.5)")
    print(markdown_table(header, per_image(settings, frames)))
    print(markdown_table(("blur", "frames", "frames/s"), runs(settings, args.source, args.frames, args.stride)))
    print(markdown_table(("messages", "µs per publish", "dropped", "buffer"), [mqtt_publish()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
