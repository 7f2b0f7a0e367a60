"""Faces seen by the cameras: unknown-face clusters (list, name), "not this person" on a track,
search by photo, and the identities audit log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, Path, Query, UploadFile

from genesis.api.deps import Admin, Operator, Services, Viewer
from genesis.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from genesis.api.params import LimitQ, OffsetQ
from genesis.api.routers.identities import UPLOAD_ERRORS, change_errors, face_models, key_error, read_upload, store
from genesis.api.schemas import (
    AuditOut,
    AuditPage,
    NameClusterIn,
    NamedOut,
    RejectIn,
    RejectOut,
    SearchHitOut,
    SearchOut,
    UnknownOut,
    UnknownPage,
)
from genesis.api.services import identities as svc
from genesis.api.services.console import face_url, segment_name, wall_time
from genesis.identities import review
from genesis.identities.crypto import BiometricKeyError
from genesis.identities.review import track_faces_of
from genesis.services.enroll import EnrollError

router = APIRouter(prefix="/api", tags=["faces"], responses=ERROR_RESPONSES)

ClusterPath = Annotated[str, Path(pattern=r"^unknown-[0-9]{1,9}$", description="Unknown cluster id (`unknown-N`).")]
RunPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Run id.")]
TrackPath = Annotated[int, Path(ge=0, le=2**62, description="Track id (within the run).")]
SegmentPath = Annotated[int, Path(ge=0, le=2**31, description="Identity segment of the track (0 = its first).")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}}


@router.get("/unknowns", response_model=UnknownPage, summary="Unknown-face clusters (people nobody enrolled)")
def list_unknowns(_key: Viewer, s: Services, limit: LimitQ = 100, offset: OffsetQ = 0) -> UnknownPage:
    try:
        found = svc.unknown_clusters(store(s))
    except BiometricKeyError as exc:
        raise key_error(exc) from None
    items = [UnknownOut(id=u.label, model=u.model, size=u.tracks, cameras=list(u.cameras), first_seen=u.first_seen,
                        last_seen=u.last_seen) for u in found[offset: offset + limit]]
    return UnknownPage(items=items, total=len(found), limit=limit, offset=offset)


@router.post("/unknowns/{cluster}/name", response_model=NamedOut,
             summary="Name an unknown cluster: its faces become the identity's, its segments get the name (audited)",
             description="An existing identity's name is refused (409) unless `merge` is true. A cluster with a face "
             "whose crop was not kept (blurred by the privacy settings) is refused (409): nobody saw that face. "
             "The answer's `entry` undoes it (`POST /api/audit/{entry}/undo`).",
             responses=NOT_FOUND)
def name_cluster(cluster: ClusterPath, body: NameClusterIn, key: Operator, s: Services) -> NamedOut:
    with change_errors():
        done = svc.name_cluster(store(s), cluster, body.name, body.merge, svc.actor_of(key))
    return NamedOut(cluster=cluster, name=body.name.strip(), tracks=done.size, entry=done.entry,
                    message=done.message)


@router.post("/tracks/{run}/{track}/reject", response_model=RejectOut,
             summary="\"Not this person\": the track's face is never matched to the identity again (audited)",
             responses=NOT_FOUND)
def reject_track(run: RunPath, track: TrackPath, key: Operator, s: Services,
                 body: Annotated[RejectIn | None, Body()] = None) -> RejectOut:
    identity = body.identity if body is not None else None
    with change_errors(invalid=False):
        name = svc.reject_track(store(s), run, track, identity, svc.actor_of(key))
    return RejectOut(run_id=run, track_id=track, identity=name)


@router.post("/search", response_model=SearchOut,
             summary="Search by photo: the tracks of its largest face across cameras and time, nearest first",
             description="Upload limits as for enrollment. Only tracks within `threshold` (cosine distance; "
             "default the model's recognition threshold) are returned. Audited (the photo's SHA-256 only).",
             responses=UPLOAD_ERRORS)
def search_photo(
    key: Viewer,
    s: Services,
    photo: Annotated[UploadFile, File(description="A photo of the person.")],
    top: Annotated[int, Form(ge=1, le=1000, description="At most this many tracks.")] = 20,
    threshold: Annotated[float | None, Form(gt=0.0, lt=2.0, allow_inf_nan=False,
                                            description="Cosine distance (default: the model's).")] = None,
) -> SearchOut:
    upload = read_upload(s, photo)
    face_detector, embedder = face_models(s)
    limit = threshold if threshold is not None else s.settings.recognition.embedder.cosine_threshold
    try:
        hits = svc.search_photo(store(s), s.settings, upload, face_detector, embedder, top, limit, svc.actor_of(key))
    except EnrollError as exc:
        raise ApiError(422, str(exc), code="no_face") from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None
    crops = track_faces_of(store(s), sorted({h.run_id for h in hits}))
    return SearchOut(model=embedder.model_name, threshold=limit, hits=[
        SearchHitOut(run_id=h.run_id, track_id=h.track_id, segment=h.segment,
                     label=segment_name(h.run_id, h.track_id, h.segment), camera_id=h.camera_id, ts=h.ts,
                     distance=h.distance, identity=h.identity, unknown=h.unknown,
                     face=face_url(h.run_id, h.track_id, h.segment)
                     if (c := crops.get((h.run_id, h.track_id, h.segment))) and c.has_crop else None,
                     seen_at=wall_time(c.started_at, h.ts) if c else None) for h in hits])


ActionQ = Annotated[str | None, Query(max_length=32, pattern=r"^[a-z-]+$",
                                     description="Only entries of this action (`assign`, `name`, `undo` ...).")]


@router.get("/audit", response_model=AuditPage, summary="The identities audit log, newest first (admin)")
def audit(_key: Admin, s: Services, limit: LimitQ = 100, offset: OffsetQ = 0, action: ActionQ = None) -> AuditPage:
    records, total, undone = svc.audit_page(store(s), limit, offset, action)
    return AuditPage(items=[AuditOut(id=r.id, at=r.at, actor=r.actor, action=r.action, target=r.target,
                                     detail=svc.public_detail(r.detail),
                                     undoable=r.action in review.UNDOABLE and "undo" in r.detail and r.id not in undone)
                            for r in records], total=total, limit=limit, offset=offset)
