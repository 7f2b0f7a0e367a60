"""The console's pages (server-rendered shells; their script calls the ``/api`` routes): review,
an identity's page, search by photo. Like the dashboard, they need a logged-in session."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from genesis import __version__
from genesis.api.deps import Services
from genesis.api.routers.dashboard import TEMPLATES, session_key

router = APIRouter(include_in_schema=False)


def _page(request: Request, s: Services, template: str, **extra: Any) -> Response:
    key = session_key(request, s)
    if key is None:
        return RedirectResponse("/", status_code=303)
    context = {"key": key, "version": __version__, "can_operate": key.role in ("operator", "admin"),
               "can_admin": key.role == "admin", "upload_types": ",".join(s.settings.api.upload_types), **extra}
    response = TEMPLATES.TemplateResponse(request, template, context)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request, s: Services) -> Response:
    return _page(request, s, "review.html")


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, s: Services) -> Response:
    return _page(request, s, "search.html")


@router.get("/identities/{name}", response_class=HTMLResponse)
def identity_page(name: str, request: Request, s: Services) -> Response:
    return _page(request, s, "identity.html", name=name)
