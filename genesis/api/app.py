"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from genesis import __version__
from genesis.adapters.db import Repository
from genesis.adapters.db.apikeys import ApiKeyStore
from genesis.api.deps import AppServices
from genesis.api.errors import error_response, install_error_handlers
from genesis.api.routers import (
    alerts,
    analytics,
    cameras,
    console,
    console_pages,
    dashboard,
    events,
    faces,
    health,
    identities,
    keys,
    pipeline,
)
from genesis.config import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"

DESCRIPTION = """\
Genesis: face recognition and people analytics over camera streams.

Every endpoint except `/health` needs an API key in the `X-API-Key` header
(`genesis apikey create --role viewer|operator|admin`). Viewers read; operators also enroll,
rename, name unknown faces, reject a track's identity and replay dead letters; admins also forget
identities, read the identities audit log and manage keys.
Errors are JSON: `{"error": {"status", "code", "message", "details"}}`.
"""


def create_app(settings: Settings, *, repo: Repository | None = None) -> FastAPI:
    """The API and dashboard over ``settings`` (the database is migrated to the latest schema)."""
    repository = repo if repo is not None else Repository(settings.database_url)
    services = AppServices(settings=settings, repo=repository, keys=ApiKeyStore(repository.engine))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if repo is None:
            services.close()

    app = FastAPI(title="Genesis API", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    app.state.alerts_enabled = True
    """The dashboard shows its alerts feed (the alerts router is always included)."""
    install_error_handlers(app)

    limit = settings.api.max_upload_bytes * settings.api.max_photos + 64 * 1024

    @app.middleware("http")
    async def body_limit(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # Refuse oversized bodies before they are read (uploads are also checked per file).
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error_response(400, "invalid Content-Length header")
            if int(length) > limit:
                return error_response(413, f"request body larger than {limit} bytes")
        return await call_next(request)

    for module in (health, identities, faces, events, analytics, alerts, cameras, pipeline, keys, console):
        app.include_router(module.router)
    app.include_router(dashboard.router)
    app.include_router(console_pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
