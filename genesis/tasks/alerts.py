"""Alert tasks: ``save_alerts`` (queue ``store``) stores a batch of alerts and baseline samples and
then enqueues ``deliver`` (queue ``analytics``) for each of them; ``deliver`` makes one attempt
at every target not yet delivered and retries itself with backoff and jitter (see genesis/services/alerts.py).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from genesis.adapters.db.alerts import AlertStore
from genesis.celery import app
from genesis.domain import Alert, FrameOutcome, OccupancySample
from genesis.domain.codec import decode, encode
from genesis.ops.metrics import count_alert
from genesis.services.alerts import RedisPublisher, deliver_once, retry_after
from genesis.tasks import routing, runtime
from genesis.tasks.base import PermanentError, PipelineTask, bad_input

log = logging.getLogger(__name__)


@cache
def _store() -> AlertStore:
    return AlertStore(runtime.repository().engine)


@cache
def _publisher() -> RedisPublisher | None:
    s = runtime.settings()
    return None if s.alerts.pubsub == "off" else RedisPublisher(s.redis_url)


_origins: dict[str, float] = {}


def run_time_origin(run_id: str) -> float:
    """The absolute time of frame ts 0 of a file source: the run's start (read once per process and run)."""
    if run_id not in _origins:
        run = runtime.repository().run(run_id)
        if len(_origins) > 256:
            _origins.clear()
        _origins[run_id] = run.started_at.timestamp() if run is not None else 0.0
    return _origins[run_id]


def send_alerts(run_id: str, time_origin: float, outcomes: list[FrameOutcome]) -> None:
    """From the sequencer: hand the alerts and samples of some frames to the store queue."""
    alerts = [encode(a) for o in outcomes for a in o.alerts]
    samples = [encode(s) for o in outcomes for s in o.samples]
    if alerts or samples:
        s = runtime.settings()
        app.send_task(routing.SAVE_ALERTS, args=[run_id, time_origin, alerts, samples],
                      queue=routing.queue_of(s, routing.SAVE_ALERTS))


@app.task(base=PipelineTask, name=routing.SAVE_ALERTS, bind=True)
def save_alerts(self: Any, run_id: str, time_origin: float, alerts: list[dict[str, Any]],
                samples: list[dict[str, Any]]) -> None:
    with bad_input("alerts"):
        decoded = [decode(Alert, a) for a in alerts]
        decoded_samples = [decode(OccupancySample, x) for x in samples]
        origin = float(time_origin)
    ids = _store().save(run_id, decoded, decoded_samples, origin)
    for alert in decoded:  # genesis_alerts_total{kind} (a redelivered batch counts again)
        count_alert(str(alert.kind))
    # Enqueued only once the rows are committed; a redelivered save enqueues again, and the
    # delivery bookkeeping makes the second task a no-op for what was delivered.
    s = runtime.settings()
    for alert_id in ids:
        app.send_task(routing.DELIVER_ALERT, args=[alert_id], queue=routing.queue_of(s, routing.DELIVER_ALERT))


@app.task(base=PipelineTask, name=routing.DELIVER_ALERT, bind=True)
def deliver(self: Any, alert_id: int) -> dict[str, int]:
    s = runtime.settings()
    with bad_input("alert id"):
        alert_id = int(alert_id)
    if self.request.retries == 0:
        _store().retry_failed(alert_id)  # a replayed dead letter tries the given-up targets again
    result = deliver_once(_store(), s, alert_id, _publisher())
    cfg = s.alerts.delivery
    if result.pending or result.busy:
        # busy: another attempt holds a claim (a duplicate task, or a worker that died mid-POST
        # whose lease will run out): look again later rather than leave it unfinished.
        raise self.retry(countdown=retry_after(result, cfg), max_retries=cfg.max_attempts * 4)
    if result.failed:
        raise PermanentError(f"alert {alert_id}: {result.failed} target(s) gave up after {cfg.max_attempts} attempts")
    return {"delivered": result.delivered}
