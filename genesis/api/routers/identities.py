"""Identities: list, enroll by photo upload (quality-gated), rename, forget (audited)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, UploadFile
from fastapi.responses import Response

from genesis.adapters.db.apikeys import ApiKeyInfo
from genesis.api.deps import Admin, AppServices, Operator, Services, Viewer
from genesis.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from genesis.api.params import SafeText
from genesis.api.schemas import EnrollOut, IdentityOut, RenameIn
from genesis.api.services import identities as svc
from genesis.backends.weights import WeightsError
from genesis.identities.crypto import BiometricKeyError
from genesis.identities.store import IdentityError, NearIdentityError
from genesis.services.image_limits import ImageRefusedError, read_header, too_costly

router = APIRouter(prefix="/api/identities", tags=["identities"], responses=ERROR_RESPONSES)

NamePath = Annotated[SafeText, Path(min_length=1, max_length=128, description="Identity name.")]
IdPath = Annotated[int, Path(ge=1, le=2**62, description="The identity's stable id (`id` in the listing).")]
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}


def read_upload(s: AppServices, photo: UploadFile) -> svc.Upload:
    """An uploaded photo within the configured type and size limits (415, 413, 422 otherwise)."""
    cfg = s.settings.api
    label = photo.filename or "photo"
    ctype = (photo.content_type or "").split(";")[0].strip().lower()
    if ctype not in cfg.upload_types:
        raise ApiError(415, f"{label}: unsupported type {ctype or '(none)'}; accepted: {', '.join(cfg.upload_types)}")
    data = photo.file.read(cfg.max_upload_bytes + 1)
    if len(data) > cfg.max_upload_bytes:
        raise ApiError(413, f"{label}: larger than {cfg.max_upload_bytes} bytes")
    if not data:
        raise ApiError(422, f"{label}: empty file")
    try:  # the header only: an image bomb is refused before anything decodes it
        header = read_header(data)
    except ImageRefusedError:
        header = None  # not an image: the enrollment's rejection (422) says so with the others
    reason = too_costly(header) if header is not None else None
    if reason is not None:  # too many pixels, or a JPEG of too many scans (decoding work)
        raise ApiError(413, f"{label}: {reason}", code="image_too_large")
    return svc.Upload(label, data)


def face_models(s: AppServices) -> tuple[Any, Any]:
    try:
        return s.face_models()
    except WeightsError as exc:
        raise ApiError(503, f"face models unavailable: {exc}") from None


def store(s: AppServices) -> Any:
    return svc.store_of(s.repo, s.redis)


def key_error(exc: BiometricKeyError) -> ApiError:
    return ApiError(503, f"stored biometric data cannot be read: {exc}", code="biometric_key")


@contextmanager
def change_errors(*, invalid: bool = True, key: bool = True) -> Iterator[None]:
    """The errors of a change through the identities service as HTTP errors: no such thing 404, a
    clash with what is stored 409; with ``invalid`` a refused value (IdentityError) 422, with ``key``
    unreadable biometric data 503 (where not asked for, they are left to the caller)."""
    try:
        yield
    except svc.NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except svc.IdentityConflictError as exc:
        raise ApiError(409, str(exc)) from None
    except IdentityError as exc:
        if not invalid:
            raise
        raise ApiError(422, str(exc)) from None
    except BiometricKeyError as exc:
        if not key:
            raise
        raise key_error(exc) from None


@router.get("", response_model=list[IdentityOut], summary="Enrolled identities")
def list_identities(_key: Viewer, s: Services) -> list[IdentityOut]:
    return [IdentityOut(**row) for row in svc.list_identities(s.repo)]


@router.post(
    "",
    response_model=EnrollOut,
    status_code=201,
    summary="Enroll an identity from one or several photos (multipart; all or nothing)",
    description="Each photo must show one clear face: a photo without a face, with several faces of similar "
    "size, or with a face too small or too blurred is rejected (422, code `enroll_rejected`, `details` = "
    "`[{photo, reason}]` for every rejected photo) and nothing is stored. Borderline photos are enrolled with "
    "`warnings`. Audited with the API key as the actor.",
    responses=UPLOAD_ERRORS,
)
def enroll(
    key: Operator,
    s: Services,
    name: Annotated[SafeText, Form(min_length=1, max_length=128, description="Identity name.")],
    photos: Annotated[list[UploadFile], File(description="Photos of the person (one clear face each).")],
    force: Annotated[bool, Form(description="Enroll even a face within the match threshold of another identity "
                                            "(audited); without it such a face is refused with 409.")] = False,
) -> EnrollOut:
    cfg = s.settings.api
    if not photos:
        raise ApiError(422, "give at least one photo")
    if len(photos) > cfg.max_photos:
        raise ApiError(413, f"too many photos: at most {cfg.max_photos} per request")
    from genesis.pipeline.model_loader import detector_label

    try:
        name = svc.enroll_name(name)  # the name rule first: a refused name is a 422 whatever the face models' state
        uploads = [read_upload(s, photo) for photo in photos]
        face_detector, embedder = face_models(s)
        result = svc.enroll_uploads(store(s), s.settings, name, uploads, face_detector, embedder,
                                    detector_label(s.settings), svc.actor_of(key), force)
    except NearIdentityError as exc:
        raise ApiError(409, str(exc), code="near_identity", details=[
            {"photo": n.photo, "identity": n.identity, "identity_id": n.identity_id, "distance": round(n.distance, 4)}
            for n in exc.near]) from None
    except svc.EnrollRejectedError as exc:
        raise ApiError(422, str(exc), code="enroll_rejected",
                       details=[{"photo": r.photo, "reason": r.reason} for r in exc.rejections]) from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None
    return EnrollOut(name=result.name, photos=result.photos, added=result.added, several_faces=result.several_faces,
                     warnings=result.warnings)


def _by_id(s: AppServices, identity_id: int) -> str:
    try:
        return svc.name_of(store(s), identity_id)
    except svc.NotFoundError as exc:
        raise ApiError(404, str(exc)) from None


@router.get("/by-id/{identity_id}", response_model=IdentityOut, summary="One identity, by its stable id",
            responses={404: {"model": ErrorResponse}})
def get_by_id(identity_id: IdPath, _key: Viewer, s: Services) -> IdentityOut:
    row = next((r for r in svc.list_identities(s.repo) if r["id"] == identity_id), None)
    if row is None:
        raise ApiError(404, f"no identity with id {identity_id}")
    return IdentityOut(**row)


@router.patch("/by-id/{identity_id}", response_model=IdentityOut,
              summary="Rename an identity addressed by its stable id (any stored name; audited)",
              responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}})
def rename_by_id(identity_id: IdPath, body: RenameIn, key: Operator, s: Services) -> IdentityOut:
    return _rename(s, _by_id(s, identity_id), body, key)


@router.delete("/by-id/{identity_id}", status_code=204,
               summary="Forget an identity addressed by its stable id: the erasure works whatever its name "
                       "(admin; audited)",
               responses={404: {"model": ErrorResponse}})
def forget_by_id(identity_id: IdPath, key: Admin, s: Services) -> Response:
    return _forget(s, _by_id(s, identity_id), key)


@router.patch("/{name}", response_model=IdentityOut, summary="Rename an identity (its tracks follow; audited)",
              responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}})
def rename(name: NamePath, body: RenameIn, key: Operator, s: Services) -> IdentityOut:
    return _rename(s, name, body, key)


def _rename(s: AppServices, name: str, body: RenameIn, key: ApiKeyInfo) -> IdentityOut:
    with change_errors(key=False):
        new = svc.rename(store(s), name, body.name, svc.actor_of(key))
    row = next((r for r in svc.list_identities(s.repo) if r["name"] == new), None)
    if row is None:  # forgotten meanwhile
        raise ApiError(404, f"no identity named {new!r}")
    return IdentityOut(**row)


@router.delete("/{name}", status_code=204,
               summary="Forget an identity: erase it, its embeddings and every face of it (admin; audited)",
               responses={404: {"model": ErrorResponse}})
def forget(name: NamePath, key: Admin, s: Services) -> Response:
    return _forget(s, name, key)


def _forget(s: AppServices, name: str, key: ApiKeyInfo) -> Response:
    try:
        svc.forget(store(s), s.settings, name, svc.actor_of(key))
    except svc.NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except IdentityError as exc:  # forgotten meanwhile
        raise ApiError(404, str(exc)) from None
    except BiometricKeyError as exc:
        raise key_error(exc) from None
    return Response(status_code=204)
