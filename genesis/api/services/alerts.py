"""Alerts with filters and offset pagination, one alert with its deliveries, acknowledge.

The queries read the tables of ``genesis/adapters/db/tables_alerts.py`` directly (as the events
service does) for the ``acknowledged`` filter and the ``total`` of a page; acknowledging goes
through `AlertStore.acknowledge` (first time only, so repeating it changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from genesis.adapters.db.alerts import AlertRecord, AlertStore, DeliveryRecord
from genesis.adapters.db.tables_alerts import AlertRow
from genesis.api.services.events import Page

_COLUMNS = (
    AlertRow.id, AlertRow.key, AlertRow.run_id, AlertRow.camera_id, AlertRow.kind, AlertRow.subject,
    AlertRow.track_id, AlertRow.seq, AlertRow.ts, AlertRow.at, AlertRow.zone, AlertRow.identity_name,
    AlertRow.value, AlertRow.threshold, AlertRow.message, AlertRow.created_at, AlertRow.acknowledged_at,
)


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """What the caller asks for; every field is optional."""

    camera: str | None = None
    run: str | None = None
    kind: str | None = None
    zone: str | None = None
    since: datetime | None = None
    """Alerts raised at or after this time (the alert's ``at``, UTC)."""
    until: datetime | None = None
    """Alerts raised before this time."""
    acknowledged: bool | None = None


def _where(query: Any, f: AlertFilter) -> Any:
    if f.camera is not None:
        query = query.where(AlertRow.camera_id == f.camera)
    if f.run is not None:
        query = query.where(AlertRow.run_id == f.run)
    if f.kind is not None:
        query = query.where(AlertRow.kind == f.kind)
    if f.zone is not None:
        query = query.where(AlertRow.zone == f.zone)
    if f.since is not None:
        query = query.where(AlertRow.at >= f.since)
    if f.until is not None:
        query = query.where(AlertRow.at < f.until)
    if f.acknowledged is True:
        query = query.where(AlertRow.acknowledged_at.is_not(None))
    elif f.acknowledged is False:
        query = query.where(AlertRow.acknowledged_at.is_(None))
    return query


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
    base = _where(select(*_COLUMNS), f)
    count = _where(select(func.count()).select_from(AlertRow), f)
    query = base.order_by(AlertRow.at.desc(), AlertRow.id.desc()).limit(limit).offset(offset)
    with store.engine.connect() as conn:
        total = int(conn.execute(count).scalar_one())
        rows = [AlertRecord(*r) for r in conn.execute(query)]
    return Page(_with_deliveries(store, rows), total, limit, offset)


def alert(store: AlertStore, alert_id: int) -> dict[str, Any] | None:
    record = store.get(alert_id)
    return None if record is None else _with_deliveries(store, [record])[0]


def acknowledge(store: AlertStore, alert_id: int) -> dict[str, Any] | None:
    """Acknowledge an alert (idempotent: the first acknowledgement's time is kept); None when unknown."""
    if not store.acknowledge(alert_id):
        return None
    return alert(store, alert_id)
