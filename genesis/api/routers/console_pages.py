"""The console's pages (server-rendered shells; their script calls the ``/api`` routes): review,
an identity's page, search by photo, the audit log (admins), the favicon and the page a browser
gets for an address that does not exist. Like the dashboard, they need a logged-in session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from genesis import __version__
from genesis.api.deps import Services
from genesis.api.routers.dashboard import TEMPLATES, session_key

router = APIRouter(include_in_schema=False)


FAVICON = Path(__file__).resolve().parent.parent / "static" / "favicon.svg"
NOT_PAGES = ("/api/", "/static/", "/openapi.json", "/docs", "/health", "/metrics")


def _page(request: Request, s: Services, template: str, status: int = 200, **extra: Any) -> Response:
    key = session_key(request, s)
    if key is None:
        return RedirectResponse("/", status_code=303)
    context = {"key": key, "version": __version__, "can_operate": key.role in ("operator", "admin"),
               "can_admin": key.role == "admin", "upload_types": ",".join(s.settings.api.upload_types), **extra}
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def not_found_page(request: Request) -> Response | None:
    """The console's 404 page for a browser (a GET that accepts HTML, outside the API); None: the
    JSON error. It names no key and needs no session (it says only that the page does not exist)."""
    path = request.url.path
    if request.method != "GET" or "text/html" not in request.headers.get("accept", "") \
            or any(path.startswith(p) for p in NOT_PAGES):
        return None
    s = request.app.state.services
    key = session_key(request, s)
    context = {"key": key, "version": __version__, "can_operate": bool(key and key.role in ("operator", "admin")),
               "can_admin": bool(key and key.role == "admin"), "what": "page"}
    return TEMPLATES.TemplateResponse(request, "404.html", context, status_code=404,
                                      headers={"Cache-Control": "no-store"})


@router.get("/favicon.ico")
def favicon() -> Response:
    return FileResponse(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request, s: Services) -> Response:
    return _page(request, s, "review.html")


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, s: Services) -> Response:
    return _page(request, s, "search.html")


@router.get("/identities/{name}", response_class=HTMLResponse)
def identity_page(name: str, request: Request, s: Services) -> Response:
    if session_key(request, s) is not None and not any(i.name == name for i in s.repo.identities()):
        return _page(request, s, "404.html", status=404, what="identity", name=name)
    return _page(request, s, "identity.html", name=name)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, s: Services) -> Response:
    key = session_key(request, s)
    if key is not None and key.role != "admin":
        return _page(request, s, "404.html", status=403, what="audit")
    return _page(request, s, "audit.html")
