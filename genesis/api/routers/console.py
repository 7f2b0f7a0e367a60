"""The operator's console: face crops (tracks, unknown clusters, enrolled photos), the review queue
and its actions (assign a face, merge clusters), the per-identity summary and the live view.

Face crops are biometric data: decrypted only to answer an authenticated caller, never cached
(`Cache-Control: no-store`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from genesis.api.deps import Operator, Services, Viewer
from genesis.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from genesis.api.params import LimitQ, OffsetQ
from genesis.api.routers.cameras import CameraPath, _known
from genesis.api.routers.faces import ClusterPath, RunPath, TrackPath
from genesis.api.routers.identities import NamePath, key_error, store
from genesis.api.schemas_console import (
    AssignIn,
    AssignOut,
    ClusterFacesOut,
    IdentitySummaryOut,
    LiveFrameOut,
    MergeIn,
    MergeOut,
    PhotoOut,
    ReviewPage,
)
from genesis.api.services import console as svc
from genesis.api.services import identities as identities_svc
from genesis.identities import review
from genesis.identities.crypto import BiometricKeyError
from genesis.identities.store import IdentityError, check_name

router = APIRouter(prefix="/api", tags=["console"], responses=ERROR_RESPONSES)

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
JPEG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorResponse},
                                         503: {"model": ErrorResponse}}
CONFLICT: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}}
PhotoPath = Annotated[int, Path(ge=1, le=2**31, description="Enrolled photo id (`/api/identities/{name}/photos`).")]


def _jpeg(data: bytes | None, what: str) -> Response:
    if data is None:
        raise ApiError(404, f"no face kept for {what}")
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


@router.get("/tracks/{run}/{track}/face.jpg", summary="A track's best face (JPEG crop; never cached)",
            response_class=Response, responses=JPEG)
def track_face(run: RunPath, track: TrackPath, _key: Viewer, s: Services) -> Response:
    try:
        return _jpeg(review.track_crop(store(s), run, track), f"track {track} of run {run}")
    except BiometricKeyError as exc:
        raise key_error(exc) from None


@router.get("/photos/{photo}/face.jpg", summary="An enrolled face (JPEG crop; never cached)",
            response_class=Response, responses=JPEG)
def photo_face(photo: PhotoPath, _key: Viewer, s: Services) -> Response:
    try:
        return _jpeg(review.photo_crop(store(s), photo), f"photo {photo}")
    except BiometricKeyError as exc:
        raise key_error(exc) from None


@router.get("/identities/{name}/photos", response_model=list[PhotoOut], summary="An identity's enrolled faces",
            responses={404: {"model": ErrorResponse}})
def identity_photos(name: NamePath, _key: Viewer, s: Services) -> list[PhotoOut]:
    try:
        return [PhotoOut(**p) for p in svc.photos(store(s), name)]
    except svc.NotFoundError as exc:
        raise ApiError(404, str(exc)) from None


@router.get("/identities/{name}/summary", response_model=IdentitySummaryOut,
            summary="An identity across runs: visits, dwell per zone, crossings, cameras, first/last seen, timeline",
            description="Each run's entry is the identity's entry of that run's `report.json`; the totals are "
            "their sums (the newest 50 runs).", responses={404: {"model": ErrorResponse}})
def identity_summary(name: NamePath, _key: Viewer, s: Services) -> IdentitySummaryOut:
    try:
        return IdentitySummaryOut.model_validate(svc.identity_summary(s.repo, store(s), s.settings, name))
    except svc.NotFoundError as exc:
        raise ApiError(404, str(exc)) from None


@router.get("/unknowns/{cluster}/faces", response_model=ClusterFacesOut,
            summary="The faces of an unknown cluster, most typical first", responses={404: {"model": ErrorResponse}})
def cluster_faces(cluster: ClusterPath, _key: Viewer, s: Services, limit: LimitQ = 12) -> ClusterFacesOut:
    try:
        return ClusterFacesOut.model_validate(svc.cluster_faces(store(s), cluster, limit))
    except svc.NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None


@router.post("/unknowns/{cluster}/merge", response_model=MergeOut,
             summary="Merge two unknown clusters: the faces of this one join `into` (audited)", responses=CONFLICT)
def merge_clusters(cluster: ClusterPath, body: MergeIn, key: Operator, s: Services) -> MergeOut:
    try:
        size = review.merge_clusters(store(s), cluster, body.into, identities_svc.actor_of(key))
    except IdentityError as exc:
        message = str(exc)
        raise ApiError(404 if message.startswith("no unknown face") else 409, message) from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None
    return MergeOut(cluster=body.into, merged=cluster, size=size)


@router.get("/review", response_model=ReviewPage,
            summary="Faces to review: recent unrecognised faces and names given with a low margin, newest first")
def review_queue(_key: Viewer, s: Services, limit: LimitQ = 50, offset: OffsetQ = 0) -> ReviewPage:
    return ReviewPage.model_validate(svc.review_page(store(s), s.settings, limit, offset))


@router.post("/tracks/{run}/{track}/assign", response_model=AssignOut,
             summary="This track's face is NAME: it becomes an enrolled face of NAME (or of a new identity), "
             "the track gets the name (audited)", responses=CONFLICT)
def assign(run: RunPath, track: TrackPath, body: AssignIn, key: Operator, s: Services) -> AssignOut:
    try:
        check_name(body.name.strip())
    except IdentityError as exc:  # the name rule: 422 whatever it says
        raise ApiError(422, str(exc)) from None
    try:
        name = review.assign_face(store(s), run, track, body.name, identities_svc.actor_of(key), create=body.create)
    except IdentityError as exc:
        message = str(exc)
        raise ApiError(409 if "exists already" in message else 404, message) from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None
    return AssignOut(run_id=run, track_id=track, identity=name)


@router.get("/cameras/{camera}/live/frame", response_model=LiveFrameOut,
            summary="The camera's latest live frame and its JSON (boxes, track ids, names); marks it watched",
            description="Publishing happens only while someone polls this (`console.live_watch_s`); boxes are in "
            "the frame's pixels (`frame.width` x `frame.height`), drawn by the client. Never cached.",
            responses={404: {"model": ErrorResponse}})
def live_frame(camera: CameraPath, _key: Viewer, s: Services, response: Response) -> LiveFrameOut:
    _known(s, camera)
    response.headers.update(NO_STORE)
    return LiveFrameOut.model_validate(svc.live_frame(s.repo, s.redis, s.settings, camera))
