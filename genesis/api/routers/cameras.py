"""Cameras (configuration + database), live counts, the camera tile and the heatmap PNG."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from genesis.api.deps import Services, Viewer
from genesis.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from genesis.api.params import RunQ, SinceQ, TsFromQ, TsToQ, UntilQ, utc
from genesis.api.schemas import CameraOut, LiveCounts
from genesis.api.services import frames
from genesis.api.services import pipeline as pipeline_svc
from genesis.api.services.events import EventFilter
from genesis.config.cameras import CAMERA_ID_PATTERN, MAX_CAMERA_ID

router = APIRouter(prefix="/api/cameras", tags=["cameras"], responses=ERROR_RESPONSES)

CameraPath = Annotated[str, Path(max_length=MAX_CAMERA_ID, pattern=CAMERA_ID_PATTERN, description="Camera id.")]


def _known(s: Services, camera: str) -> None:
    if not any(c["id"] == camera for c in pipeline_svc.cameras(s.repo, s.settings)):
        raise ApiError(404, f"no camera {camera!r} (neither configured nor seen in a run)")


def _raw_ok(s: Services, camera: str) -> bool:
    """A raw frame of the frame store may be shown: the camera's privacy blur is off."""
    return s.settings.blur_mode(s.settings.camera(camera)) == "off"


@router.get("", response_model=list[CameraOut], summary="Cameras of the configuration and of the database")
def cameras(_key: Viewer, s: Services) -> list[CameraOut]:
    return [CameraOut.model_validate(c) for c in pipeline_svc.cameras(s.repo, s.settings)]


@router.get("/{camera}/live", response_model=LiveCounts, summary="Live counts of the camera's newest run",
            responses={404: {"model": ErrorResponse}})
def live(camera: CameraPath, _key: Viewer, s: Services) -> LiveCounts:
    _known(s, camera)
    return LiveCounts.model_validate(frames.live_counts(s.repo, camera))


@router.get(
    "/{camera}/frame.jpg",
    summary="Camera tile: the newest frame in the frame store with the stored sightings drawn, else a placeholder",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorResponse}},
)
def frame(camera: CameraPath, _key: Viewer, s: Services) -> Response:
    _known(s, camera)
    data, source = frames.camera_tile(s.repo, s.redis, camera, _raw_ok(s, camera))
    return Response(data, media_type="image/jpeg", headers={"X-Genesis-Frame-Source": source,
                                                             "Cache-Control": "no-store"})


@router.get(
    "/{camera}/heatmap.png",
    summary="Heatmap of the camera's stored sightings over runs and a time range",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorResponse}},
)
def heatmap(
    camera: CameraPath,
    _key: Viewer,
    s: Services,
    run: RunQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    ts_from: TsFromQ = None,
    ts_to: TsToQ = None,
) -> Response:
    f = EventFilter(camera=camera, run=run, since=utc(since, "since"), until=utc(until, "until"),
                    ts_from=ts_from, ts_to=ts_to)
    try:
        data = frames.heatmap_png(s.repo, s.redis, camera, f, s.settings.analytics.heatmap_cell_px,
                                  _raw_ok(s, camera))
    except frames.NoDataError as exc:
        raise ApiError(404, str(exc)) from None
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})
