"""Runs, tracks and sightings with filters, paginated (``limit``/``offset`` and a ``total``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from genesis.api.deps import Services, Viewer
from genesis.api.errors import ERROR_RESPONSES
from genesis.api.params import (
    CameraQ,
    LimitQ,
    NameQ,
    OffsetQ,
    RunQ,
    SinceQ,
    TrackQ,
    TsFromQ,
    TsToQ,
    UntilQ,
    ZoneQ,
    utc,
)
from genesis.api.schemas import RunPage, SightingPage, TrackPage
from genesis.api.services import events as svc

router = APIRouter(prefix="/api", tags=["events"], responses=ERROR_RESPONSES)


@router.get("/runs", response_model=RunPage, summary="Runs, newest first")
def runs(_key: Viewer, s: Services, camera: CameraQ = None, limit: LimitQ = 50, offset: OffsetQ = 0) -> RunPage:
    page = svc.runs(s.repo, camera, min(limit, s.settings.api.max_page), offset)
    return RunPage.model_validate(page, from_attributes=True)


def _filter(camera: str | None, run: str | None, identity: str | None, zone: str | None, track: int | None,
            since: datetime | None, until: datetime | None, ts_from: float | None,
            ts_to: float | None) -> svc.EventFilter:
    return svc.EventFilter(camera=camera, run=run, identity=identity, zone=zone, track=track,
                           since=utc(since, "since"), until=utc(until, "until"), ts_from=ts_from, ts_to=ts_to)


@router.get("/tracks", response_model=TrackPage, summary="Tracks (people's passages) with filters")
def tracks(
    _key: Viewer,
    s: Services,
    camera: CameraQ = None,
    run: RunQ = None,
    identity: NameQ = None,
    zone: ZoneQ = None,
    track: TrackQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    ts_from: TsFromQ = None,
    ts_to: TsToQ = None,
    limit: LimitQ = 50,
    offset: OffsetQ = 0,
) -> TrackPage:
    f = _filter(camera, run, identity, zone, track, since, until, ts_from, ts_to)
    page = svc.tracks(s.repo, f, min(limit, s.settings.api.max_page), offset)
    return TrackPage.model_validate(page, from_attributes=True)


@router.get("/sightings", response_model=SightingPage, summary="Sightings (a track in a frame) with filters")
def sightings(
    _key: Viewer,
    s: Services,
    camera: CameraQ = None,
    run: RunQ = None,
    identity: NameQ = None,
    zone: ZoneQ = None,
    track: TrackQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    ts_from: TsFromQ = None,
    ts_to: TsToQ = None,
    limit: LimitQ = 100,
    offset: OffsetQ = 0,
) -> SightingPage:
    f = _filter(camera, run, identity, zone, track, since, until, ts_from, ts_to)
    page = svc.sightings(s.repo, f, min(limit, s.settings.api.max_page), offset)
    return SightingPage.model_validate(page, from_attributes=True)
