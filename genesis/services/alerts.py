"""Alert delivery (Redis pub/sub and webhooks) and the glue that primes the alert stage.

One code path for both modes: :func:`deliver_once` makes one attempt at every target of one
stored alert that is not delivered yet, recording each attempt in ``alert_deliveries``; the
Celery task ``genesis.services.alerts.deliver`` (queue ``analytics``) and the embedded run's
:class:`BackgroundDeliverer` thread call it again with exponential backoff and full jitter
until every target is delivered or has used ``alerts.delivery.max_attempts``.

Exactly once per receiver: a target is claimed in the database before it is attempted (a
lease, so a duplicate task skips it and a dead worker's claim expires) and marked delivered
after a 2xx answer, so a redelivered task never POSTs an alert again after a success. Every
POST carries ``X-Genesis-Alert-Id`` (the same for every attempt) for receivers that want to
deduplicate the one case left: a worker killed between the receiver's 2xx and the database
write.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from genesis.adapters.db.alerts import AlertRecord, AlertStore
from genesis.config import Settings
from genesis.config.alerts import DeliveryConfig, WebhookConfig
from genesis.domain.alerts import Alert, OccupancySample
from genesis.stages.camera import CameraState

log = logging.getLogger(__name__)

ALERT_ID_HEADER = "X-Genesis-Alert-Id"
SIGNATURE_HEADER = "X-Genesis-Signature"
LEASE_MARGIN_S = 30.0


class Publisher(Protocol):
    def publish(self, channel: str, message: bytes) -> Any: ...


class DeliveryError(Exception):
    """One attempt failed; ``permanent`` when retrying cannot help (a 4xx answer)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    webhook: WebhookConfig | None = None
    channel: str | None = None


def targets_for(settings: Settings, alert: AlertRecord, pubsub: bool) -> list[Target]:
    """Where an alert goes: pub/sub (when on) and each webhook of ``alerts`` and of its camera."""
    out: list[Target] = []
    if pubsub:
        out.append(Target(f"pubsub:{settings.alerts.channel}", channel=settings.alerts.channel))
    camera = settings.camera(alert.camera_id)
    seen: set[str] = set()
    for hook in [*settings.alerts.webhooks, *camera.alerts.webhooks]:
        if hook.kinds is not None and alert.kind not in hook.kinds:
            continue
        name = f"webhook:{hook.url}"
        if name not in seen:
            seen.add(name)
            out.append(Target(name, webhook=hook))
    return out


def body_of(alert: AlertRecord) -> bytes:
    """The JSON body: the same bytes for every attempt and every target (signatures stay valid)."""
    return json.dumps(alert.payload(), sort_keys=True, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(hook: WebhookConfig, alert: AlertRecord, body: bytes, attempt: int) -> None:
    headers = {
        **hook.headers,
        "Content-Type": "application/json",
        "User-Agent": "genesis-alerts",
        ALERT_ID_HEADER: alert.key,
        "X-Genesis-Event": f"alert.{alert.kind}",
        "X-Genesis-Delivery-Attempt": str(attempt),
    }
    if hook.secret:
        headers[SIGNATURE_HEADER] = signature(hook.secret, body)
    request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 409, 425, 429)
        raise DeliveryError(f"HTTP {exc.code} from {hook.url}", permanent) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{hook.url}: {reason}") from None


def publish(publisher: Publisher, channel: str, alert: AlertRecord, body: bytes) -> None:
    try:
        publisher.publish(channel, body)
        publisher.publish(f"{channel}:{alert.camera_id}", body)
    except Exception as exc:  # redis errors: retried like a failed POST
        raise DeliveryError(f"pub/sub {channel}: {exc}") from None


def backoff_s(attempt: int, config: DeliveryConfig, rng: random.Random | None = None) -> float:
    """Wait before attempt ``attempt + 1``: ``backoff_s * 2**(attempt-1)`` capped at ``backoff_max_s``,
    jittered to a random value between half of it and all of it."""
    cap = min(config.backoff_max_s, config.backoff_s * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0.5 * cap, cap)


def retry_after(result: AttemptResult, config: DeliveryConfig, rng: random.Random | None = None) -> float:
    """When to look at an alert again: the backoff for a failed target; for a target claimed by
    someone else, a while (if that worker died, its lease will have run out)."""
    wait = backoff_s(max(1, result.attempt), config, rng)
    return wait if result.pending else max(wait, LEASE_MARGIN_S / 3)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    busy: int = 0
    """Targets being attempted by someone else (or by a worker that died: its lease runs out)."""
    attempt: int = 0
    """The highest attempt number made in this pass (drives the backoff)."""


def deliver_once(store: AlertStore, settings: Settings, alert_id: int, publisher: Publisher | None) -> AttemptResult:
    """One attempt at each target of an alert that is neither delivered, given up, nor claimed."""
    alert = store.get(alert_id)
    if alert is None:  # its run was deleted
        return AttemptResult()
    cfg = settings.alerts.delivery
    body = body_of(alert)
    highest = 0
    for target in targets_for(settings, alert, publisher is not None):
        timeout = target.webhook.timeout_s if target.webhook is not None else 5.0
        attempt = store.claim(alert_id, target.name, timeout + LEASE_MARGIN_S)
        if attempt is None:
            continue
        highest = max(highest, attempt)
        try:
            if target.webhook is not None:
                post_webhook(target.webhook, alert, body, attempt)
            elif publisher is not None and target.channel is not None:
                publish(publisher, target.channel, alert, body)
        except DeliveryError as exc:
            give_up = exc.permanent or attempt >= cfg.max_attempts
            log.warning("alert %s to %s, attempt %d: %s%s", alert.id, target.name, attempt, exc,
                        " (given up)" if give_up else "")
            store.finish_attempt(alert_id, target.name, str(exc), give_up)
        else:
            store.finish_attempt(alert_id, target.name, None, False)
    status = [d.status for d in store.deliveries([alert_id])]
    return AttemptResult(
        delivered=status.count("delivered"), failed=status.count("failed"), pending=status.count("pending"),
        busy=status.count("sending"), attempt=highest,
    )


class RedisPublisher:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)

    def publish(self, channel: str, message: bytes) -> Any:
        return self.client.publish(channel, message)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:
            return False


def embedded_publisher(settings: Settings) -> RedisPublisher | None:
    """pub/sub of an embedded run: on, off, or (auto) when Redis answers now."""
    mode = settings.alerts.pubsub
    if mode == "off":
        return None
    publisher = RedisPublisher(settings.redis_url)
    if mode == "auto" and not publisher.ping():
        log.info("alerts: Redis at %s does not answer; alerts are not published", settings.redis_url)
        return None
    return publisher


@dataclass(slots=True)
class DrainSummary:
    alerts: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0


class BackgroundDeliverer:
    """The embedded run's delivery worker: a thread that attempts each submitted alert, retries
    with backoff and jitter, and is drained (bounded by ``drain_timeout_s``) before the run exits."""

    def __init__(self, store: AlertStore, settings: Settings, publisher: Publisher | None,
                 rng: random.Random | None = None) -> None:
        self.store, self.settings, self.publisher = store, settings, publisher
        self.rng = rng or random.Random()
        self._heap: list[tuple[float, int, int]] = []  # (due monotonic time, attempt, alert id)
        self._cond = threading.Condition()
        self._busy = 0
        self._stop = False
        self._submitted: set[int] = set()
        self._thread = threading.Thread(target=self._loop, name="genesis-alerts", daemon=True)
        self._thread.start()

    def submit(self, alert_ids: Sequence[int]) -> None:
        with self._cond:
            for alert_id in alert_ids:
                if alert_id not in self._submitted:
                    self._submitted.add(alert_id)
                    heapq.heappush(self._heap, (time.monotonic(), 0, alert_id))
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout=wait)
                if self._stop:
                    return
                _, _, alert_id = heapq.heappop(self._heap)
                self._busy += 1
            try:
                result = deliver_once(self.store, self.settings, alert_id, self.publisher)
            except Exception:  # the database went away: try again later, like a failed POST
                log.exception("alert %s: delivery pass failed", alert_id)
                result = AttemptResult(pending=1, attempt=1)
            with self._cond:
                self._busy -= 1
                if result.pending or result.busy:
                    due = time.monotonic() + retry_after(result, self.settings.alerts.delivery, self.rng)
                    heapq.heappush(self._heap, (due, result.attempt, alert_id))
                self._cond.notify_all()

    def drain(self, timeout: float | None = None) -> DrainSummary:
        """Wait until every submitted alert is delivered or given up (or the timeout), then stop."""
        limit = self.settings.alerts.delivery.drain_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._cond:
            while (self._heap or self._busy) and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.01, min(0.5, deadline - time.monotonic())))
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        return self.summary()

    def summary(self) -> DrainSummary:
        ids = sorted(self._submitted)
        status = [d.status for d in self.store.deliveries(ids)] if ids else []
        return DrainSummary(alerts=len(ids), delivered=status.count("delivered"), failed=status.count("failed"),
                            pending=len(status) - status.count("delivered") - status.count("failed"))


def prime(state: CameraState, store: AlertStore, settings: Settings, time_origin: float) -> None:
    """Give a new camera state the stored baseline of its camera and the run's time origin."""
    stage = state.alerts
    if stage.anomaly_on:
        since = datetime.now(UTC) - timedelta(days=stage.config.anomaly.baseline_days)
        stage.prime(store.baseline(stage.camera_id, since), time_origin)
    else:
        stage.prime({}, time_origin)


class EmbeddedAlerts:
    """The alerts of one embedded run: stored with the run's rows, then handed to a
    :class:`BackgroundDeliverer` (started on the first alert), drained when the run ends."""

    def __init__(self, store: AlertStore, settings: Settings, run_id: str, time_origin: float) -> None:
        self.store, self.settings, self.run_id, self.time_origin = store, settings, run_id, time_origin
        self.deliverer: BackgroundDeliverer | None = None

    def save(self, alerts: Sequence[Alert], samples: Sequence[OccupancySample]) -> None:
        ids = self.store.save(self.run_id, alerts, samples, self.time_origin)
        if ids:
            if self.deliverer is None:
                self.deliverer = BackgroundDeliverer(self.store, self.settings, embedded_publisher(self.settings))
            self.deliverer.submit(ids)

    def drain(self, timeout: float | None = None) -> DrainSummary:
        return self.deliverer.drain(timeout) if self.deliverer is not None else DrainSummary()
