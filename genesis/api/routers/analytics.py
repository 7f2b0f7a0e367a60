"""Analytics of one run (``run``, else the newest run of ``camera``): occupancy, crossings, dwell.

The rollups branch adds its hourly/daily series here (a new route over its own service).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from genesis.api.deps import AppServices, Services, Viewer
from genesis.api.errors import ERROR_RESPONSES, ApiError
from genesis.api.params import CameraQ, LineQ, RunQ, ZoneQ
from genesis.api.schemas import Crossings, Dwell, Occupancy
from genesis.api.services import analytics as svc
from genesis.api.services.events import latest_run

router = APIRouter(prefix="/api/analytics", tags=["analytics"], responses=ERROR_RESPONSES)


def _pick_run(s: AppServices, camera: str | None, run: str | None) -> tuple[str, str]:
    """(run id, camera id) of the run asked for."""
    if run is not None:
        rec = s.repo.run(run)
        if rec is None:
            raise ApiError(404, f"no run {run!r}")
        if camera is not None and rec.camera_id != camera:
            raise ApiError(404, f"run {run!r} is not a run of camera {camera!r}")
        return rec.run_id, rec.camera_id
    if camera is None:
        raise ApiError(422, "give camera or run", details=[{"field": "query.camera", "message": "camera or run"}])
    found = latest_run(s.repo, camera)
    if found is None:
        raise ApiError(404, f"no runs of camera {camera!r}")
    return found, camera


@router.get("/occupancy", response_model=Occupancy, summary="Occupancy series per zone (from zone events)")
def occupancy(
    _key: Viewer,
    s: Services,
    camera: CameraQ = None,
    run: RunQ = None,
    zone: ZoneQ = None,
    bucket_s: Annotated[
        float | None, Query(gt=0, le=86400, allow_inf_nan=False, description="Peak per bucket of this many s.")
    ] = None,
) -> Occupancy:
    run_id, _ = _pick_run(s, camera, run)
    return Occupancy.model_validate(svc.occupancy(s.repo, run_id, zone, bucket_s))


@router.get("/crossings", response_model=Crossings, summary="Line crossings per line and direction")
def crossings(_key: Viewer, s: Services, camera: CameraQ = None, run: RunQ = None, line: LineQ = None) -> Crossings:
    run_id, cam = _pick_run(s, camera, run)
    return Crossings.model_validate(svc.crossings(s.repo, s.settings, run_id, cam, line))


@router.get("/dwell", response_model=Dwell, summary="Dwell time statistics per zone (closed visits)")
def dwell(_key: Viewer, s: Services, camera: CameraQ = None, run: RunQ = None, zone: ZoneQ = None) -> Dwell:
    run_id, _ = _pick_run(s, camera, run)
    return Dwell.model_validate(svc.dwell(s.repo, run_id, zone))
