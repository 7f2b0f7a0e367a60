"""Batched detection (issue 25) with real Celery workers, on the CPU: a batching detect worker (threads pool, one
model, the frames of all its running tasks in shared detector calls) gives exactly the embedded run's ``results``
(one frame per call), on the ``gpu`` queue as a ``--gpu`` worker runs it and on the ``detect`` queue with
``--batch``; killed with SIGKILL mid-batch (shipped defaults), it loses nothing.

Each test starts its own redis-server, real worker processes and a fresh PostgreSQL database; the embedded
reference is the suite's cached one (tests/integration/workers.py).
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import redis

from tests.integration import test_faults_defaults
from tests.integration.test_faults_defaults import DEFAULTS, RedisServer, held, report
from tests.integration.workers import capture, embedded, genesis_cli, launchers, pipeline_env, workers
from tests.ports import free_port
from tests.stored import stored_sightings
from tests.waiting import wait_for

server = test_faults_defaults.server  # the fixture: a Redis server of the test's own

SEQUENCE_AND_STORE = [("recognize", "recognize", 1, "solo"), ("store", "store", 1, "solo")]


def batch_sizes(port: int) -> tuple[float, float, float, float]:
    """``genesis_detector_batch_frames`` of a worker's /metrics: (calls, frames, calls of at most 8 frames), and
    the frames its ``detect`` inference histogram counted."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()

    def value(pattern: str) -> float:
        match = re.search(pattern, text, re.MULTILINE)
        assert match, f"{pattern} not in the metrics:\n{text}"
        return float(match[1])

    return (value(r"^genesis_detector_batch_frames_count (\S+)"), value(r"^genesis_detector_batch_frames_sum (\S+)"),
            value(r'^genesis_detector_batch_frames_bucket\{le="8.0"\} (\S+)'),
            value(r'^genesis_inference_duration_seconds_count\{stage="detect"\} (\S+)'))


def test_gpu_queue_batching_worker_gives_the_embedded_results(server: RedisServer, models_dir: Path,
                                                               data_dir: Path, tmp_path: Path) -> None:
    """``workers/detect.py --gpu 0`` (the detector forced to the CPU here) consumes the ``gpu`` queue with a
    batching threads pool: frames of several messages share detector calls, and the stored results equal the
    embedded run's."""
    with pipeline_env(tmp_path, models_dir, data_dir, server.url(0), server.url(1), {"detect_queue": "gpu"}) as env:
        want = embedded(env, data_dir)
        run_id = capture(env, data_dir)  # every frame waits in the queue: the worker takes many messages at once
        port = free_port()
        detect_env = dict(env, GENESIS_DETECTOR__DEVICE="cpu")
        logs = Path(env["TEST_OUT_DIR"])
        with launchers(("detect", ["--gpu", "0", "--port", str(port)]), env=detect_env, log_dir=logs) as started, \
                workers(*SEQUENCE_AND_STORE, env=env, log_dir=logs):
            log = started[0].log.read_text()
            assert re.search(r"\.> gpu ", log) and f"concurrency: {DEFAULTS.detect_batch_size} (thread)" in log, log
            genesis_cli(env, "drain", "--timeout", "300")
            calls, frames, small, inferences = batch_sizes(port)
        got, _ = report(env, "--run", run_id)
    assert got["run"]["status"] == "finished" and got["run"]["missing_frames"] == 0
    assert got["results"] == want
    assert frames == want["frames"] == inferences, (calls, frames, inferences)  # one inference time per frame
    assert small < calls, f"no detector call had more than one message's frames (8): {calls} calls, {frames} frames"


def test_batching_worker_killed_mid_batch_loses_nothing(server: RedisServer, models_dir: Path, data_dir: Path,
                                                        tmp_path: Path) -> None:
    """kill -9 of a batching detect worker (``--batch``, shipped defaults) while it holds messages; another
    batching worker goes on: the dead worker's messages are back within the gap timeout, no frame is skipped, and
    the stored results equal the embedded run's."""
    with pipeline_env(tmp_path, models_dir, data_dir, server.url(0), server.url(1), {}) as env:
        want = embedded(env, data_dir)
        logs = Path(env["TEST_OUT_DIR"])
        broker = redis.Redis.from_url(server.url(0))
        run_id = capture(env, data_dir)
        with workers(*SEQUENCE_AND_STORE, env=env, log_dir=logs):
            with launchers(("detect", ["--batch", "--no-http"]), env=env, log_dir=logs) as started:
                wait_for(lambda: len(held(broker, "genesis.detect")) > 1, 120, "detect messages in the batching "
                         "worker's hands", interval=0.02)
                holders = {t: broker.get(f"genesis:held:{t}") for t in held(broker, "genesis.detect")}
                started[0].kill()
            victims = [t for t in held(broker, "genesis.detect") if t in holders]
            assert len(victims) > 1, "the killed worker held fewer than two detect messages"
            killed_at = time.monotonic()
            second = logs / "second"
            second.mkdir()
            with launchers(("detect", ["--batch", "--no-http"]), env=env, log_dir=second):

                def back() -> bool:  # out of the dead worker's hands: queued again, or taken by the new worker
                    taken = set(held(broker, "genesis.detect"))
                    return all(t not in taken or broker.get(f"genesis:held:{t}") != holders[t] for t in victims)

                wait_for(back, 60, "the dead worker's messages back in the queue")
                back_after = time.monotonic() - killed_at
                assert back_after < DEFAULTS.gap_timeout_s, back_after
                genesis_cli(env, "drain", "--timeout", "300")
        got, _ = report(env, "--run", run_id)
        assert stored_sightings(env["GENESIS_DATABASE_URL"], finished=True) == sum(t["frames"] for t in want["tracks"])
    assert got["run"]["status"] == "finished"
    assert got["run"]["missing_frames"] == 0
    assert got["results"] == want
