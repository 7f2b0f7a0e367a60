"""API keys (admin): list, create, revoke. ``genesis apikey`` does the same from the shell."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from genesis.api.deps import Admin, Services
from genesis.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from genesis.api.schemas import ApiKeyCreated, ApiKeyCreateIn, ApiKeyOut

router = APIRouter(prefix="/api/keys", tags=["keys"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[ApiKeyOut], summary="Every key (revoked ones too)")
def list_keys(_key: Admin, s: Services) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k, from_attributes=True) for k in s.keys.list()]


@router.post("", response_model=ApiKeyCreated, status_code=201, summary="Create a key (shown once)")
def create_key(body: ApiKeyCreateIn, _key: Admin, s: Services) -> ApiKeyCreated:
    try:
        token, info = s.keys.create(body.role, body.name)
    except ValueError as exc:
        raise ApiError(422, f"name: {exc}") from None
    return ApiKeyCreated.model_validate({**ApiKeyOut.model_validate(info, from_attributes=True).model_dump(),
                                         "key": token})


@router.delete("/{key_id}", status_code=204, summary="Revoke a key", responses={404: {"model": ErrorResponse}})
def revoke_key(
    key_id: Annotated[str, Path(min_length=8, max_length=8, pattern="^[0-9a-f]{8}$")], _key: Admin, s: Services
) -> Response:
    if not s.keys.revoke(key_id):
        raise ApiError(404, f"no active key {key_id!r}")
    return Response(status_code=204)
