"""``/health`` (no key needed) and ``/api/me``."""

from __future__ import annotations

from fastapi import APIRouter

from genesis import __version__
from genesis.api.deps import Viewer
from genesis.api.errors import ERROR_RESPONSES
from genesis.api.schemas import Health, Me

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Liveness (no API key needed)")
def health() -> Health:
    return Health(status="ok", version=__version__)


@router.get("/api/me", response_model=Me, responses=ERROR_RESPONSES, summary="The caller's key and role")
def me(key: Viewer) -> Me:
    return Me(id=key.id, name=key.name, role=key.role)
