"""MQTT in the distributed mode: the ordered per-camera stage (the sequencer, on the recognize
queue) publishes, and a subscriber sees the same events and final state as from the embedded run of
the same clip (ids and run ids aside: they name the run), the same passage lifecycle and the same
snapshots; SIGKILL the worker that published and the broker says ``offline``. The camera blurs
every face: the snapshot the sequencer stores, the live frame it publishes and the MQTT snapshots
keep none."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
import yaml

from genesis.adapters.db import Repository
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.backends.faces import build_face_detector
from genesis.config import FaceDetectorConfig
from genesis.services.live import mark_watched, read_latest
from tests.integration.workers import fresh_postgres_database, workers
from tests.mqtt_broker import Broker, Subscriber
from tests.services import redis_url
from tests.walking_clip import walking_clip

BROKER = redis_url(12)
FRAMES = redis_url(13)
RUN_FIELDS = ("id", "run_id", "at")


def genesis(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, "-m", "genesis.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"genesis {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


PASSAGE_RUN_FIELDS = ("id", "run_id", "start_time", "end_time", "frame_time")


def passage(doc: dict[str, Any]) -> dict[str, Any]:
    """A passage without what names the run (its id is RUN-TRACK-SEGMENT; its times start at the
    run's own origin)."""
    assert doc["id"] == f"{doc['run_id']}-{doc['track_id']}-{doc['segment']}"
    out = {k: v for k, v in doc.items() if k not in PASSAGE_RUN_FIELDS}
    out["duration"] = None if doc["end_time"] is None else round(doc["end_time"] - doc["start_time"], 3)
    if out.get("snapshot"):
        out["snapshot"] = {k: v for k, v in out["snapshot"].items() if k != "frame_time"}
    return out


def comparable(msgs: list[Any]) -> list[tuple[str, Any]]:
    """Events, the lifecycle and states without what names the run; snapshots by their hash."""
    out: list[tuple[str, Any]] = []
    for m in msgs:
        if m.topic.endswith("/available") or m.topic.startswith("homeassistant/"):
            continue  # the embedded run says offline when it ends; a worker stays online
        if m.topic.endswith("/person/snapshot"):
            out.append((m.topic, hashlib.sha256(m.payload).hexdigest()))
        elif m.topic == "genesis/events":
            doc = m.json()
            out.append((m.topic, {"type": doc["type"], "before": passage(doc["before"]),
                                  "after": passage(doc["after"])}))
        elif "/event/" in m.topic or m.topic.endswith("/state"):
            doc = {k: v for k, v in m.json().items() if k not in RUN_FIELDS}
            out.append((m.topic, doc))
        else:
            out.append((m.topic, m.payload.decode()))
    return out


@pytest.mark.slow
def test_distributed_publishes_what_the_embedded_run_publishes(
        tmp_path: Path, models_dir: Path, data_dir: Path) -> None:
    clip = tmp_path / "walk.mp4"
    walking_clip(clip, [data_dir / "faces" / "known" / "daryl" / "daryl2.jpg",
                        data_dir / "faces" / "unknown" / "carell.jpg"], last_gap=False)
    broker = Broker(tmp_path).start()
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({
        "distributed": {"gap_timeout_s": 20},
        "mqtt": {"enabled": True, "port": broker.port},
        "privacy": {"blur_unenrolled_faces": True},
        "cameras": [{
            "id": "door",
            "blur_faces": "everyone",
            "zones": [{"name": "yard", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
            "lines": [{"name": "gate", "start": [0.5, 1.0], "end": [0.5, 0.0]}],
            "alerts": {"watchlist": ["daryl"], "rules": ["watchlist"]},
        }],
    }))
    known = data_dir / "faces" / "known" / "daryl"
    for url in (BROKER, FRAMES):
        redis.Redis.from_url(url).flushdb()
    try:
        with fresh_postgres_database() as pg:
            base = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
            base.update(GENESIS_CONFIG=str(config), GENESIS_MODELS_DIR=str(models_dir), GENESIS_BROKER_URL=BROKER,
                        GENESIS_REDIS_URL=FRAMES, COLUMNS="200")
            embedded = dict(base, GENESIS_DATABASE_URL=f"sqlite:///{tmp_path / 'embedded.db'}")
            distributed = dict(base, GENESIS_DATABASE_URL=pg)
            genesis(distributed, "db", "upgrade")
            for env in (embedded, distributed):
                genesis(env, "enroll", "daryl", str(known / "daryl1.jpg"), str(known / "daryl3.jpg"))

            sub = Subscriber(broker.port, ["genesis/#"])
            genesis(embedded, "run", "--source", str(clip), "--camera", "door")
            sub.wait_for(1, "/state", timeout=5)
            from_embedded = comparable(sub.messages)
            sub.close()

            sub = Subscriber(broker.port, ["genesis/#"])
            specs = [("detect", "detect", 2, "prefork"), ("recognize", "recognize", 1, "prefork"),
                     ("store", "store", 1, "solo"), ("analytics", "analytics", 1, "solo")]
            frames_redis = redis.Redis.from_url(FRAMES)
            mark_watched("door", 600, None, frames_redis)  # a browser watches: the sequencer publishes live frames
            with workers(*specs, env=distributed, log_dir=tmp_path) as started:
                out = genesis(distributed, "capture", "--source", str(clip), "--camera", "door")
                assert re.search(r"published (\d+), dropped 0", out), out
                genesis(distributed, "drain", "--timeout", "300")
                final = '"active":false'
                sub.wait_for(1, "/state", timeout=10)
                for _ in range(100):
                    if any(final in m.payload.decode() for m in sub.on("/state")):
                        break
                    time.sleep(0.1)
                # The recognize worker's pool child published (its connection said "online"); SIGKILL
                # the worker and the broker delivers its last will.
                assert [m.payload for m in sub.on("genesis/available") if not m.retain] == [b"online"]
                started[1].kill()
                for _ in range(100):
                    live_availability = [m.payload for m in sub.on("genesis/available") if not m.retain]
                    if len(live_availability) > 1:
                        break
                    time.sleep(0.1)
                assert live_availability == [b"online", b"offline"]
            # retained messages that the subscriber got on subscribing are the embedded run's: skip them
            from_distributed = comparable([m for m in sub.messages if not m.retain])
            shots = [m.payload for m in sub.messages if not m.retain and m.topic.endswith("/person/snapshot")]
            sub.close()
            # Privacy (blur_faces: everyone): the stored snapshot and the live frame keep no face.
            repo = Repository(pg)
            snap = AnalyticsStore(repo).snapshot("door")
            repo.close()
            live = read_latest("door", None, frames_redis)
            assert snap is not None and live is not None
            assert live.meta["persons"], "the clip ends with the stranger in view: his face was in the live frame"
            check = build_face_detector(FaceDetectorConfig(score_threshold=0.5, min_face_px=8), models_dir)
            assert len(shots) == 2  # daryl recognised, the stranger given up on: both blurred (everyone)
            for jpeg in (snap[0], live.jpeg, *shots):
                image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
                assert check.detect(image) == []
    finally:
        broker.stop()
        for url in (BROKER, FRAMES):
            redis.Redis.from_url(url).flushdb()
    kinds = {t.rsplit("/", 1)[1] for t, _ in from_embedded if "/event/" in t}
    assert kinds == {"zone_enter", "zone_exit", "line_cross", "recognised", "unknown_face", "alert"}
    assert {d["type"] for t, d in from_embedded if t == "genesis/events"} == {"new", "update", "end"}
    assert any(t.endswith("/person/snapshot") for t, _ in from_embedded)
    # Events and the passage lifecycle: exactly the same, in the same order.
    assert events(from_distributed) == events(from_embedded)
    # Retained state keeps only the latest value per topic while messages wait to be sent, so a
    # fast sequencer pass may skip intermediate values: the same values in order, the same last one.
    for topic in {t for t, _ in from_embedded if "/event/" not in t and t != "genesis/events"}:
        mine, theirs = values(from_distributed, topic), values(from_embedded, topic)
        assert mine and mine[-1] == theirs[-1], topic
        assert is_subsequence(mine, theirs), topic


def events(msgs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(t, d) for t, d in msgs if "/event/" in t or t == "genesis/events"]


def values(msgs: list[tuple[str, Any]], topic: str) -> list[Any]:
    return [d for t, d in msgs if t == topic]


def is_subsequence(short: list[Any], long: list[Any]) -> bool:
    it = iter(long)
    return all(any(x == y for y in it) for x in short)
