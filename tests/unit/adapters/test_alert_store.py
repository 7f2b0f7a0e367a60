"""Alert storage (idempotent writes, the baseline, delivery claims) on SQLite and PostgreSQL, and the
embedded delivery worker against a real local webhook receiver and real Redis pub/sub."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from genesis.adapters.db import NotFoundError, Repository
from genesis.adapters.db.alerts import AlertStore, alert_results
from genesis.config import load_settings
from genesis.domain.alerts import CAMERA_WIDE, NO_TRACK, Alert, AlertKind, OccupancySample, alert_key
from genesis.services.alerts import (
    ALERT_ID_HEADER,
    SIGNATURE_HEADER,
    BackgroundDeliverer,
    RedisPublisher,
    deliver_once,
    signature,
)
from tests.integration.workers import fresh_postgres_database
from tests.services import redis_url
from tests.webhook_receiver import webhook_receiver

PUBSUB = redis_url(6)  # pub/sub only: no keys
ORIGIN = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    if request.param == "sqlite":
        with Repository(f"sqlite:///{tmp_path / 'g.db'}") as r:
            yield r
        return
    with fresh_postgres_database() as url, Repository(url) as r:
        yield r


def alerts() -> list[Alert]:
    return [
        Alert("cam", AlertKind.CROWDING, "hall", NO_TRACK, 5, 0.5, 4.0, 2.0, "hall", None, "4 people in hall"),
        Alert("cam", AlertKind.LOITERING, "hall", 7, 9, 0.9, 61.0, 60.0, "hall", "ana", "ana loiters"),
        Alert("cam", AlertKind.WATCHLIST, "bob", 3, 9, 0.9, 1.0, 1.0, None, "bob", "bob seen"),
    ]


def sample(window: int, value: float, anomalous: bool = False, at: float = ORIGIN, zone: str = "hall",
           how: int = 10) -> OccupancySample:
    return OccupancySample("cam", zone, window, value, 25, how, at, anomalous)


def test_saving_twice_stores_each_alert_and_sample_once(repo: Repository) -> None:
    repo.start_run("r1", "cam", "clip.mp4", {})
    store = AlertStore(repo.engine)
    ids = store.save("r1", alerts(), [sample(0, 1.0), sample(1, 2.0)], ORIGIN)
    again = store.save("r1", alerts(), [sample(0, 1.0), sample(1, 2.0)], ORIGIN)  # a redelivered task
    assert ids == again and len(set(ids)) == 3
    stored = store.of_run("r1")
    assert [(a.kind, a.seq) for a in stored] == [("crowding", 5), ("loitering", 9), ("watchlist", 9)]
    assert stored[0].key == alert_key("r1", "crowding", "hall", NO_TRACK, 5)
    assert stored[1].at == datetime.fromtimestamp(ORIGIN + 0.9, UTC)
    assert [s.value for s in store.samples("r1")] == [1.0, 2.0]
    results = alert_results(store, "r1")
    assert results["count"] == 3 and results["by_kind"]["crowding"] == 1 and results["by_kind"]["anomaly"] == 0
    assert results["items"][0]["track_id"] is None and results["items"][1]["identity"] == "ana"
    with pytest.raises(NotFoundError):
        store.save("nope", alerts(), [], ORIGIN)
    with pytest.raises(ValueError, match="camera"):
        store.save("r1", [Alert("other", AlertKind.CROWDING, "x", NO_TRACK, 1, 0.0, 1, 1)], [], ORIGIN)
    repo.delete_run("r1")  # a failed run takes its alerts and samples with it
    assert store.of_run("r1") == [] and store.samples("r1") == []


def test_baseline_is_the_normal_recent_samples_per_zone_and_hour(repo: Repository) -> None:
    repo.start_run("r1", "cam", "clip.mp4", {})
    repo.start_run("r0", "cam", "old.mp4", {})
    store = AlertStore(repo.engine)
    store.save("r1", [], [sample(0, 1.0), sample(1, 2.0), sample(2, 3.0), sample(3, 30.0, anomalous=True),
                          sample(4, 5.0, how=11), sample(0, 0.5, zone=CAMERA_WIDE)], ORIGIN)
    store.save("r0", [], [sample(0, 100.0, at=ORIGIN - 90 * 86400)], ORIGIN)  # older than the window
    base = store.baseline("cam", datetime.fromtimestamp(ORIGIN - 56 * 86400, UTC))
    assert set(base) == {("hall", 10), ("hall", 11), (CAMERA_WIDE, 10)}
    hall = base[("hall", 10)]
    assert (hall.n, hall.mean, hall.std) == (3, pytest.approx(2.0), pytest.approx(1.0))
    assert store.baseline("other", datetime.fromtimestamp(0, UTC)) == {}


def test_a_delivery_is_claimed_by_one_attempt_at_a_time(repo: Repository) -> None:
    repo.start_run("r1", "cam", "clip.mp4", {})
    store = AlertStore(repo.engine)
    alert_id = store.save("r1", alerts()[:1], [], ORIGIN)[0]
    assert store.claim(alert_id, "webhook:x", 60) == 1
    assert store.claim(alert_id, "webhook:x", 60) is None  # someone is attempting it
    store.finish_attempt(alert_id, "webhook:x", "HTTP 500", give_up=False)
    assert store.claim(alert_id, "webhook:x", -1) == 2  # a lease that has already run out ...
    assert store.claim(alert_id, "webhook:x", 60) == 3  # ... is taken over (a worker died mid-POST)
    store.finish_attempt(alert_id, "webhook:x", None, give_up=False)
    assert store.claim(alert_id, "webhook:x", 60) is None  # delivered: never again
    (d,) = store.deliveries([alert_id])
    assert (d.status, d.attempts, d.last_error) == ("delivered", 3, None)
    assert store.acknowledge(alert_id) and not store.acknowledge(alert_id + 100)
    first = store.get(alert_id)
    assert first is not None and first.acknowledged_at is not None
    store.acknowledge(alert_id)
    assert store.get(alert_id) == first  # the first acknowledgement stays


def test_embedded_delivery_gets_each_alert_exactly_once_to_a_receiver_that_fails_first(tmp_path: Path) -> None:
    subscriber = redis.Redis.from_url(PUBSUB).pubsub()
    subscriber.subscribe("genesis:alerts")
    with webhook_receiver(fail_first=True) as receiver, Repository(f"sqlite:///{tmp_path / 'g.db'}") as repo:
        settings = load_settings(environ={
            "GENESIS_REDIS_URL": PUBSUB,
            "GENESIS_ALERTS__WEBHOOKS": json.dumps([{"url": receiver.url, "secret": "s3cret-key"}]),
            "GENESIS_ALERTS__DELIVERY__BACKOFF_S": "0.05",
        })
        repo.start_run("r1", "cam", "clip.mp4", {})
        store = AlertStore(repo.engine)
        ids = store.save("r1", alerts(), [], ORIGIN)
        publisher = RedisPublisher(PUBSUB)
        deliverer = BackgroundDeliverer(store, settings, publisher)
        deliverer.submit(ids)
        deliverer.submit(ids)  # submitted twice: still delivered once
        t0 = time.monotonic()
        summary = deliverer.drain(timeout=30)
        assert time.monotonic() - t0 < 10
        assert (summary.alerts, summary.delivered, summary.failed, summary.pending) == (3, 6, 0, 0)
        keys = {a.key for a in store.of_run("r1")}
        assert receiver.accepted() == dict.fromkeys(keys, 1)
        assert receiver.refused() == dict.fromkeys(keys, 1)  # each first attempt got HTTP 500
        ok = [r for r in receiver.requests if r.status == 200]
        assert all(r.headers["X-Genesis-Delivery-Attempt"] == "2" for r in ok)
        for r in ok:
            body = json.dumps(r.body, sort_keys=True, separators=(",", ":")).encode()
            assert r.headers[SIGNATURE_HEADER] == signature("s3cret-key", body)
            assert r.body["id"] == r.headers[ALERT_ID_HEADER]
        # Another pass over delivered alerts (a redelivered task) posts nothing.
        for alert_id in ids:
            assert deliver_once(store, settings, alert_id, publisher).delivered == 2
        assert sum(receiver.accepted().values()) == 3 and len(receiver.requests) == 6
    published = []
    deadline = time.monotonic() + 5
    while len(published) < 3 and time.monotonic() < deadline:
        msg = subscriber.get_message(timeout=0.5)
        if msg and msg["type"] == "message":
            published.append(json.loads(msg["data"])["id"])
    subscriber.close()
    assert sorted(published) == sorted(keys)


def test_a_receiver_that_refuses_with_4xx_is_given_up_at_once(tmp_path: Path) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[int] = []

    class Gone(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(1)
            self.send_response(410)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Repository(f"sqlite:///{tmp_path / 'g.db'}") as repo:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            settings = load_settings(environ={"GENESIS_ALERTS__WEBHOOKS": json.dumps([{"url": url}])})
            repo.start_run("r1", "cam", "clip.mp4", {})
            store = AlertStore(repo.engine)
            (alert_id,) = store.save("r1", alerts()[:1], [], ORIGIN)
            result = deliver_once(store, settings, alert_id, None)
            assert (result.failed, result.pending, len(hits)) == (1, 0, 1)
            assert store.deliveries([alert_id])[0].last_error is not None
            assert deliver_once(store, settings, alert_id, None).failed == 1 and len(hits) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_receiver_is_retried_then_given_up(tmp_path: Path) -> None:
    with Repository(f"sqlite:///{tmp_path / 'g.db'}") as repo:
        settings = load_settings(environ={
            "GENESIS_ALERTS__WEBHOOKS": json.dumps([{"url": "http://127.0.0.1:9/", "timeout_s": 1}]),
            "GENESIS_ALERTS__DELIVERY__MAX_ATTEMPTS": "3", "GENESIS_ALERTS__DELIVERY__BACKOFF_S": "0.01",
        })
        repo.start_run("r1", "cam", "clip.mp4", {})
        store = AlertStore(repo.engine)
        ids = store.save("r1", alerts()[:1], [], ORIGIN)
        deliverer = BackgroundDeliverer(store, settings, None)
        deliverer.submit(ids)
        summary = deliverer.drain(timeout=20)
        assert (summary.failed, summary.pending) == (1, 0)
        assert store.deliveries(ids)[0].attempts == 3


def test_the_stored_baseline_spans_runs_and_a_spike_in_a_later_run_alerts_once(repo: Repository) -> None:
    from genesis.stages.alerts import AlertStage
    from tests.unit.stages.test_alerts import _spike_run, camera

    settings = load_settings(environ={})
    cfg = {"sample_s": 10.0, "min_samples": 6, "camera_wide": False}
    store = AlertStore(repo.engine)
    since = datetime.fromtimestamp(ORIGIN - 56 * 86400, UTC)
    # Run 1 builds the baseline: no alert, and its samples are stored.
    repo.start_run("r1", "cam", "clip.mp4", {})
    first = AlertStage(settings.alerts, camera(rules=["anomaly"], anomaly=cfg))
    first.prime(store.baseline("cam", since), ORIGIN)
    alerts1, samples1 = _spike_run(first, [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
    hall1 = [s for s in samples1 if s.zone == "hall"]
    assert alerts1 == [] and [s.value for s in hall1] == [1.0, 2.0] * 4
    store.save("r1", alerts1, samples1, ORIGIN)
    # Run 2 starts from the stored baseline: normal windows raise nothing, a spike exactly one alert.
    repo.start_run("r2", "cam", "clip.mp4", {})
    second = AlertStage(settings.alerts, camera(rules=["anomaly"], anomaly=cfg))
    second.prime(store.baseline("cam", since), ORIGIN)
    assert second.baseline[("hall", hall1[0].hour_of_week)].n == 8
    alerts2, samples2 = _spike_run(second, [2.0, 1.0, 12.0, 1.0])
    assert [(a.kind, a.subject) for a in alerts2] == [(AlertKind.ANOMALY, "hall")]
    store.save("r2", alerts2, samples2, ORIGIN)
    assert [s.anomalous for s in store.samples("r2") if s.zone == "hall"] == [False, False, True, False]
    base = store.baseline("cam", since)[("hall", hall1[0].hour_of_week)]
    assert base.n == 11  # 8 + the 3 normal windows of run 2; the spike stays out


def test_a_claim_held_elsewhere_is_left_alone_until_its_lease_runs_out(tmp_path: Path) -> None:
    with webhook_receiver(fail_first=False) as receiver, Repository(f"sqlite:///{tmp_path / 'g.db'}") as repo:
        settings = load_settings(environ={"GENESIS_ALERTS__WEBHOOKS": json.dumps([{"url": receiver.url}])})
        repo.start_run("r1", "cam", "clip.mp4", {})
        store = AlertStore(repo.engine)
        (alert_id,) = store.save("r1", alerts()[:1], [], ORIGIN)
        target = f"webhook:{receiver.url}"
        assert store.claim(alert_id, target, 60) == 1  # another worker is posting it
        busy = deliver_once(store, settings, alert_id, None)
        assert (busy.busy, busy.pending, busy.delivered) == (1, 0, 0) and receiver.requests == []
        store.finish_attempt(alert_id, target, "worker died", give_up=False)
        assert store.claim(alert_id, target, -1) == 2  # ... and this one died mid-POST: its lease ran out
        done = deliver_once(store, settings, alert_id, None)
        assert (done.busy, done.delivered, done.attempt) == (0, 1, 3)
        assert sum(receiver.accepted().values()) == 1
