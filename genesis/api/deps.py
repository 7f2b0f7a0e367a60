"""Request dependencies: the shared services of the app and the caller's key and role."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import redis
from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader

from genesis.adapters.db import Repository
from genesis.adapters.db.apikeys import ApiKeyInfo, ApiKeyStore, SessionStore
from genesis.adapters.db.tables_api import API_ROLES
from genesis.adapters.dlq import DeadLetters
from genesis.api.errors import ApiError
from genesis.api.guard import CSRF_HEADER, SAFE_METHODS, SCOPE_KEY, SESSION_COOKIE, authenticate
from genesis.config import Settings

if TYPE_CHECKING:
    from celery import Celery

    from genesis.backends.faces import Embedder, FaceDetector

__all__ = ["CSRF_HEADER", "SAFE_METHODS", "SESSION_COOKIE", "Admin", "AppServices", "Operator", "Services", "Viewer"]


@dataclass
class AppServices:
    """What every request shares: settings, the database, Redis, models loaded on first use."""

    settings: Settings
    repo: Repository
    keys: ApiKeyStore
    sessions: SessionStore
    _redis: redis.Redis | None = None
    _letters: DeadLetters | None = None
    _celery: Celery | None = None
    _faces: tuple[FaceDetector, Embedder] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def redis(self) -> redis.Redis:
        with self._lock:
            if self._redis is None:
                self._redis = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=1,
                                                   socket_timeout=2)
            return self._redis

    @property
    def letters(self) -> DeadLetters:
        with self._lock:
            if self._letters is None:
                self._letters = DeadLetters(redis.Redis.from_url(
                    self.settings.redis_url, decode_responses=True, socket_connect_timeout=1, socket_timeout=2))
            return self._letters

    @property
    def celery(self) -> Celery:
        with self._lock:
            if self._celery is None:
                from genesis.tasks.celery_config import make_app

                self._celery = make_app(self.settings)
            return self._celery

    def face_models(self) -> tuple[FaceDetector, Embedder]:
        """The face detector and embedder, loaded once (raises WeightsError when missing)."""
        with self._lock:
            if self._faces is None:
                from genesis.pipeline.model_loader import load_face_models

                self._faces = load_face_models(self.settings)
            return self._faces

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        if self._letters is not None:
            self._letters.redis.close()
        self.repo.close()


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
