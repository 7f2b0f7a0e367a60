"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from genesis import __version__
from genesis.adapters.db import Repository
from genesis.adapters.db.apikeys import ApiKeyStore, SessionStore
from genesis.api.deps import AppServices
from genesis.api.errors import install_error_handlers
from genesis.api.guard import AuthThrottle, Guard
from genesis.api.routers import (
    alerts,
    analytics,
    cameras,
    console,
    console_events,
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
log = logging.getLogger("genesis.api")

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
    services = AppServices(settings=settings, repo=repository, keys=ApiKeyStore(repository.engine),
                           sessions=SessionStore(repository.engine))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if repo is None:
            services.close()

    app = FastAPI(title="Genesis API", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.services = services
    app.state.alerts_enabled = True
    """The dashboard shows its alerts feed (the alerts router is always included)."""
    app.state.auth_throttle = AuthThrottle(settings.api.auth_failures_burst, settings.api.auth_failures_per_minute)
    install_error_handlers(app, console_pages.not_found_page)
    # Before any route: body limits whatever the framing, the key checked before the body is read, CSRF.
    app.add_middleware(Guard, services=services, throttle=app.state.auth_throttle)

    for module in (health, identities, faces, events, analytics, alerts, cameras, pipeline, keys, console,
                   console_events):
        app.include_router(module.router)
    app.include_router(dashboard.router)
    app.include_router(console_pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if settings.api.docs:
        _local_docs(app)
    return app


def _local_docs(app: FastAPI) -> None:
    """Swagger UI 5 at /docs, bundled with the package (``api/static/swagger``, see its VERSION; no CDN):
    it renders the OpenAPI 3.1 document FastAPI writes (the 4.x of the swagger-ui-bundle package
    could not)."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Genesis API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg")
