"""The capture process against a real Redis (frame store and Celery broker) and SQLite.

No worker runs: the messages are read back from the broker's lists in Redis, where kombu's
Redis transport keeps them (LPUSH on publish, so the oldest message is at the right end).
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
import typer
from celery import Celery
from typer.testing import CliRunner

from genesis.adapters.broker import (
    DRAIN_WINDOW_S,
    MIN_DONE,
    broker_queue_keys,
    detect_backlog,
    drain_rate,
    note_done,
    queue_wait_s,
)
from genesis.adapters.db import Repository
from genesis.adapters.frame_store import MemoryFrameStore, decode_jpeg
from genesis.adapters.redis_frames import RedisFrameStore
from genesis.adapters.redis_keys import end_key, frame_key
from genesis.adapters.video import RawFrame, SourceError, SourceInfo
from genesis.celery import configure
from genesis.cli.capture import capture_command
from genesis.config import CameraConfig, ConfigError, Settings, load_settings
from genesis.domain import FrameRef
from genesis.pipeline.capture import CaptureLoop, capture_counters, distributed_capture
from genesis.tasks.dispatch import publish_frames
from tests.services import REDIS_ADDRESS, redis_url

ROOT = Path(__file__).resolve().parents[2]
REDIS_DB = 13  # a database of its own (test_sequencer.py uses 12), flushed by the fixture
REDIS_URL = redis_url(REDIS_DB)
VIDEO_NAME = "opencv4nodejs_people.mp4"


@pytest.fixture()
def rds() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"these tests need Redis on {REDIS_ADDRESS}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def make_settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(
        environ={
            "GENESIS_BROKER_URL": REDIS_URL,
            "GENESIS_REDIS_URL": REDIS_URL,
            "GENESIS_DATABASE_URL": f"sqlite:///{tmp_path / 'genesis.db'}",
            **env,
        }
    )


@pytest.fixture()
def celery_app() -> Iterator[Callable[[Settings], Celery]]:
    apps: list[Celery] = []

    def make(settings: Settings) -> Celery:
        app = Celery("genesis-test", set_as_current=False)
        configure(app, settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture(scope="session")
def video(data_dir: Path) -> Path:
    path = data_dir / "video" / VIDEO_NAME
    assert path.is_file(), path
    return path


@dataclass(frozen=True)
class Message:
    task: str
    args: list[Any]


def queued(client: redis.Redis, queue: str) -> list[Message]:
    """The messages waiting on a queue, oldest first, decoded from kombu's JSON envelope."""
    out = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        envelope = json.loads(raw)
        assert envelope["content-type"] == "application/json"
        assert envelope["properties"]["body_encoding"] == "base64"
        args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        assert kwargs == {}
        out.append(Message(envelope["headers"]["task"], args))
    return out


def refs_of(message: Message) -> list[FrameRef]:
    """The frames of a detect message (one, or a batch of consecutive frames of one run)."""
    assert isinstance(message.args[0], list) and message.args[0]
    return [FrameRef.from_dict(f) for f in message.args[0]]


def assert_chain(messages: list[Message], run_id: str) -> list[int]:
    """Every message is a detect task of this run; each prev_seq is the seq published before it."""
    seqs = []
    prev = -1
    for m in messages:
        assert m.task == "genesis.detect"
        assert m.args[1] == run_id
        assert m.args[2] == prev, (m.args, prev)
        for ref in refs_of(m):
            assert ref.seq > prev
            prev = ref.seq
            seqs.append(ref.seq)
    return seqs


def frame_keys(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter(match="genesis:frame:*", count=1000))


# -- a file ---------------------------------------------------------------------------------


def test_file_frames_stored_published_and_ended(
    rds: redis.Redis, tmp_path: Path, video: Path, celery_app: Callable[[Settings], Celery]
) -> None:
    settings = make_settings(tmp_path)
    app = celery_app(settings)
    cam = CameraConfig(id="door")
    loop = distributed_capture(settings, cam, str(video), app=app, stride=2, max_frames=20)
    ticks = itertools.count()
    loop.clock = lambda: next(ticks) * 0.001  # reads never look blocked, however busy the machine
    stats = loop.run()

    assert (stats.read, stats.published, stats.dropped, stats.reconnects) == (20, 20, 0, 0)
    assert loop.status()["state"] == "stopped"
    messages = queued(rds, "detect")
    # The first frame finds the queue empty and goes alone; then messages wait (no worker
    # runs here), so the file's frames go out in batches of detect_batch_frames.
    assert settings.distributed.detect_batch_frames == 8
    assert [len(m.args[0]) for m in messages] == [1, 8, 8, 3]
    seqs = assert_chain(messages, stats.run_id)
    assert seqs == list(range(0, 40, 2))
    assert stats.last_seq == 38
    fps = cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS)
    for ref in (r for m in messages for r in refs_of(m)):
        assert ref.camera_id == "door"
        assert ref.key == frame_key("door", stats.run_id, ref.seq)
        assert ref.ts == pytest.approx(ref.seq / fps, abs=1e-5)
        assert (ref.width, ref.height) == (800, 450)
        ttl = rds.ttl(ref.key)
        assert 0 < ttl <= settings.distributed.frame_ttl_s
        data = rds.get(ref.key)
        assert isinstance(data, bytes)
        assert decode_jpeg(data).shape == (450, 800, 3)
    assert len(frame_keys(rds)) == 20

    # The end marker: the summary in Redis and one sequence task on the recognize queue.
    summary = json.loads(rds.get(end_key(stats.run_id)) or b"null")
    assert summary == {
        "last_seq": 38, "frames": 20, "dropped": 0, "stride": 2, "fps": pytest.approx(fps),
        "width": 800, "height": 450, "source": str(video), "frames_declared": 20, "frames_read": 20,
        "reconnects": 0, "outage_s": 0.0,
    }
    assert queued(rds, "recognize") == [Message("genesis.sequence", ["door", stats.run_id])]

    with Repository(settings.database_url) as repo:
        run = repo.run(stats.run_id)
    assert run is not None
    assert (run.camera_id, run.source, run.status) == ("door", str(video), "running")
    assert run.meta == {"width": 800, "height": 450, "fps": pytest.approx(fps), "stride": 2, "mode": "distributed"}


def test_a_camera_with_max_width_publishes_shrunk_frames(
    rds: redis.Redis, tmp_path: Path, video: Path, celery_app: Callable[[Settings], Celery]
) -> None:
    """``cameras[].max_width``: the capture reads the frames at that width (aspect kept), as the embedded runner
    does; what it stores, publishes and records is that size."""
    settings = make_settings(tmp_path)
    app = celery_app(settings)
    loop = distributed_capture(settings, CameraConfig(id="door", max_width=400), str(video), app=app, stride=2,
                               max_frames=4)
    stats = loop.run()
    assert stats.published == 4
    refs = [r for m in queued(rds, "detect") for r in refs_of(m)]
    assert len(refs) == 4 and {(r.width, r.height) for r in refs} == {(400, 225)}
    for ref in refs:
        data = rds.get(ref.key)
        assert isinstance(data, bytes) and decode_jpeg(data).shape == (225, 400, 3)
    summary = json.loads(rds.get(end_key(stats.run_id)) or b"null")
    assert (summary["width"], summary["height"]) == (400, 225)
    with Repository(settings.database_url) as repo:
        run = repo.run(stats.run_id)
    assert run is not None and (run.meta["width"], run.meta["height"]) == (400, 225)
    with pytest.raises(ValueError, match="max_width"):  # another reader could not shrink what it reads
        CaptureLoop(settings, CameraConfig(id="door", max_width=400), "rtsp://fake/x", MemoryFrameStore(),
                    lambda *a: None, lambda: 0, open_source=lambda _s: _FakeLive(1, [0.0], 0.0))


def test_redis_frame_store_round_trip(rds: redis.Redis, tmp_path: Path) -> None:
    store = RedisFrameStore.from_settings(make_settings(tmp_path, GENESIS_DISTRIBUTED__FRAME_TTL_S="100",
                                                        GENESIS_DISTRIBUTED__MAX_BACKLOG_S="30"))
    store.put("genesis:frame:x:r:1", b"\xff\xd8jpeg")
    assert store.get("genesis:frame:x:r:1") == b"\xff\xd8jpeg"
    assert 90 < rds.ttl("genesis:frame:x:r:1") <= 100
    store.delete("genesis:frame:x:r:1")
    assert store.get("genesis:frame:x:r:1") is None
    with pytest.raises(ValueError, match="TTL"):
        RedisFrameStore(rds, 0)


# -- backpressure ---------------------------------------------------------------------------


def test_backlog_counts_every_priority_list(
    rds: redis.Redis, tmp_path: Path, celery_app: Callable[[Settings], Celery]
) -> None:
    app = celery_app(make_settings(tmp_path))
    for priority in (None, None, 3, 9):
        app.send_task("genesis.detect", args=[{}, "r", -1], queue="detect", priority=priority)
    # kombu keeps one list per priority step: the queue's name, then "<queue>\x06\x16<step>".
    lists = {k.decode() for k in rds.keys("detect*") if isinstance(k, bytes)}
    assert lists == {"detect", "detect\x06\x163", "detect\x06\x169"}
    assert broker_queue_keys(app, "detect") == ["detect", "detect\x06\x163", "detect\x06\x166", "detect\x06\x169"]
    assert detect_backlog(app, "detect") == 4
    assert detect_backlog(app, "gpu") == 0


def test_backpressure_drops_and_counts_frames(
    rds: redis.Redis, tmp_path: Path, video: Path, celery_app: Callable[[Settings], Celery]
) -> None:
    """No worker keeps up: frames beyond the backlog limit are dropped, never stored."""
    limit = 5
    settings = make_settings(tmp_path, GENESIS_DISTRIBUTED__MAX_BACKLOG=str(limit))
    app = celery_app(settings)
    cam = CameraConfig(id="hall")
    consumed: list[Message] = []
    calls = 0
    most_keys = 0

    def slow_worker_backlog() -> int:
        """The real backlog; every 8th frame a 'worker' takes everything that waits."""
        nonlocal calls, most_keys
        calls += 1
        most_keys = max(most_keys, len(frame_keys(rds)))
        if calls % 8 == 0:
            taken = queued(rds, "detect")
            rds.delete("detect")
            for m in taken:
                for ref in refs_of(m):
                    rds.delete(ref.key)
            consumed.extend(taken)
        return detect_backlog(app, "detect")

    before = capture_counters().get("hall", {"published": 0, "dropped": 0})
    store = RedisFrameStore.from_settings(settings)

    def end(run_id: str, summary: dict[str, Any]) -> None:
        rds.set(end_key(run_id), json.dumps(summary))

    loop = CaptureLoop(
        settings, cam, str(video), store,
        lambda refs, run_id, prev: publish_frames(app, settings, refs, run_id, prev),
        slow_worker_backlog, end=end, max_frames=40,
    )
    stats = loop.run()

    assert stats.read == 40
    assert stats.published + stats.dropped == 40
    assert stats.dropped > 0
    assert stats.published > limit  # the drained queue let frames through again
    after = capture_counters()["hall"]
    assert after["dropped"] - before["dropped"] == stats.dropped
    assert after["published"] - before["published"] == stats.published
    # Memory stays bounded: never more frames in Redis than the backlog limit's messages hold.
    most = limit * settings.distributed.detect_batch_frames
    assert most_keys <= most
    assert len(frame_keys(rds)) <= most
    # The chain links the published frames across the holes the drops left.
    messages = consumed + queued(rds, "detect")
    seqs = assert_chain(messages, stats.run_id)
    assert len(seqs) == stats.published
    assert seqs[-1] == stats.last_seq
    assert any(b - a > 1 for a, b in itertools.pairwise(seqs))
    dropped_seqs = set(range(40)) - set(seqs)
    assert len(dropped_seqs) == stats.dropped
    assert not any(rds.exists(frame_key("hall", stats.run_id, s)) for s in dropped_seqs)
    summary = json.loads(rds.get(end_key(stats.run_id)) or b"null")
    assert (summary["last_seq"], summary["frames"], summary["dropped"]) == (seqs[-1], len(seqs), stats.dropped)


@pytest.mark.parametrize(("done_per_s", "late"), [(0.1, True), (2.0, False), (None, False), (0.05, False)],
                         ids=["slow-workers", "fast-workers", "no-rate-yet", "too-few-to-tell"])
@pytest.mark.parametrize("kind", ["live", "file"])
def test_a_backlog_longer_than_max_backlog_s_drops_live_frames_and_holds_a_file_back(
    rds: redis.Redis, tmp_path: Path, video: Path, celery_app: Callable[[Settings], Celery],
    done_per_s: float | None, late: bool, kind: str,
) -> None:
    """30 detect messages wait (far below max_backlog, 200). With the workers finishing 0.1 of them a second (as
    measured from their completions in the last 60 s) that is 300 s of work, more than max_backlog_s (120, the
    shipped default): a live camera's frames are dropped at the source, counted, before a frame could expire in
    the queue; a file is read no further until the workers catch up (here: they take the waiting messages after
    2 s), then every frame of it goes out, as in the embedded mode. At 2 a second (15 s) both publish at once,
    and so they do while no rate is measured or fewer than 5 tasks finished in the window (too little to tell a
    slow site from a worker that just started: only the count applies)."""
    settings = make_settings(tmp_path)
    assert settings.distributed.max_backlog_s == 120
    app = celery_app(settings)
    for _ in range(30):
        app.send_task("genesis.detect", args=[{}, "old", -1], queue="detect")
    if done_per_s is not None:
        now = time.time()
        done = int(done_per_s * DRAIN_WINDOW_S)
        for i in range(done):  # finished by workers over the last 30 s, as their task hook records them
            note_done(rds, "detect", now - DRAIN_WINDOW_S + (i + 0.5) * DRAIN_WINDOW_S / done)
        if done >= MIN_DONE:
            assert drain_rate(rds, "detect") == pytest.approx(done_per_s, rel=0.25)
        else:
            assert drain_rate(rds, "detect") is None
    if kind == "live":
        clock = [0.0]
        source, opener = "rtsp://fake/cam", {"open_source": lambda _s: _FakeLive(6, clock, 0.01)}
    else:
        source, opener = str(video), {}
    caught_up = threading.Timer(2.0, lambda: [rds.delete(k) for k in broker_queue_keys(app, "detect")])
    caught_up.start()
    t0 = time.monotonic()
    try:
        stats = distributed_capture(settings, CameraConfig(id="dock"), source, app=app, max_frames=6,
                                    **opener).run()  # type: ignore[arg-type]
    finally:
        caught_up.cancel()
    if late and kind == "live":
        assert (stats.published, stats.dropped, stats.dropped_by) == (0, 6, {"backpressure": 6})
        assert frame_keys(rds) == []
    else:
        assert (stats.published, stats.dropped) == (6, 0)
    if late and kind == "file":
        assert time.monotonic() - t0 >= 2.0  # held back until the workers caught up
    if not late:
        assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("cap", ["seconds", "messages"])
def test_near_the_cap_a_live_camera_over_its_share_waits_for_the_others(
    rds: redis.Redis, tmp_path: Path, celery_app: Callable[[Settings], Celery], cap: str,
) -> None:
    """Past half of a backlog cap the site's admissions are shared (genesis.pipeline.admission): 30 messages wait
    and the workers finish 0.4 a second, 75 s of work against max_backlog_s (120); or 150 messages wait, no rate
    measured, against max_backlog (200). Camera ``a`` was admitted 20 times in this window and ``b``, which tried
    as often, never: ``a``'s frames are dropped at the source (counted as backpressure) and ``b``'s go out.
    Through ``distributed_capture``, as ``genesis capture`` runs it."""
    from genesis.adapters.redis_keys import admission_key
    from genesis.pipeline.admission import WINDOW_S

    settings = make_settings(tmp_path)
    assert (settings.distributed.max_backlog, settings.distributed.max_backlog_s) == (200, 120)
    app = celery_app(settings)
    for _ in range(30 if cap == "seconds" else 150):
        app.send_task("genesis.detect", args=[{}, "old", -1], queue="detect")
    now = time.time()
    for i in range(24 if cap == "seconds" else 0):  # 0.4 a second over the last 60 s
        note_done(rds, "detect", now - DRAIN_WINDOW_S + (i + 0.5) * DRAIN_WINDOW_S / 24)
    window = int(now // WINDOW_S)
    rds.hset(admission_key(window, "tried"), mapping={"a": 20, "b": 20})
    rds.hset(admission_key(window, "admitted"), mapping={"a": 20})
    stats = {}
    for camera in ("a", "b"):
        clock = [0.0]
        stats[camera] = distributed_capture(
            settings, CameraConfig(id=camera), "rtsp://fake/cam", app=app, max_frames=4,
            open_source=lambda _s, c=clock: _FakeLive(4, c, 0.01)).run()  # type: ignore[misc]
    assert (stats["a"].published, stats["a"].dropped_by) == (0, {"backpressure": 4})
    assert (stats["b"].published, stats["b"].dropped) == (4, 0)


def test_a_file_held_back_by_the_backlog_stops_when_told(
    rds: redis.Redis, tmp_path: Path, video: Path, celery_app: Callable[[Settings], Celery],
) -> None:
    """A file waiting for slow workers still stops on SIGTERM (the stop event): the frame it held is a counted
    drop, and the run ends with its end marker."""
    settings = make_settings(tmp_path)
    app = celery_app(settings)
    for _ in range(30):
        app.send_task("genesis.detect", args=[{}, "old", -1], queue="detect")
    now = time.time()
    for i in range(6):  # 0.1 a second: 300 s of work waits
        note_done(rds, "detect", now - DRAIN_WINDOW_S + (i + 0.5) * DRAIN_WINDOW_S / 6)
    stop = threading.Event()
    loop = distributed_capture(settings, CameraConfig(id="dock"), str(video), app=app, max_frames=6, stop=stop)
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.append(loop.run()))
    runner.start()
    wait_for(lambda: loop.status()["read"] >= 1, 60, "the first frame read (and held back)")
    time.sleep(0.5)
    stop.set()  # SIGTERM while the frame waits
    runner.join(60)
    (stats,) = result
    assert (stats.published, stats.dropped, stats.dropped_by) == (0, 1, {"backpressure": 1})
    summary = json.loads(rds.get(end_key(stats.run_id)) or b"null")
    assert (summary["frames"], summary["dropped"]) == (0, 1)


def test_a_message_sent_now_waits_the_backlog_at_the_measured_rate(
    rds: redis.Redis, tmp_path: Path, celery_app: Callable[[Settings], Celery],
) -> None:
    """What the sequencer adds to a gap's second wait after sending its messages again: nothing on an empty
    queue; the backlog at the measured rate; the cap (``max_backlog_s``) when messages wait and no rate is known
    (starting or starved workers) or the backlog is longer."""
    settings = make_settings(tmp_path)
    app = celery_app(settings)
    cap = settings.distributed.max_backlog_s
    assert queue_wait_s(app, "detect", cap) == 0.0
    for _ in range(10):
        app.send_task("genesis.detect", args=[{}, "old", -1], queue="detect")
    assert queue_wait_s(app, "detect", cap) == cap  # no rate measured yet
    now = time.time()
    for i in range(30):  # 0.5 a second over the window
        note_done(rds, "detect", now - DRAIN_WINDOW_S + (i + 0.5) * DRAIN_WINDOW_S / 30)
    assert queue_wait_s(app, "detect", cap) == pytest.approx(20.0, rel=0.25)
    assert queue_wait_s(app, "detect", 5.0) == 5.0


def test_frame_ttl_must_outlast_the_admitted_backlog(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"frame_ttl_s \(200\) must be at least twice"):
        make_settings(tmp_path, GENESIS_DISTRIBUTED__FRAME_TTL_S="200")
    assert make_settings(tmp_path, GENESIS_DISTRIBUTED__FRAME_TTL_S="200",
                         GENESIS_DISTRIBUTED__MAX_BACKLOG_S="60").distributed.frame_ttl_s == 200


def test_full_queue_drops_everything(
    rds: redis.Redis, tmp_path: Path, video: Path, celery_app: Callable[[Settings], Celery]
) -> None:
    settings = make_settings(tmp_path, GENESIS_DISTRIBUTED__MAX_BACKLOG="5")
    app = celery_app(settings)
    for priority in (None, None, None, 6, 6):  # five waiting, some on kombu's priority lists
        app.send_task("genesis.detect", args=[{}, "old", -1], queue="detect", priority=priority)
    stats = distributed_capture(settings, CameraConfig(id="lobby"), str(video), app=app, max_frames=10).run()
    assert (stats.published, stats.dropped, stats.last_seq) == (0, 10, -1)
    assert frame_keys(rds) == []
    assert detect_backlog(app, "detect") == 5
    summary = json.loads(rds.get(end_key(stats.run_id)) or b"null")
    assert (summary["last_seq"], summary["frames"], summary["dropped"]) == (-1, 0, 10)


# -- live sources ---------------------------------------------------------------------------


class _Server:
    """A threaded HTTP server over a folder that can be stopped and started on the same port."""

    def __init__(self, folder: Path) -> None:
        self.handler = functools.partial(_QuietHandler, directory=str(folder))
        self.port = 0
        self.httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_live_source_reconnects_after_outage(
    rds: redis.Redis, tmp_path: Path, video: Path, celery_app: Callable[[Settings], Celery]
) -> None:
    """An HTTP stream that goes away and comes back: degraded meanwhile, then publishing again."""
    cap = cv2.VideoCapture(str(video))
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (320, 180))
    for _ in range(30):
        ok, image = cap.read()
        assert ok
        writer.write(cv2.resize(image, (320, 180)))
    writer.release()
    cap.release()

    # every frame through the detect queue (no still frame as a marker), so the queue holds the whole chain
    settings = make_settings(tmp_path, GENESIS_DISTRIBUTED__MAX_BACKLOG="100000",
                             GENESIS_DETECTOR__MOTION__ENABLED="false")
    app = celery_app(settings)
    server = _Server(tmp_path)
    server.start()
    url = f"http://127.0.0.1:{server.port}/clip.avi"
    stop = threading.Event()
    loop = distributed_capture(settings, CameraConfig(id="gate"), url, app=app, stop=stop,
                               backoff_initial_s=0.05, backoff_max_s=0.4)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(stats=loop.run()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: loop.status()["published"] >= 30, 10, "the first pass over the stream")
        server.stop()
        failures = loop.status()["connect_failures"]
        wait_for(lambda: loop.status()["connect_failures"] >= failures + 2, 10, "failed reconnections")
        down = loop.status()
        assert down["state"] == "degraded"
        assert "cannot open url source" in down["last_error"]
        time.sleep(0.3)
        still_down = loop.status()
        assert still_down["state"] == "degraded"
        assert still_down["published"] == down["published"]

        server.start()
        wait_for(lambda: loop.status()["published"] > down["published"], 10, "frames after the source came back")
        up = loop.status()
        assert up["reconnects"] > down["reconnects"]
        assert up["state"] in ("connected", "degraded")  # degraded again between passes of the clip
    finally:
        stop.set()
        thread.join(10)
        server.stop()
    assert not thread.is_alive()
    stats = result["stats"]
    assert stats.reconnects >= 1
    assert loop.status()["state"] == "stopped"
    # Seqs go on growing across reconnections and the chain holds.
    seqs = assert_chain(queued(rds, "detect"), stats.run_id)
    assert len(seqs) == stats.published
    assert len(set(seqs)) == len(seqs)
    summary = json.loads(rds.get(end_key(stats.run_id)) or b"null")
    assert (summary["last_seq"], summary["frames"]) == (seqs[-1], len(seqs))
    with Repository(settings.database_url) as repo:
        run = repo.run(stats.run_id)
    assert run is not None
    assert run.meta["mode"] == "distributed"


class _FakeLive:
    """A live source of ``n`` frames that ends (a dropped stream), on a fake clock."""

    def __init__(self, n: int, clock: list[float], step: float) -> None:
        self.n, self.clock, self.step = n, clock, step
        self.info = SourceInfo("rtsp://fake/cam", "url", 64, 48, 100.0, None)

    def frames(self, stride: int = 1, max_frames: int | None = None) -> Iterator[RawFrame]:
        for seq in range(self.n):
            self.clock[0] += self.step
            if seq % stride == 0:
                yield RawFrame(seq, self.clock[0], np.full((48, 64, 3), seq % 255, np.uint8))

    def close(self) -> None:
        pass


def test_live_rate_limit_and_seq_across_reconnects(tmp_path: Path) -> None:
    """camera.fps caps the published rate; seqs keep growing when a live source reconnects."""
    settings = make_settings(tmp_path)
    clock = [0.0]
    attempts: list[str] = []

    def open_source(source: str) -> _FakeLive:
        attempts.append(source)
        if len(attempts) in (1, 3):  # down at the start, and once between the two streams
            raise SourceError(f"cannot open url source {source}")
        return _FakeLive(100, clock, 0.01)  # 1 s of video at 100 fps per connection

    published: list[tuple[FrameRef, str, int]] = []
    stop = threading.Event()
    loop = CaptureLoop(
        settings, CameraConfig(id="fake", fps=10.0), "rtsp://fake/cam", MemoryFrameStore(8),
        lambda refs, run_id, prev: published.extend((r, run_id, prev) for r in refs), lambda: 0, stop,
        max_frames=150, open_source=open_source, backoff_initial_s=0.001, backoff_max_s=0.002,
        clock=lambda: clock[0],
    )
    stats = loop.run()
    assert stats.read == 150  # max_frames counts frames read, over both connections
    assert stats.reconnects == 2  # after the failed start, and after the first stream ended
    assert loop.status()["connect_failures"] == 2
    assert 13 <= stats.published <= 17  # 10 fps over 1.5 s of source time
    assert stats.skipped == stats.read - stats.published
    seqs = [ref.seq for ref, _, _ in published]
    assert [prev for _, _, prev in published] == [-1, *seqs[:-1]]
    assert seqs == sorted(set(seqs))
    assert seqs[-1] >= 100  # the second connection numbered after the first


def test_live_source_stopped_before_connecting_records_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    stop = threading.Event()

    def never(source: str) -> _FakeLive:
        stop.set()
        raise SourceError(f"cannot open url source {source}")

    loop = CaptureLoop(settings, CameraConfig(id="off"), "rtsp://fake/off", MemoryFrameStore(), lambda *a: None,
                       lambda: 0, stop, open_source=never)
    stats = loop.run()
    assert not stats.started
    assert loop.status()["last_error"] == "cannot open url source rtsp://fake/off"
    with Repository(settings.database_url) as repo:
        assert repo.runs() == []


# -- command line ---------------------------------------------------------------------------


def test_cli_missing_or_corrupt_file_is_one_line_error(rds: redis.Redis, tmp_path: Path) -> None:
    cli = typer.Typer()
    cli.command()(capture_command)
    db = tmp_path / "genesis.db"
    env = {"GENESIS_DATABASE_URL": f"sqlite:///{db}", "GENESIS_BROKER_URL": REDIS_URL, "GENESIS_REDIS_URL": REDIS_URL}
    result = CliRunner().invoke(cli, ["--source", str(tmp_path / "nope.mp4"), "--camera", "c1"], env=env)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [f"error: video file not found: {tmp_path / 'nope.mp4'}"]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    result = CliRunner().invoke(cli, ["--source", str(corrupt), "--camera", "c1"], env=env)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: cannot ")
    assert str(corrupt) in result.output
    with Repository(f"sqlite:///{db}") as repo:
        assert repo.runs() == []
    assert rds.dbsize() == 0

    result = CliRunner().invoke(cli, [], env=env)
    assert result.exit_code == 2
    assert result.output.startswith("error: give --source")


def test_launcher_captures_configured_cameras(rds: redis.Redis, tmp_path: Path, video: Path) -> None:
    """`python workers/capture.py --config FILE`: every camera with a source, to the end."""
    config = tmp_path / "settings.yaml"
    config.write_text(
        f"broker_url: {REDIS_URL}\nredis_url: {REDIS_URL}\ndatabase_url: sqlite:///{tmp_path / 'genesis.db'}\n"
        f"pipeline: {{frame_stride: 5}}\n"
        f"cameras:\n  - id: a\n    source: {video}\n  - id: b\n    source: {video}\n  - id: c\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    proc = subprocess.run(
        [sys.executable, "workers/capture.py", "--config", str(config), "--max-frames", "6"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = sorted(proc.stdout.strip().splitlines())
    assert len(lines) == 2
    for cam, line in zip("ab", lines, strict=True):
        assert line.startswith(f"camera {cam}: published 6, dropped 0 (backpressure), read 6, run ")
    messages = queued(rds, "detect")
    assert sum(len(m.args[0]) for m in messages) == 12
    assert {r.seq for m in messages for r in refs_of(m)} == {0, 5, 10, 15, 20, 25}
    with Repository(f"sqlite:///{tmp_path / 'genesis.db'}") as repo:
        assert sorted(r.camera_id for r in repo.runs()) == ["a", "b"]

    proc = subprocess.run(
        [sys.executable, "workers/capture.py", "--config", str(config), "--camera", "a", "--source", "/nope.mp4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: video file not found: /nope.mp4"]


@pytest.mark.parametrize(("read_s", "expected"), [(0.001, [8, 8, 8, 6]), (0.03, [1] * 30)])
def test_file_batches_only_when_reads_do_not_block(tmp_path: Path, read_s: float, expected: list[int]) -> None:
    """With detect messages waiting, a file read faster than real time goes out in batches; a
    source whose reads block (paced, like a camera) sends each frame at once: no added delay."""
    settings = make_settings(tmp_path)
    clock = [0.0]
    messages: list[tuple[list[FrameRef], int]] = []
    loop = CaptureLoop(
        settings, CameraConfig(id="file"), str(tmp_path / "clip.mp4"), MemoryFrameStore(64),
        lambda refs, run_id, prev: messages.append((refs, prev)), lambda: 3,  # messages are waiting
        end=lambda run_id, summary: None, repository=Repository(f"sqlite:///{tmp_path / 'g.db'}"),
        open_source=lambda source: _FakeLive(30, clock, read_s), clock=lambda: clock[0],
    )
    stats = loop.run()
    assert (stats.read, stats.published, stats.last_seq) == (30, 30, 29)
    assert [len(refs) for refs, _ in messages] == expected
    assert [prev for _, prev in messages] == [-1, *[refs[-1].seq for refs, _ in messages[:-1]]]
    assert [r.seq for refs, _ in messages for r in refs] == list(range(30))
