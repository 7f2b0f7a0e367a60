"""Request dependencies: the shared services of the app and the caller's key and role."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader

from genesis.adapters.db.apikeys import ApiKeyInfo
from genesis.adapters.db.tables_api import API_ROLES
from genesis.api.context import AppServices
from genesis.api.errors import ApiError
from genesis.api.guard import CSRF_HEADER, SAFE_METHODS, SCOPE_KEY, SESSION_COOKIE, authenticate

if TYPE_CHECKING:

    pass

__all__ = ["CSRF_HEADER", "SAFE_METHODS", "SESSION_COOKIE", "Admin", "AppServices", "Operator", "Services", "Viewer"]


def services(request: Request) -> AppServices:
    svc: AppServices = request.app.state.services
    return svc


Services = Annotated[AppServices, Depends(services)]

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (`genesis apikey create`).")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Dashboard session (set by /login).")


def current_key(
    request: Request,
    svc: Services,
    header: Annotated[str | None, Depends(_header)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> ApiKeyInfo:
    """The caller's key: ``X-API-Key``, else the dashboard's session cookie.

    :class:`genesis.api.guard.Guard` verified it before the route ran (and before the body was
    read), including the CSRF token of a change made with the cookie; this dependency hands it
    to the route (the two parameters document the schemes in the OpenAPI document).
    """
    info: ApiKeyInfo | None = request.scope.get(SCOPE_KEY)
    if info is None:  # a route outside /api: the guard did not look
        info = authenticate(svc, header, cookie)
        if info is None:
            raise ApiError(401, "missing, invalid or revoked API key: send it in the X-API-Key header")
    return info


def require(role: str) -> Callable[..., Any]:
    """A dependency that lets through keys of ``role`` or a higher one."""
    need = API_ROLES.index(role)

    def check(key: Annotated[ApiKeyInfo, Depends(current_key)]) -> ApiKeyInfo:
        if API_ROLES.index(key.role) < need:
            raise ApiError(403, f"this needs the {role} role (your key is {key.role})")
        return key

    return check


Viewer = Annotated[ApiKeyInfo, Depends(require("viewer"))]
Operator = Annotated[ApiKeyInfo, Depends(require("operator"))]
Admin = Annotated[ApiKeyInfo, Depends(require("admin"))]
