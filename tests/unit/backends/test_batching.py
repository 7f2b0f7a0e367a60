"""The dynamic batcher of the detect workers (``BatchingDetector``) on the real YOLOv8n int8 detector and real frames:
frames handed in by many threads at once come back with the detections of ``detect`` frame by frame, in batches."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from genesis.backends.detectors import PersonDetector, build_detector
from genesis.backends.detectors.batching import BatchingDetector, detect_many
from genesis.config import DetectorConfig
from genesis.domain import Detection


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> PersonDetector:
    return build_detector(DetectorConfig(), models_dir)


@pytest.fixture(scope="module")
def frames(data_dir: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(data_dir / "video" / "opencv4nodejs_people.mp4"))
    out = []
    while len(out) < 12:
        ok, frame = cap.read()
        assert ok
        out.append(frame)
    cap.release()
    return out


@pytest.fixture(scope="module")
def one_by_one(detector: PersonDetector, frames: list[np.ndarray]) -> list[list[Detection]]:
    found = [detector.detect(f) for f in frames]
    assert all(found), "nobody detected in a frame of the people clip"
    return found


def test_tasks_in_threads_get_their_own_detections_in_shared_batches(
        detector: PersonDetector, frames: list[np.ndarray], one_by_one: list[list[Detection]]) -> None:
    """Six "tasks" of two frames each, started together: their frames are batched across tasks (the batch waits
    until every task in a session has handed its frames in), and each gets exactly its own frames' detections."""
    batcher = BatchingDetector(detector, max_size=8, max_wait_s=5.0)  # a long wait: batches close on the rule
    start = threading.Barrier(6)

    def task(k: int) -> list[list[Detection]]:
        with batcher.client():
            start.wait(10)  # every task holds a session before anyone hands frames in
            return batcher.detect_many(frames[2 * k: 2 * k + 2])

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(task, range(6)))
    assert [d for pair in got for d in pair] == one_by_one
    assert batcher.stats.frames == 12
    assert batcher.stats.largest == 8  # full batch first, then the 4 frames left
    assert batcher.stats.sizes == {8: 1, 4: 1}


def test_a_lone_task_never_waits(detector: PersonDetector, frames: list[np.ndarray],
                                 one_by_one: list[list[Detection]]) -> None:
    """With one task at a time (a prefork or solo worker), its frames run at once, not after max_wait_s."""
    batcher = BatchingDetector(detector, max_size=32, max_wait_s=60.0)
    with batcher.client():
        assert batcher.detect_many(frames[:3]) == one_by_one[:3]
    assert batcher.detect(frames[3]) == one_by_one[3]  # outside a session too
    assert batcher.stats.sizes == {3: 1, 1: 1}


def test_a_task_that_is_late_is_not_waited_for_past_max_wait(detector: PersonDetector, frames: list[np.ndarray],
                                                             one_by_one: list[list[Detection]]) -> None:
    batcher = BatchingDetector(detector, max_size=32, max_wait_s=0.05)
    late = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        def slow_task() -> None:
            with batcher.client():
                late.wait(30)  # still fetching its frames

        pending = pool.submit(slow_task)
        try:
            assert batcher.detect_many(frames[:2]) == one_by_one[:2]
        finally:
            late.set()
        pending.result(30)
    assert batcher.stats.sizes == {2: 1}


def test_an_inference_error_reaches_every_task_of_the_batch_and_the_batcher_goes_on(
        detector: PersonDetector, frames: list[np.ndarray], one_by_one: list[list[Detection]]) -> None:
    batcher = BatchingDetector(detector, max_size=4, max_wait_s=0.01)
    with pytest.raises(ZeroDivisionError):  # an empty image: no letterbox scale
        batcher.detect_many([np.zeros((0, 0, 3), dtype=np.uint8)])
    assert batcher.detect_many(frames[:1]) == one_by_one[:1]


def test_detect_many_equals_detect(detector: PersonDetector, frames: list[np.ndarray],
                                   one_by_one: list[list[Detection]]) -> None:
    assert detect_many(detector, frames[:4]) == one_by_one[:4]
    assert detect_many(detector, []) == []


def test_tiled_detection_through_the_batcher_equals_the_plain_detector(detector: PersonDetector,
                                                                        frames: list[np.ndarray]) -> None:
    """A camera with tiling on (the detect task then goes frame by frame, each tile a call of the batcher)."""
    from genesis.backends.detectors import tiled
    from genesis.config import TilingConfig

    tiling = TilingConfig(enabled=True, columns=2, rows=1)
    batcher = BatchingDetector(detector, max_size=8, max_wait_s=0.02)
    with batcher.client():
        got = [tiled(batcher, tiling, 0.45).detect(f) for f in frames[:2]]
    assert got == [tiled(detector, tiling, 0.45).detect(f) for f in frames[:2]]
    assert batcher.stats.frames == 2 * 3  # two tiles and the whole frame, per frame
