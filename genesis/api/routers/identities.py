"""Identities: list, enroll by photo upload, rename, forget."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, UploadFile
from fastapi.responses import Response

from genesis.api.deps import Admin, Operator, Services, Viewer
from genesis.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from genesis.api.params import SafeText
from genesis.api.schemas import EnrollOut, IdentityOut, RenameIn
from genesis.api.services import identities as svc
from genesis.enroll import EnrollError
from genesis.weights import WeightsError

router = APIRouter(prefix="/api/identities", tags=["identities"], responses=ERROR_RESPONSES)

NamePath = Annotated[SafeText, Path(min_length=1, max_length=128, description="Identity name.")]


@router.get("", response_model=list[IdentityOut], summary="Enrolled identities")
def list_identities(_key: Viewer, s: Services) -> list[IdentityOut]:
    return [IdentityOut(**row) for row in svc.list_identities(s.repo)]


@router.post(
    "",
    response_model=EnrollOut,
    status_code=201,
    summary="Enroll an identity from one or several photos (multipart)",
    responses={413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
def enroll(
    _key: Operator,
    s: Services,
    name: Annotated[SafeText, Form(min_length=1, max_length=128, description="Identity name.")],
    photos: Annotated[list[UploadFile], File(description="Photos of the person (the largest face of each).")],
) -> EnrollOut:
    cfg = s.settings.api
    if not photos:
        raise ApiError(422, "give at least one photo")
    if len(photos) > cfg.max_photos:
        raise ApiError(413, f"too many photos: at most {cfg.max_photos} per request")
    uploads = []
    for photo in photos:
        label = photo.filename or "photo"
        ctype = (photo.content_type or "").split(";")[0].strip().lower()
        if ctype not in cfg.upload_types:
            raise ApiError(415, f"{label}: unsupported type {ctype or '(none)'}; accepted: "
                           f"{', '.join(cfg.upload_types)}")
        data = photo.file.read(cfg.max_upload_bytes + 1)
        if len(data) > cfg.max_upload_bytes:
            raise ApiError(413, f"{label}: larger than {cfg.max_upload_bytes} bytes")
        if not data:
            raise ApiError(422, f"{label}: empty file")
        uploads.append(svc.Upload(label, data))
    try:
        face_detector, embedder = s.face_models()
    except WeightsError as exc:
        raise ApiError(503, f"face models unavailable: {exc}") from None
    from genesis.models import detector_label

    try:
        result = svc.enroll_uploads(s.repo, name, uploads, face_detector, embedder, detector_label(s.settings))
    except EnrollError as exc:
        raise ApiError(422, str(exc), code="enroll_failed") from None
    except ValueError as exc:
        raise ApiError(422, str(exc), code="enroll_failed") from None
    return EnrollOut(name=result.name, photos=result.photos, added=result.added, several_faces=result.several_faces)


@router.patch("/{name}", response_model=IdentityOut, summary="Rename an identity (its tracks follow)",
              responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}})
def rename(name: NamePath, body: RenameIn, _key: Operator, s: Services) -> IdentityOut:
    new = body.name
    try:
        found = svc.rename(s.repo, name, new)
    except svc.IdentityConflictError as exc:
        raise ApiError(409, str(exc)) from None
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    if not found:
        raise ApiError(404, f"no identity named {name!r}")
    row = next(r for r in svc.list_identities(s.repo) if r["name"] == new.strip())
    return IdentityOut(**row)


@router.delete("/{name}", status_code=204, summary="Forget an identity: delete it and its embeddings (admin)",
               responses={404: {"model": ErrorResponse}})
def forget(name: NamePath, _key: Admin, s: Services) -> Response:
    if not svc.forget(s.repo, name):
        raise ApiError(404, f"no identity named {name!r}")
    return Response(status_code=204)
