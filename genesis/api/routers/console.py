"""The operator's console: face crops (tracks, unknown clusters, enrolled photos), the review queue
and its actions (assign a face, merge clusters), the per-identity summary and the live view.

Face crops are biometric data: decrypted only to answer an authenticated caller, never cached
(`Cache-Control: no-store`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import Response

from genesis.api.deps import Operator, Services, Viewer
from genesis.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from genesis.api.params import LimitQ, OffsetQ
from genesis.api.routers.cameras import CameraPath, _known
from genesis.api.routers.faces import ClusterPath, RunPath, SegmentPath, TrackPath
from genesis.api.routers.identities import NamePath, key_error, store
from genesis.api.schemas import RejectIn
from genesis.api.schemas_console import (
    AssignIn,
    AssignOut,
    ClusterFacesOut,
    IdentitySummaryOut,
    IdentityTimelinePage,
    LiveFrameOut,
    MergeIn,
    MergeOut,
    PhotoPage,
    ReviewPage,
    SegmentRejectOut,
    UndoOut,
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


@router.get("/tracks/{run}/{track}/segments/{segment}/face.jpg",
            summary="One identity segment's best face (JPEG crop; never cached)",
            description="A track may be cut between people (identity segments): each segment has its own face.",
            response_class=Response, responses=JPEG)
def segment_face(run: RunPath, track: TrackPath, segment: SegmentPath, _key: Viewer, s: Services) -> Response:
    try:
        return _jpeg(review.track_crop(store(s), run, track, segment),
                     f"track {track} (segment {segment}) of run {run}")
    except BiometricKeyError as exc:
        raise key_error(exc) from None


@router.get("/tracks/{run}/{track}/face.jpg",
            summary="The face of a track's first segment that has one (JPEG; never cached)",
            description="A track cut between people has one face per segment: address the segment "
            "(`/tracks/{run}/{track}/segments/{segment}/face.jpg`); this is only its first.",
            response_class=Response, responses=JPEG)
def track_face(run: RunPath, track: TrackPath, _key: Viewer, s: Services) -> Response:
    with store(s)._read() as rows:
        found = rows.face_segments(run, track)
    return segment_face(run, track, found[0] if found else 0, _key, s)


@router.get("/photos/{photo}/face.jpg", summary="An enrolled face (JPEG crop; never cached)",
            response_class=Response, responses=JPEG)
def photo_face(photo: PhotoPath, _key: Viewer, s: Services) -> Response:
    try:
        return _jpeg(review.photo_crop(store(s), photo), f"photo {photo}")
    except BiometricKeyError as exc:
        raise key_error(exc) from None


@router.get("/identities/{name}/photos", response_model=PhotoPage,
            summary="A page of an identity's enrolled faces (kept photo crops, then faces enrolled from the console)",
            responses={404: {"model": ErrorResponse}})
def identity_photos(name: NamePath, _key: Viewer, s: Services, limit: LimitQ = 100, offset: OffsetQ = 0) -> PhotoPage:
    try:
        return PhotoPage.model_validate(svc.photos(store(s), name, min(limit, s.settings.api.max_page), offset))
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


@router.get("/identities/{name}/timeline", response_model=IdentityTimelinePage,
            summary="A page of an identity's timeline: one item per run it was seen in, newest first",
            description="Each item is the identity's entry of that run's `report.json`, its tracks and events with "
            "the faces of its own segments (as in the summary's `runs`); `total` counts the runs.",
            responses={404: {"model": ErrorResponse}})
def identity_timeline(name: NamePath, _key: Viewer, s: Services, limit: LimitQ = 20,
                      offset: OffsetQ = 0) -> IdentityTimelinePage:
    try:
        return IdentityTimelinePage.model_validate(
            svc.identity_timeline(s.repo, store(s), s.settings, name, min(limit, s.settings.api.max_page),
                                  offset))
    except svc.NotFoundError as exc:
        raise ApiError(404, str(exc)) from None


@router.get("/unknowns/{cluster}/faces", response_model=ClusterFacesOut,
            summary="The faces of an unknown cluster, most typical first", responses={404: {"model": ErrorResponse}})
def cluster_faces(cluster: ClusterPath, _key: Viewer, s: Services, limit: LimitQ = 12, offset: OffsetQ = 0,
                  sample: Annotated[bool, Query(description="A sample spread over all the faces (most typical "
                                                "first, least typical last) instead of a page.")] = False,
                  ) -> ClusterFacesOut:
    try:
        return ClusterFacesOut.model_validate(svc.cluster_faces(store(s), cluster, limit, offset, sample))
    except svc.NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None


@router.post("/unknowns/{cluster}/merge", response_model=MergeOut,
             summary="Merge two unknown clusters: the faces of this one join `into` (audited, undoable)",
             description="First and last seen of the result are the earliest and latest of the two. The answer's "
             "`entry` undoes it.", responses=CONFLICT)
def merge_clusters(cluster: ClusterPath, body: MergeIn, key: Operator, s: Services) -> MergeOut:
    try:
        done = review.merge_entry(store(s), cluster, body.into, identities_svc.actor_of(key))
    except IdentityError as exc:
        message = str(exc)
        raise ApiError(404 if message.startswith("no unknown face") else 409, message) from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None
    return MergeOut(cluster=body.into, merged=cluster, size=done.size, entry=done.entry, message=done.message)


@router.get("/review", response_model=ReviewPage,
            summary="Faces to review: recent unrecognised faces and names given with a low margin, newest first")
def review_queue(_key: Viewer, s: Services, limit: LimitQ = 50, offset: OffsetQ = 0) -> ReviewPage:
    return ReviewPage.model_validate(svc.review_page(store(s), s.settings, limit, offset))


def _assign_errors(exc: IdentityError) -> ApiError:
    message = str(exc)
    if "exists already" in message or "not kept" in message or "segments" in message:
        return ApiError(409, message)
    return ApiError(404, message)


@router.post("/tracks/{run}/{track}/segments/{segment}/assign", response_model=AssignOut,
             summary="This segment's face is NAME: it becomes an enrolled face of NAME (or of a new identity), "
             "the segment (only) gets the name (audited, undoable)",
             description="A face whose crop was not kept (blurred by the privacy settings) is refused (409): "
             "nobody could see it. The track's other segments are left as they are.", responses=CONFLICT)
def assign_segment(run: RunPath, track: TrackPath, segment: SegmentPath, body: AssignIn, key: Operator,
                   s: Services) -> AssignOut:
    try:
        check_name(body.name.strip())
    except IdentityError as exc:  # the name rule: 422 whatever it says
        raise ApiError(422, str(exc)) from None
    try:
        done = review.assign_segment(store(s), run, track, segment, body.name, identities_svc.actor_of(key),
                                     create=body.create, visible_only=True)
    except IdentityError as exc:
        raise _assign_errors(exc) from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None
    return AssignOut(run_id=run, track_id=track, segment=segment, identity=str(done.identity), entry=done.entry,
                     message=done.message)


@router.post("/tracks/{run}/{track}/assign", response_model=AssignOut,
             summary="Assign the face of a track that has one face segment (see `.../segments/{segment}/assign`)",
             description="A track cut into several identity segments is refused (409): say which segment.",
             responses=CONFLICT)
def assign(run: RunPath, track: TrackPath, body: AssignIn, key: Operator, s: Services) -> AssignOut:
    with store(s)._read() as rows:
        found = rows.face_segments(run, track)
    if not found:
        raise ApiError(404, f"track {track} of run {run} has no stored face")
    if len(found) > 1:
        raise ApiError(409, f"track {track} of run {run} is cut into {len(found)} identity segments "
                       f"({', '.join(map(str, found))}): assign one with /segments/{{segment}}/assign")
    return assign_segment(run, track, found[0], body, key, s)


@router.post("/tracks/{run}/{track}/segments/{segment}/reject", response_model=SegmentRejectOut,
             summary="\"Not this person\" on one segment: its face is never matched to the identity again, the "
             "segment loses the name, the others keep theirs (audited, undoable)", responses=CONFLICT)
def reject_segment(run: RunPath, track: TrackPath, segment: SegmentPath, key: Operator, s: Services,
                   body: Annotated[RejectIn | None, Body()] = None) -> SegmentRejectOut:
    identity = body.identity if body is not None else None
    try:
        done = review.reject_segment(store(s), run, track, segment, identities_svc.actor_of(key), identity)
    except IdentityError as exc:
        message = str(exc)
        raise ApiError(409 if "say which" in message else 404, message) from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None
    return SegmentRejectOut(run_id=run, track_id=track, segment=segment, identity=str(done.identity),
                            entry=done.entry, message=done.message)


@router.post("/audit/{entry}/undo", response_model=UndoOut,
             summary="Undo a review action (assign, reject, name, merge): its audited inverse",
             description="409 when the entry is not a review action, was undone already, or what it changed has "
             "changed since (for example the segment was named again).", responses=CONFLICT)
def undo(entry: Annotated[int, Path(ge=1, le=2**62, description="The action's audit entry id.")], key: Operator,
         s: Services) -> UndoOut:
    try:
        done = review.undo(store(s), entry, identities_svc.actor_of(key))
    except review.UndoError as exc:
        message = str(exc)
        raise ApiError(404 if message.startswith("no audit entry") else 409, message) from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None
    return UndoOut(undone=entry, entry=done.entry, message=done.message)


@router.get("/cameras/{camera}/live/frame", response_model=LiveFrameOut,
            summary="The camera's latest live frame and its JSON (boxes, track ids, names); marks it watched",
            description="Publishing happens only while someone polls this (`console.live_watch_s`); boxes are in "
            "the frame's pixels (`frame.width` x `frame.height`), drawn by the client. Never cached.",
            responses={404: {"model": ErrorResponse}})
def live_frame(camera: CameraPath, _key: Viewer, s: Services, response: Response) -> LiveFrameOut:
    _known(s, camera)
    response.headers.update(NO_STORE)
    return LiveFrameOut.model_validate(svc.live_frame(s.repo, s.redis, s.settings, camera))
