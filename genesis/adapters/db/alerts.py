"""Queries of the alert tables: idempotent writes of alerts and baseline samples, the baseline,
listing and acknowledging alerts, and the delivery bookkeeping (claim, delivered, failed).

Writes follow the repository's rules: one short transaction, ``INSERT ... ON CONFLICT DO
NOTHING`` on the natural key, so a retried or redelivered store task adds nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update

from genesis.adapters.db.repository import WRITE_TRANSACTION, NotFoundError, dialect_insert
from genesis.adapters.db.tables import Run, utcnow
from genesis.adapters.db.tables_alerts import AlertDeliveryRow, AlertRow, OccupancySampleRow
from genesis.domain.alerts import Alert, OccupancySample, alert_key
from genesis.domain.stats import Welford


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A stored alert."""

    id: int
    key: str
    run_id: str
    camera_id: str
    kind: str
    subject: str
    track_id: int
    seq: int
    ts: float
    at: datetime
    zone: str | None
    identity: str | None
    value: float
    threshold: float
    message: str
    created_at: datetime
    acknowledged_at: datetime | None

    def payload(self) -> dict[str, Any]:
        """The JSON document published and POSTed for this alert (docs/alerts.md)."""
        return {
            "id": self.key,
            "alert_id": self.id,
            "kind": self.kind,
            "camera_id": self.camera_id,
            "run_id": self.run_id,
            "zone": self.zone,
            "identity": self.identity,
            "track_id": None if self.track_id < 0 else self.track_id,
            "seq": self.seq,
            "ts": self.ts,
            "at": self.at.isoformat(),
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    alert_id: int
    target: str
    status: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


_ALERT_COLUMNS = (
    AlertRow.id, AlertRow.key, AlertRow.run_id, AlertRow.camera_id, AlertRow.kind, AlertRow.subject,
    AlertRow.track_id, AlertRow.seq, AlertRow.ts, AlertRow.at, AlertRow.zone, AlertRow.identity_name,
    AlertRow.value, AlertRow.threshold, AlertRow.message, AlertRow.created_at, AlertRow.acknowledged_at,
)


def _record(row: Any) -> AlertRecord:
    return AlertRecord(*row)


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


def _epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class AlertStore:
    """Alert queries on the engine of a `Repository` (``AlertStore(repo.engine)``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _write(self) -> Any:
        return self.engine.connect().execution_options(**{WRITE_TRANSACTION: True})

    # -- writes ---------------------------------------------------------------------------------

    def save(self, run_id: str, alerts: Sequence[Alert], samples: Sequence[OccupancySample],
             time_origin: float) -> list[int]:
        """Store alerts and baseline samples of a run (one transaction, idempotent).

        ``time_origin`` is the absolute time of frame ts 0 for file sources (the alert's ``at``).
        Returns the ids of the run's alerts in this batch, whether inserted now or before.
        """
        if not alerts and not samples:
            return []
        now = utcnow()
        with self._write() as conn, conn.begin():
            camera = conn.execute(select(Run.camera_id).where(Run.id == run_id)).scalar_one_or_none()
            if camera is None:
                raise NotFoundError(f"unknown run {run_id}")
            for item_camera in [*(a.camera_id for a in alerts), *(s.camera_id for s in samples)]:
                if item_camera != camera:
                    raise ValueError(f"run {run_id} belongs to camera {camera!r}, got an alert of {item_camera!r}")
            keys = []
            if alerts:
                rows = []
                for a in alerts:
                    key = alert_key(run_id, a.kind.value, a.subject, a.track_id, a.seq)
                    keys.append(key)
                    at = a.ts if a.ts >= 1e9 else time_origin + a.ts
                    rows.append({
                        "key": key, "run_id": run_id, "camera_id": a.camera_id, "kind": a.kind.value,
                        "subject": a.subject, "track_id": int(a.track_id), "seq": int(a.seq), "ts": float(a.ts),
                        "at": _epoch(at), "zone": a.zone, "identity_name": a.identity, "value": float(a.value),
                        "threshold": float(a.threshold), "message": a.message, "created_at": now,
                        "acknowledged_at": None,
                    })
                conn.execute(dialect_insert(conn, AlertRow).on_conflict_do_nothing(
                    index_elements=[AlertRow.run_id, AlertRow.kind, AlertRow.subject, AlertRow.track_id,
                                    AlertRow.seq]), rows)
            if samples:
                conn.execute(
                    dialect_insert(conn, OccupancySampleRow).on_conflict_do_nothing(
                        index_elements=[OccupancySampleRow.run_id, OccupancySampleRow.zone,
                                        OccupancySampleRow.window_index]),
                    [{"run_id": run_id, "zone": s.zone, "window_index": int(s.window), "camera_id": s.camera_id,
                      "hour_of_week": int(s.hour_of_week), "at": _epoch(s.at), "value": float(s.value),
                      "frames": int(s.frames), "anomalous": bool(s.anomalous)} for s in samples],
                )
            if not keys:
                return []
            ids = dict(conn.execute(select(AlertRow.key, AlertRow.id).where(AlertRow.key.in_(keys))).all())
        return [ids[k] for k in keys]

    def acknowledge(self, alert_id: int) -> bool:
        """Mark an alert acknowledged (the first time only); False when there is no such alert."""
        with self._write() as conn, conn.begin():
            exists = conn.execute(select(AlertRow.id).where(AlertRow.id == alert_id)).scalar_one_or_none()
            if exists is None:
                return False
            conn.execute(update(AlertRow).where(AlertRow.id == alert_id, AlertRow.acknowledged_at.is_(None))
                         .values(acknowledged_at=utcnow()))
        return True

    # -- baseline -------------------------------------------------------------------------------

    def baseline(self, camera_id: str, since: datetime) -> dict[tuple[str, int], Welford]:
        """The rolling baseline of a camera: per (zone, hour of week), the normal samples since ``since``."""
        query = (
            select(OccupancySampleRow.zone, OccupancySampleRow.hour_of_week, func.count(),
                   func.sum(OccupancySampleRow.value), func.sum(OccupancySampleRow.value * OccupancySampleRow.value))
            .where(OccupancySampleRow.camera_id == camera_id, OccupancySampleRow.at >= since,
                   OccupancySampleRow.anomalous.is_(False))
            .group_by(OccupancySampleRow.zone, OccupancySampleRow.hour_of_week)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {(zone, int(how)): Welford.from_sums(int(n), float(s), float(sq)) for zone, how, n, s, sq in rows}

    def samples(self, run_id: str) -> list[OccupancySample]:
        """A run's baseline samples by (window, zone)."""
        query = select(
            OccupancySampleRow.camera_id, OccupancySampleRow.zone, OccupancySampleRow.window_index,
            OccupancySampleRow.value, OccupancySampleRow.frames, OccupancySampleRow.hour_of_week,
            OccupancySampleRow.at, OccupancySampleRow.anomalous,
        ).where(OccupancySampleRow.run_id == run_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = [OccupancySample(cam, zone, int(w), float(v), int(f), int(h), at.timestamp(), bool(an))
               for cam, zone, w, v, f, h, at, an in rows]
        return sorted(out, key=lambda s: (s.window, s.zone))

    # -- reads ----------------------------------------------------------------------------------

    def get(self, alert_id: int) -> AlertRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_ALERT_COLUMNS).where(AlertRow.id == alert_id)).one_or_none()
        return None if row is None else _record(row)

    def of_run(self, run_id: str) -> list[AlertRecord]:
        """A run's alerts in stream order: (seq, kind, subject, track_id)."""
        with self.engine.connect() as conn:
            rows = [_record(r) for r in conn.execute(select(*_ALERT_COLUMNS).where(AlertRow.run_id == run_id))]
        return sorted(rows, key=lambda a: (a.seq, a.kind, a.subject, a.track_id))

    def query(self, camera_id: str | None = None, kind: str | None = None, since: datetime | None = None,
              until: datetime | None = None, limit: int | None = 100) -> list[AlertRecord]:
        """Alerts, newest first (by absolute time, then id)."""
        q = _where(select(*_ALERT_COLUMNS), AlertFilter(camera=camera_id, kind=kind, since=since, until=until))
        q = q.order_by(AlertRow.at.desc(), AlertRow.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(q)]

    def page(self, f: AlertFilter, limit: int, offset: int) -> tuple[list[AlertRecord], int]:
        """One page of the alerts that match, newest first (by the time they were raised, then id),
        and how many match in all."""
        count = _where(select(func.count()).select_from(AlertRow), f)
        query = _where(select(*_ALERT_COLUMNS), f).order_by(AlertRow.at.desc(), AlertRow.id.desc())
        with self.engine.connect() as conn:
            total = int(conn.execute(count).scalar_one())
            rows = [_record(r) for r in conn.execute(query.limit(limit).offset(offset))]
        return rows, total

    # -- delivery -------------------------------------------------------------------------------

    def claim(self, alert_id: int, target: str, lease_s: float) -> int | None:
        """Take one delivery attempt of an alert to a target; the attempt number, or None when it
        is delivered, given up, or being attempted by someone else (whose lease has not expired)."""
        now = utcnow()
        with self._write() as conn, conn.begin():
            conn.execute(
                dialect_insert(conn, AlertDeliveryRow).on_conflict_do_nothing(
                    index_elements=[AlertDeliveryRow.alert_id, AlertDeliveryRow.target]),
                {"alert_id": alert_id, "target": target, "status": "pending", "attempts": 0, "lease_until": None,
                 "last_error": None, "updated_at": now, "delivered_at": None},
            )
            claimed = conn.execute(
                update(AlertDeliveryRow)
                .where(AlertDeliveryRow.alert_id == alert_id, AlertDeliveryRow.target == target,
                       (AlertDeliveryRow.status == "pending")
                       | ((AlertDeliveryRow.status == "sending") & (AlertDeliveryRow.lease_until < now)))
                .values(status="sending", attempts=AlertDeliveryRow.attempts + 1,
                        lease_until=now + timedelta(seconds=lease_s), updated_at=now)
            )
            if claimed.rowcount != 1:
                return None
            attempts: int = conn.execute(
                select(AlertDeliveryRow.attempts)
                .where(AlertDeliveryRow.alert_id == alert_id, AlertDeliveryRow.target == target)).scalar_one()
        return attempts

    def finish_attempt(self, alert_id: int, target: str, error: str | None, give_up: bool) -> None:
        """Record the outcome of a claimed attempt: delivered (no error), pending again, or failed."""
        now = utcnow()
        status = "delivered" if error is None else ("failed" if give_up else "pending")
        with self._write() as conn, conn.begin():
            conn.execute(
                update(AlertDeliveryRow)
                .where(AlertDeliveryRow.alert_id == alert_id, AlertDeliveryRow.target == target,
                       AlertDeliveryRow.status == "sending")
                .values(status=status, lease_until=None, last_error=None if error is None else error[:500],
                        updated_at=now, delivered_at=now if error is None else None)
            )

    def retry_failed(self, alert_id: int) -> None:
        """Make the given-up targets of an alert pending again (a replayed dead letter)."""
        with self._write() as conn, conn.begin():
            conn.execute(update(AlertDeliveryRow)
                         .where(AlertDeliveryRow.alert_id == alert_id, AlertDeliveryRow.status == "failed")
                         .values(status="pending", attempts=0, updated_at=utcnow()))

    def deliveries(self, alert_ids: Sequence[int] | None = None) -> list[DeliveryRecord]:
        q = select(AlertDeliveryRow.alert_id, AlertDeliveryRow.target, AlertDeliveryRow.status,
                   AlertDeliveryRow.attempts, AlertDeliveryRow.last_error, AlertDeliveryRow.delivered_at)
        if alert_ids is not None:
            q = q.where(AlertDeliveryRow.alert_id.in_(list(alert_ids)))
        with self.engine.connect() as conn:
            rows = [DeliveryRecord(*r) for r in conn.execute(q)]
        return sorted(rows, key=lambda d: (d.alert_id, d.target))


def alert_results(store: AlertStore, run_id: str) -> dict[str, Any]:
    """The ``alerts`` part of report.json ``results``, from the stored rows."""
    from genesis.config.alerts import ALERT_KINDS

    alerts = store.of_run(run_id)
    by_kind = {k: sum(1 for a in alerts if a.kind == k) for k in ALERT_KINDS}
    return {
        "count": len(alerts),
        "by_kind": by_kind,
        "items": [
            {
                "kind": a.kind,
                "zone": a.zone,
                "identity": a.identity,
                "track_id": None if a.track_id < 0 else a.track_id,
                "seq": a.seq,
                "ts": round(a.ts, 3),
                "value": a.value,
                "threshold": a.threshold,
                "message": a.message,
            }
            for a in alerts
        ],
    }
