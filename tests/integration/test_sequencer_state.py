"""The sequencer's state in Redis is our own JSON codec, never pickle.

- A real clip through ``CameraState`` with faces enrolled, its state saved and restored halfway
  (ByteTrack's Kalman filters, votes and best-face vectors, zones, lines, alert episodes), gives
  exactly the outcomes of an uninterrupted run.
- A crafted pickle stored in ``genesis:run:<id>:state`` (it would run ``touch``) is refused by the
  real sequencer task in a real worker: a dead letter, and nothing executed.
- The run's keys carry a TTL.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from genesis.adapters.db import Repository
from genesis.adapters.dlq import DeadLetters
from genesis.adapters.redis_keys import RUN_TTL_S, end_key, results_key, state_key
from genesis.adapters.video import VideoSource
from genesis.backends.detectors import build_detector
from genesis.config import Settings, load_settings
from genesis.domain import FrameDetections, FrameOutcome, FrameRef
from genesis.domain.codec import CodecError
from genesis.pipeline.loop import BaseSink, RunProgress, RunState, truncated
from genesis.pipeline.model_loader import load_face_models
from genesis.pipeline.sequencer import (
    FrameResult,
    Sequencer,
    StateError,
    dumps_state,
    push_result,
    restore_state,
)
from genesis.stages.camera import CameraState, FaceModels
from genesis.stages.recognize import Gallery
from genesis.tasks import routing
from genesis.tasks.celery_config import make_app
from tests.integration.test_sequencer import CAMERA  # the same camera: a zone, a line, alert rules
from tests.integration.workers import pipeline_env, workers
from tests.services import redis_url

BROKER = redis_url(12)
FRAMES = redis_url(13)
STRIDE = 2



@pytest.fixture(scope="module")
def settings(models_dir: Path) -> Settings:
    return load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir)})


@pytest.fixture(scope="module")
def clip(settings: Settings, data_dir: Path) -> tuple[list[FrameDetections], list[np.ndarray], float]:
    det = build_detector(settings.detector, settings.models.path)
    dets, images = [], []
    with VideoSource(str(data_dir / "video" / "opencv4nodejs_people.mp4")) as video:
        fps = video.info.fps
        for f in video.frames(stride=STRIDE, max_frames=70):
            h, w = f.image.shape[:2]
            dets.append(FrameDetections(FrameRef("cam", f.seq, f.ts, f"k{f.seq}", w, h), tuple(det.detect(f.image))))
            images.append(f.image)
    return dets, images, fps


@pytest.fixture(scope="module")
def faces(settings: Settings, shared_dir: Path) -> FaceModels:
    """Obama and Biden enrolled (strangers in this clip: every face search votes, and keeps its vector)."""
    detector, embedder = load_face_models(settings)
    names, vectors = [], []
    for name, photo in [("obama", "obama.jpg"), ("obama", "obama2.jpg"), ("biden", "biden.jpg")]:
        image = cv2.imread(str(shared_dir / "models" / "faces" / photo))
        found = detector.detect(image)
        names.append(name)
        vectors.append(embedder.embed(image, found[:1])[0])
    cfg = settings.recognition.embedder
    gallery = Gallery.build(embedder.model_name, names, np.stack(vectors), cfg.cosine_threshold, 0.0)
    return FaceModels(detector, embedder, gallery)


def _state(settings: Settings, faces: FaceModels, fps: float) -> RunState:
    return RunState(CameraState(settings, CAMERA, 800, 450, fps, faces, STRIDE), RunProgress(STRIDE, fps))


def _rows(outcome: FrameOutcome) -> list[str]:
    return [repr(x) for x in (outcome.tracked, *outcome.sightings, *outcome.attempts, *outcome.zone_events,
                              *outcome.crossings, *outcome.alerts, *outcome.samples)]


def test_state_saved_and_restored_midway_gives_the_outcomes_of_an_uninterrupted_run(
    settings: Settings, faces: FaceModels, clip: tuple[list[FrameDetections], list[np.ndarray], float]
) -> None:
    dets, images, fps = clip
    whole = _state(settings, faces, fps)
    want = [_rows(whole.camera.process(d, img)) for d, img in zip(dets, images, strict=True)]
    want_close = whole.camera.close()
    assert sum(1 for rows in want for r in rows if r.startswith("RecognitionAttempt")) >= 5, "faces must be searched"
    assert any(r.startswith("ZoneEvent") for rows in want for r in rows)

    half = len(dets) // 2
    first = _state(settings, faces, fps)
    got = [_rows(first.camera.process(d, img)) for d, img in zip(dets[:half], images[:half], strict=True)]
    assert first.camera.tracker._tracker.tracks, "the cut must fall while tracks are alive"
    assert any(first.camera.recognizer.best_face(t) is not None for t in first.camera.recognizer.track_ids())
    saved = dumps_state(first)
    json.loads(saved)  # plain JSON text
    second = _state(settings, faces, fps)
    restore_state(second, saved)
    got += [_rows(second.camera.process(d, img)) for d, img in zip(dets[half:], images[half:], strict=True)]
    assert got == want
    assert second.camera.close() == want_close
    assert second.camera.track_records() == whole.camera.track_records()
    for tid in whole.camera.recognizer.track_ids():
        a, b = whole.camera.recognizer.best_face(tid), second.camera.recognizer.best_face(tid)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert a.vector.dtype == b.vector.dtype and np.array_equal(a.vector, b.vector)


@pytest.mark.parametrize("raw", [
    b'{"format": "genesis.run-state/1", "camera": {}, "progress": {}}',
    b'{"format": "something else"}',
    b"[1, 2, 3]",
    b"\x80\x04K\x01.",
    b'{"format": "genesis.run-state/1", "camera": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # issue 23, item 13
    b'{"format": "genesis.run-state/1", "camera": {}, "progress": {"frames": NaN}}',
    b'{"format": "genesis.run-state/1", "camera": {}, "progress": {"frames": 1e400}}',
])
def test_a_state_that_does_not_decode_is_refused(settings: Settings, raw: bytes) -> None:
    with pytest.raises(StateError, match="does not decode"):
        restore_state(_state(settings, None, 25.0), raw)  # type: ignore[arg-type]


def test_an_array_of_objects_is_never_decoded(settings: Settings) -> None:
    from genesis.domain.codec import decode_value

    with pytest.raises(CodecError, match="dtype"):
        decode_value(np.ndarray, {"dtype": "object", "shape": [1], "data": ""})
    with pytest.raises(CodecError, match="bytes"):
        decode_value(np.ndarray, {"dtype": "float32", "shape": [4], "data": "AAAA"})


class _Touch:
    """A pickle that runs a shell command when loaded (what an attacker with Redis access writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"touch {self.path}",)


def test_a_pickle_in_the_state_key_is_refused_by_the_sequencer_and_runs_nothing(
    settings: Settings, models_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Touch(marker))
    assert not marker.exists()

    # The sequencer itself, on real Redis.
    r = redis.Redis.from_url(FRAMES)
    r.flushdb()
    r.set(state_key("run1"), payload)
    push_result(r, "run1", FrameResult(FrameRef("cam", 0, 0.0, "k0", 800, 450), -1))
    seq = Sequencer(redis=r, settings=settings, camera=CAMERA, run_id="run1",
                    run_meta={"width": 800, "height": 450, "fps": 25.0, "stride": 1}, faces=None,
                    load_image=lambda ref: np.zeros((450, 800, 3), np.uint8), sink=BaseSink())
    with pytest.raises(StateError):
        seq.run()
    assert not marker.exists()
    assert r.get(state_key("run1")) == payload  # left for an operator to look at, not overwritten
    r.flushdb()

    # The sequence task in a real worker: a dead letter, and still nothing executed.
    with pipeline_env(tmp_path, models_dir, data_dir, BROKER, FRAMES, {}) as env:
        wsettings = load_settings(environ=env)
        with Repository(wsettings.database_url) as repo:
            repo.upgrade()
            repo.start_run("run2", "entrance", "clip.mp4", {"width": 800, "height": 450, "fps": 25.0, "stride": 1})
        frames = redis.Redis.from_url(FRAMES)
        frames.set(state_key("run2"), payload)
        push_result(frames, "run2", FrameResult(FrameRef("entrance", 0, 0.0, "k0", 800, 450), -1))
        app = make_app(wsettings)
        app.send_task(routing.SEQUENCE, args=["entrance", "run2"], queue=routing.queue_of(wsettings, routing.SEQUENCE))
        letters = DeadLetters.from_settings(wsettings)
        with workers(("recognize", routing.queue_of(wsettings, routing.SEQUENCE), 1, "solo"), env=env,
                     log_dir=tmp_path):
            deadline = time.monotonic() + 90
            while letters.size() == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
        found = letters.list()
        assert len(found) == 1, (tmp_path / "recognize.log").read_text()[-3000:]
        assert found[0].task_name == routing.SEQUENCE and "does not decode" in found[0].exc_message
        assert found[0].retries == 0
        assert not marker.exists()


def test_every_key_of_a_run_has_a_ttl(settings: Settings) -> None:
    r = redis.Redis.from_url(FRAMES)
    r.flushdb()
    r.set(end_key("run3"), json.dumps({"last_seq": 5}))
    push_result(r, "run3", FrameResult(FrameRef("cam", 0, 0.0, "k0", 800, 450), -1))
    push_result(r, "run3", FrameResult(FrameRef("cam", 2, 0.08, "k2", 800, 450), 1))
    seq = Sequencer(redis=r, settings=settings, camera=CAMERA, run_id="run3",
                    run_meta={"width": 800, "height": 450, "fps": 25.0, "stride": 1}, faces=None,
                    load_image=lambda ref: np.zeros((450, 800, 3), np.uint8), sink=BaseSink())
    assert not seq.run() and seq.waiting_on_gap()  # frame 1 has not come: the run waits, its state saved
    keys = [k.decode() for k in r.scan_iter(match="genesis:run:run3:*")]
    assert {state_key("run3"), results_key("run3"), end_key("run3")} <= set(keys)
    for key in keys:
        assert 0 < r.ttl(key) <= RUN_TTL_S, key
    r.flushdb()


def test_a_file_cut_short_is_in_the_distributed_run_meta(settings: Settings) -> None:
    """The capture's end summary says how long the file claimed to be; the run's meta keeps it."""
    r = redis.Redis.from_url(FRAMES)
    r.flushdb()
    finished: list[dict[str, Any]] = []

    class Meta(BaseSink):
        def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
            finished.append(progress.run_meta())

    for seq in range(3):
        push_result(r, "run4", FrameResult(FrameRef("cam", seq, seq * 0.04, f"k{seq}", 800, 450), seq - 1))
    r.set(end_key("run4"), json.dumps({"last_seq": 2, "frames_declared": 50, "frames_read": 3}))
    seq = Sequencer(redis=r, settings=settings, camera=CAMERA, run_id="run4",
                    run_meta={"width": 800, "height": 450, "fps": 25.0, "stride": 1}, faces=None,
                    load_image=lambda ref: np.zeros((450, 800, 3), np.uint8), sink=Meta())
    assert seq.run()
    (meta,) = finished
    assert (meta["frames"], meta["frames_declared"], meta["frames_read"]) == (3, 50, 3)
    assert "3 of the 50 frames" in (truncated(meta) or "")
    r.flushdb()
