"""The web dashboard: server-rendered pages (Jinja2) and a little vanilla JavaScript.

Login takes an API key and keeps it in an HttpOnly, SameSite=Strict cookie; the page's script
calls the same ``/api`` endpoints as any client, with that cookie.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from genesis import __version__
from genesis.api.deps import SESSION_COOKIE, Services
from genesis.api.services import identities as identities_svc
from genesis.api.services import pipeline as pipeline_svc

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))

router = APIRouter(include_in_schema=False)


def _login_page(request: Request, error: str | None, status: int = 200) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, "login.html", {"error": error, "version": __version__},
                                      status_code=status)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, s: Services) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    key = s.keys.verify(token) if token else None
    if key is None:
        return _login_page(request, "your session has ended: log in again" if token else None)
    context = {
        "key": key,
        "version": __version__,
        "cameras": pipeline_svc.cameras(s.repo, s.settings),
        "identities": identities_svc.list_identities(s.repo),
        "alerts_enabled": bool(getattr(request.app.state, "alerts_enabled", False)),
        "can_operate": key.role in ("operator", "admin"),
        "can_admin": key.role == "admin",
        "max_upload_mb": round(s.settings.api.max_upload_bytes / 1_048_576, 1),
        "upload_types": ",".join(s.settings.api.upload_types),
    }
    return TEMPLATES.TemplateResponse(request, "dashboard.html", context)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _login_page(request, None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, s: Services, api_key: Annotated[str, Form(max_length=300)] = "") -> Response:
    key = s.keys.verify(api_key.strip()) if api_key.strip() else None
    if key is None:
        return _login_page(request, "invalid or revoked API key", 401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, api_key.strip(), max_age=s.settings.api.session_max_age_s, httponly=True,
                        samesite="strict", secure=s.settings.api.cookie_secure, path="/")
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
