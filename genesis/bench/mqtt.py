"""Cost of the MQTT events of a camera (genesis/services/mqtt_events.py): per frame, and per snapshot.

``python -m genesis.bench.mqtt [--source VIDEO] [--frames 20] [--stride 4] [--people 10]``

1. ``CameraEvents.frame`` over a scripted stream with ``--people`` tracks in view (each one named,
   entering a zone, then leaving: the lifecycle, the debounced state and the events all at work):
   microseconds per frame, and the size of the memory the distributed sequencer keeps in Redis.
2. A snapshot of each person YOLO finds in frames of the clip: milliseconds for the person crop
   and its JPEG, without a blur and with the ``unenrolled`` privacy blur (nobody enrolled: every
   face in the crop blurred), against the person detector on the same frame.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from genesis.adapters.video import VideoSource
from genesis.backends.detectors import build_detector
from genesis.config import CameraConfig, Settings, load_settings
from genesis.config.mqtt import MqttConfig
from genesis.domain import FrameOutcome, FrameRef, TrackedFrame, TrackedPerson, ZoneEvent, ZoneEventKind
from genesis.eval.table import markdown_table
from genesis.services.mqtt_events import CameraEvents, PassageFacts, Tracks, encode_snapshot, person_crop
from genesis.services.privacy import FrameView, Redactor, privacy_detector
from genesis.stages.recognize import TrackIdentity

CAMERA = CameraConfig.model_validate({"id": "bench", "zones": [
    {"name": "hall", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}]})


def events_per_frame(people: int, frames: int = 2000) -> list[str]:
    """Each track stays 100 frames (10 s at 10 fps), named after 10, enters the zone after 5."""
    events = CameraEvents(MqttConfig(enabled=True, discovery=True), CAMERA, "bench", 1_700_000_000.0)
    span = 100

    def alive(seq: int) -> list[int]:
        return [t for t in range(seq - span + 1, seq + 1) if t >= 0 and t % (span // people) == 0]

    def facts(track: int) -> list[PassageFacts]:
        now = events.memory.last_seq + 1
        named = now - track >= 10
        return [PassageFacts(0, track / 10, now / 10, "alice" if named else None, False, None, 2 if named else 0)]

    tracks = Tracks(lambda t: TrackIdentity("alice" if events.memory.last_seq + 1 - t >= 10 else None, 2, 2, 0.3),
                    lambda t: False, facts, lost_after_s=1.0)
    total, messages, biggest = 0.0, 0, 0
    for seq in range(frames):
        ids = alive(seq)
        persons = tuple(TrackedPerson(t, (10.0 + t % 50, 10.0, 60.0 + t % 50, 200.0), 0.9) for t in ids)
        zone = [ZoneEvent("bench", "hall", t, ZoneEventKind.ENTER, seq, seq / 10) for t in ids if seq - t == 5]
        outcome = FrameOutcome(TrackedFrame(FrameRef("bench", seq, seq / 10, "k", 640, 480), persons),
                               zone_events=zone, occupancy={"hall": sum(1 for t in ids if seq - t >= 5)})
        t0 = time.perf_counter()
        messages += len(events.frame(outcome, tracks))
        total += time.perf_counter() - t0
        biggest = max(biggest, len(events.memory.to_json()))
    return [str(people), str(frames), f"{total * 1e6 / frames:.0f}", f"{messages / frames:.2f}", str(biggest)]


def snapshots(settings: Settings, source: str, frames: int, stride: int) -> list[list[str]]:
    detector = build_detector(settings.detector, settings.models.path)
    redactor = Redactor(privacy_detector(settings), settings.privacy, "unenrolled",
                        settings.recognition.upper_fraction)
    config = settings.mqtt.snapshot
    plain, blurred, detect, sizes = [], [], [], []
    video = VideoSource(source)
    try:
        images = [f.image for f in video.frames(stride=stride, max_frames=frames)]
    finally:
        video.close()
    for image in images:
        t = time.perf_counter()
        found = detector.detect(image)
        detect.append((time.perf_counter() - t) * 1000)
        persons = tuple(TrackedPerson(n, d.box, d.score) for n, d in enumerate(found))
        view = FrameView(persons, {p.track_id: None for p in persons})
        for p in persons:
            t = time.perf_counter()
            encode_snapshot(person_crop(image, p.box, view, None), config)
            plain.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            jpeg = encode_snapshot(person_crop(image, p.box, view, redactor), config)
            blurred.append((time.perf_counter() - t) * 1000)
            sizes.append(len(jpeg))
    return [[str(len(images)), str(len(plain)), f"{statistics.median(plain):.2f}", f"{statistics.median(blurred):.1f}",
             f"{max(blurred):.1f}", f"{statistics.median(sizes) / 1024:.1f}", f"{statistics.median(detect):.1f}"]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genesis.bench.mqtt", description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="../shared/data/video/opencv4nodejs_people.mp4")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--people", type=int, default=10)
    parser.add_argument("--config", default=None, help="settings file (default: the built-in defaults)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    print(markdown_table(("people in view", "frames", "µs per frame", "messages per frame", "memory JSON (bytes)"),
                        [events_per_frame(1), events_per_frame(args.people)]))
    print(markdown_table(("frames", "snapshots", "crop + JPEG p50 (ms)", "with blur p50 (ms)", "with blur max (ms)",
                          "JPEG p50 (kB)", "person detector p50 (ms)"),
                         snapshots(settings, args.source, args.frames, args.stride)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
