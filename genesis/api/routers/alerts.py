"""Alerts: list with filters (paginated), one alert with its delivery status, acknowledge."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from genesis.adapters.db.alerts import AlertStore
from genesis.api.deps import Operator, Services, Viewer
from genesis.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from genesis.api.params import CameraQ, LimitQ, OffsetQ, RunQ, ZoneQ, utc
from genesis.api.schemas import AlertKind, AlertOut, AlertPage
from genesis.api.services import alerts as svc

router = APIRouter(prefix="/api", tags=["alerts"], responses=ERROR_RESPONSES)

AlertPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="Alert id (as `genesis alerts` shows it).")]
KindQ = Annotated[AlertKind | None, Query(description="Alert rule.")]
AlertSinceQ = Annotated[datetime | None, Query(description="Raised at or after this time (ISO 8601; naive = UTC).")]
AlertUntilQ = Annotated[datetime | None, Query(description="Raised before this time (ISO 8601; naive = UTC).")]
AckQ = Annotated[bool | None, Query(description="Only acknowledged (true) or only open (false) alerts.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "No alert with this id."}}


def _store(s: Services) -> AlertStore:
    return AlertStore(s.repo.engine)


@router.get("/alerts", response_model=AlertPage, summary="Alerts, newest first, with filters")
def alerts(
    _key: Viewer,
    s: Services,
    camera: CameraQ = None,
    run: RunQ = None,
    kind: KindQ = None,
    zone: ZoneQ = None,
    since: AlertSinceQ = None,
    until: AlertUntilQ = None,
    acknowledged: AckQ = None,
    limit: LimitQ = 50,
    offset: OffsetQ = 0,
) -> AlertPage:
    f = svc.AlertFilter(camera=camera, run=run, kind=kind, zone=zone, since=utc(since, "since"),
                        until=utc(until, "until"), acknowledged=acknowledged)
    page = svc.alerts(_store(s), f, min(limit, s.settings.api.max_page), offset)
    return AlertPage.model_validate(page, from_attributes=True)


@router.get("/alerts/{alert_id}", response_model=AlertOut, summary="One alert with its delivery status",
            responses=NOT_FOUND)
def alert(alert_id: AlertPath, _key: Viewer, s: Services) -> AlertOut:
    return _found(svc.alert(_store(s), alert_id), alert_id)


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, summary="Acknowledge an alert (idempotent)",
             responses=NOT_FOUND)
def acknowledge(alert_id: AlertPath, _key: Operator, s: Services) -> AlertOut:
    return _found(svc.acknowledge(_store(s), alert_id), alert_id)


def _found(found: dict[str, Any] | None, alert_id: int) -> AlertOut:
    """The alert's document, or 404 when there is no such alert."""
    if found is None:
        raise ApiError(404, f"no alert with id {alert_id}")
    return AlertOut.model_validate(found)
