"""One JSON error shape for every 4xx/5xx: ``{"error": {"status", "code", "message", "details"}}``."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from genesis.adapters.db import DatabaseUnavailableError
from genesis.domain.printable import for_log

log = logging.getLogger("genesis.api")

def logged_exception(exc: BaseException) -> str:
    """An exception for the log: its type and message (which may quote the request) through
    :func:`for_log`, then the stack of code lines that raised it."""
    stack = "".join(traceback.TracebackException.from_exception(exc).stack.format())
    return f"{type(exc).__name__}: {for_log(exc, 2000)}\nTraceback (most recent call last):\n{stack.rstrip()}"


CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered with ``status`` and the common JSON shape."""

    def __init__(self, status: int, message: str, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or CODES.get(status, "error")
        self.details = details


class ErrorBody(BaseModel):
    status: int
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_response(status: int, message: str, code: str | None = None, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"status": status, "code": code or CODES.get(status, "error"), "message": message,
                      "details": jsonable_encoder(details)}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        out.append({"field": ".".join(loc), "message": str(e.get("msg", "invalid"))})
    return out


def install_error_handlers(app: FastAPI, html_404: Callable[[Request], Response | None] | None = None) -> None:
    """The error shape of every answer; ``html_404``: a page for a browser's 404 outside the API
    (None from it: the JSON error)."""

    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.code, exc.details)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404 and html_404 is not None:
            page = html_404(request)
            if page is not None:
                return page
        message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = _validation_details(exc)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return error_response(422, f"invalid request: {summary}", details=details)

    async def database_down(request: Request, exc: Exception) -> Response:
        log.error("database error on %s %s: %s", for_log(request.method), for_log(request.scope.get("path", "")),
                  for_log(exc))
        return error_response(503, "the database is unavailable (see the server log)")

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s: %s", for_log(request.method), for_log(request.scope.get("path", "")),
                  logged_exception(exc))
        return error_response(500, "internal error (see the server log)")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DatabaseUnavailableError, database_down)
    app.add_exception_handler(Exception, unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No or bad API key."},
    403: {"model": ErrorResponse, "description": "The key's role may not do this."},
    422: {"model": ErrorResponse, "description": "Invalid parameters."},
}
