"""Distributed alert delivery: real Celery workers (store and analytics queues), real Redis and
PostgreSQL, a real webhook receiver that fails each first attempt. A store task delivered twice
(a redelivery) still gets each alert to the receiver and to pub/sub exactly once."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import redis
import yaml
from celery import Celery

from genesis.adapters.db import Repository
from genesis.adapters.db.alerts import AlertStore
from genesis.domain.alerts import NO_TRACK, Alert, AlertKind, OccupancySample
from genesis.domain.codec import encode
from genesis.tasks import routing
from tests.integration.workers import fresh_postgres_database, workers
from tests.services import redis_url
from tests.webhook_receiver import webhook_receiver

BROKER = redis_url(10)
REDIS = redis_url(15)


def test_each_alert_reaches_the_receiver_and_pubsub_exactly_once(tmp_path: Path) -> None:
    for url in (BROKER, REDIS):
        redis.Redis.from_url(url).flushdb()
    subscriber = redis.Redis.from_url(REDIS).pubsub()
    subscriber.subscribe("genesis:alerts")
    with webhook_receiver(fail_first=True) as receiver, fresh_postgres_database() as pg:
        config = tmp_path / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "alerts": {"webhooks": [{"url": receiver.url}], "delivery": {"backoff_s": 0.2, "backoff_max_s": 1.0}},
            "cameras": [{"id": "cam"}],
        }))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
        env.update(GENESIS_CONFIG=str(config), GENESIS_DATABASE_URL=pg, GENESIS_BROKER_URL=BROKER,
                   GENESIS_REDIS_URL=REDIS)
        with Repository(pg) as repo:
            repo.start_run("r1", "cam", "clip.mp4", {})
            batch = [
                Alert("cam", AlertKind.CROWDING, "hall", NO_TRACK, 5, 0.5, 4.0, 2.0, "hall", None, "crowded"),
                Alert("cam", AlertKind.RESTRICTED, "vault", 7, 9, 0.9, 2.5, 2.0, "vault", None, "unknown in vault"),
                Alert("cam", AlertKind.WATCHLIST, "bob", 3, 9, 0.9, 1.0, 1.0, None, "bob", "bob seen"),
            ]
            samples = [OccupancySample("cam", "hall", 0, 1.5, 25, 10, 1_700_000_000.0)]
            args = ["r1", 1_700_000_000.0, [encode(a) for a in batch], [encode(s) for s in samples]]
            client = Celery(broker=BROKER)
            specs = [("store", "store", 1, "solo"), ("analytics", "analytics", 1, "prefork")]
            with workers(*specs, env=env, log_dir=tmp_path):
                client.send_task(routing.SAVE_ALERTS, args=args, queue="store")
                client.send_task(routing.SAVE_ALERTS, args=args, queue="store")  # redelivered
                receiver.wait_for(3, timeout=60)
                store = AlertStore(repo.engine)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    statuses = [d.status for d in store.deliveries()]
                    if statuses.count("delivered") == 6:
                        break
                    time.sleep(0.2)
                time.sleep(2.0)  # any duplicate delivery task would have posted by now
            client.close()
            stored = store.of_run("r1")
            assert len(stored) == 3 and len(store.samples("r1")) == 1
            keys = {a.key for a in stored}
            assert receiver.accepted() == dict.fromkeys(keys, 1)
            assert receiver.refused() == dict.fromkeys(keys, 1)
            deliveries = store.deliveries()
            assert [(d.status, d.attempts) for d in deliveries if d.target.startswith("webhook:")] == [
                ("delivered", 2)] * 3
            assert [d.status for d in deliveries if d.target == "pubsub:genesis:alerts"] == ["delivered"] * 3
    published = []
    while (msg := subscriber.get_message(timeout=1.0)) is not None:
        if msg["type"] == "message":
            published.append(json.loads(msg["data"])["id"])
    subscriber.close()
    assert sorted(published) == sorted(keys)
    for url in (BROKER, REDIS):
        redis.Redis.from_url(url).flushdb()
