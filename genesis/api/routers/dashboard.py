"""The web dashboard: server-rendered pages (Jinja2) and a little vanilla JavaScript.

Login takes an API key and opens a server-side session (``dashboard_sessions``): the HttpOnly,
SameSite=Strict cookie holds only the session's random token, which expires, ends on logout and
when the key is revoked. Every page gets ``csrf_token`` in its template context (a context
processor: new pages need nothing) and ``base.html`` puts it in ``<meta name="csrf-token">``;
the page's script sends it as ``X-CSRF-Token`` with every change, a plain HTML form as the
``csrf_token`` field (``{{ csrf_field() }}``). :class:`genesis.api.guard.Guard` checks it.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from genesis import __version__
from genesis.adapters.db.apikeys import ApiKeyInfo, csrf_token, key_prefix
from genesis.api.deps import Services
from genesis.api.guard import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE, AuthThrottle, client_of
from genesis.api.services import identities as identities_svc
from genesis.api.services import pipeline as pipeline_svc
from genesis.domain.printable import for_log

log = logging.getLogger("genesis.api.auth")


def _csrf_context(request: Request) -> dict[str, Any]:
    session = request.cookies.get(SESSION_COOKIE)
    token = getattr(request.state, "login_csrf", None)  # the login form (even with an ended session's cookie)
    if token is None:
        token = csrf_token(session) if session else ""
    field = Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(token))
    return {"csrf_token": token, "csrf_field": lambda: field}


TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"),
                            context_processors=[_csrf_context])

router = APIRouter(include_in_schema=False)


def _secure(request: Request, s: Services) -> bool:
    return s.settings.api.cookie_secure or request.url.scheme == "https"


def session_key(request: Request, s: Services) -> ApiKeyInfo | None:
    """The key of the request's dashboard session (None: not logged in, expired, revoked)."""
    token = request.cookies.get(SESSION_COOKIE)
    return s.sessions.verify(token) if token else None


def _login_page(request: Request, s: Services, error: str | None, status: int = 200) -> HTMLResponse:
    """The login form with a fresh double-submit CSRF token (cookie + hidden field)."""
    token = secrets.token_urlsafe(32)
    request.state.login_csrf = token
    response = TEMPLATES.TemplateResponse(request, "login.html", {"error": error, "version": __version__},
                                          status_code=status)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=_secure(request, s), path="/login")
    return response


@router.get("/", response_class=HTMLResponse)
def index(request: Request, s: Services) -> Response:
    key = session_key(request, s)
    if key is None:
        ended = "your session has ended: log in again" if request.cookies.get(SESSION_COOKIE) else None
        return _login_page(request, s, ended)
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
def login_form(request: Request, s: Services) -> Response:
    return _login_page(request, s, None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, s: Services, api_key: Annotated[str, Form(max_length=300)] = "",
          csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=100)] = "") -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not csrf or not hmac.compare_digest(csrf, expected):
        return _login_page(request, s, "the login form expired or came from another site: try again", 403)
    throttle: AuthThrottle = request.app.state.auth_throttle
    client = client_of(request.scope)
    key = s.keys.verify(api_key.strip()) if api_key.strip() else None  # a right key always logs in
    if key is None:
        wait = throttle.failure(client, key_prefix(api_key.strip()))
        if wait > 0:
            return _login_page(request, s, f"too many failed logins: try again in {wait:.0f} s", 429)
        log.warning("authentication failed: dashboard login from %s: unknown, revoked or malformed API key",
                    for_log(client))
        return _login_page(request, s, "invalid or revoked API key", 401)
    token = s.sessions.create(key.id, s.settings.api.session_max_age_s)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=s.settings.api.session_max_age_s, httponly=True,
                        samesite="strict", secure=_secure(request, s), path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, s: Services) -> Response:
    """End the session on the server (the guard checked the form's CSRF token) and drop the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        s.sessions.end(token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
