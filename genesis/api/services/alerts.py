"""Alerts with filters and offset pagination, one alert with its deliveries, acknowledge.

The queries are `AlertStore`'s (``genesis/adapters/db/alerts.py``: `AlertStore.page` for the
filters and the ``total`` of a page); acknowledging goes through `AlertStore.acknowledge` (first
time only, so repeating it changes nothing).
"""

from __future__ import annotations

from typing import Any

from genesis.adapters.db.alerts import AlertFilter, AlertRecord, AlertStore, DeliveryRecord
from genesis.api.services.events import Page

__all__ = ["AlertFilter", "acknowledge", "alert", "alert_item", "alerts"]


def _delivery(d: DeliveryRecord) -> dict[str, Any]:
    return {"target": d.target, "status": d.status, "attempts": d.attempts, "last_error": d.last_error,
            "delivered_at": d.delivered_at}


def alert_item(a: AlertRecord, deliveries: list[DeliveryRecord]) -> dict[str, Any]:
    """The API document of one alert (``AlertOut``)."""
    return {
        "id": a.id, "key": a.key, "run_id": a.run_id, "camera_id": a.camera_id, "kind": a.kind,
        "subject": a.subject, "zone": a.zone, "identity": a.identity,
        "track_id": None if a.track_id < 0 else a.track_id, "seq": a.seq, "ts": a.ts, "at": a.at,
        "value": a.value, "threshold": a.threshold, "message": a.message, "created_at": a.created_at,
        "acknowledged": a.acknowledged_at is not None, "acknowledged_at": a.acknowledged_at,
        "deliveries": [_delivery(d) for d in deliveries],
    }


def _with_deliveries(store: AlertStore, alerts: list[AlertRecord]) -> list[dict[str, Any]]:
    by_alert: dict[int, list[DeliveryRecord]] = {}
    if alerts:
        for d in store.deliveries([a.id for a in alerts]):
            by_alert.setdefault(d.alert_id, []).append(d)
    return [alert_item(a, by_alert.get(a.id, [])) for a in alerts]


def alerts(store: AlertStore, f: AlertFilter, limit: int, offset: int) -> Page:
    """Alerts newest first (by the time they were raised, then id), with the total that match."""
    rows, total = store.page(f, limit, offset)
    return Page(_with_deliveries(store, rows), total, limit, offset)


def alert(store: AlertStore, alert_id: int) -> dict[str, Any] | None:
    record = store.get(alert_id)
    return None if record is None else _with_deliveries(store, [record])[0]


def acknowledge(store: AlertStore, alert_id: int) -> dict[str, Any] | None:
    """Acknowledge an alert (idempotent: the first acknowledgement's time is kept); None when unknown."""
    if not store.acknowledge(alert_id):
        return None
    return alert(store, alert_id)
