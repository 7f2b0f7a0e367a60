"""Runs, tracks and sightings with filters, paginated (``limit``/``offset`` and a ``total``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends

from genesis.adapters.db import Repository
from genesis.api.deps import AppServices, Services, Viewer
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


def _filter(
    camera: CameraQ = None,
    run: RunQ = None,
    identity: NameQ = None,
    zone: ZoneQ = None,
    track: TrackQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    ts_from: TsFromQ = None,
    ts_to: TsToQ = None,
) -> svc.EventFilter:
    """The filter query parameters of tracks and sightings (one dependency, the same parameters)."""
    return svc.EventFilter(camera=camera, run=run, identity=identity, zone=zone, track=track,
                           since=utc(since, "since"), until=utc(until, "until"), ts_from=ts_from, ts_to=ts_to)


Filter = Annotated[svc.EventFilter, Depends(_filter)]


def _paging(default_limit: int) -> Callable[..., tuple[int, int]]:
    """``limit`` (default ``default_limit``) and ``offset`` as a dependency: declared after the filter,
    they stay last in the OpenAPI parameters, as they were."""
    def paging(limit: LimitQ = default_limit, offset: OffsetQ = 0) -> tuple[int, int]:
        return limit, offset
    return paging


def _filtered_page(
    read: Callable[[Repository, svc.EventFilter, int, int], svc.Page], s: AppServices, f: svc.EventFilter,
    paging: tuple[int, int],
) -> svc.Page:
    """The page ``read`` gives for the filter, with ``limit`` capped at ``api.max_page``."""
    limit, offset = paging
    return read(s.repo, f, min(limit, s.settings.api.max_page), offset)


@router.get("/tracks", response_model=TrackPage, summary="Tracks (people's passages) with filters")
def tracks(_key: Viewer, s: Services, f: Filter, paging: Annotated[tuple[int, int], Depends(_paging(50))]
           ) -> TrackPage:
    return TrackPage.model_validate(_filtered_page(svc.tracks, s, f, paging), from_attributes=True)


@router.get("/sightings", response_model=SightingPage,
            summary="Trajectory points of the tracks (sampled sightings: at most about one a second per track, "
                    "plus entries, exits, zone and line events and turns) with filters")
def sightings(_key: Viewer, s: Services, f: Filter, paging: Annotated[tuple[int, int], Depends(_paging(100))]
              ) -> SightingPage:
    return SightingPage.model_validate(_filtered_page(svc.sightings, s, f, paging), from_attributes=True)
