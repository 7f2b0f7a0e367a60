"""The API's front door, an ASGI middleware that runs before any route reads a byte of the body.

For every request it

1. bounds the body: the ``Content-Length`` when there is one, and *the bytes actually received*
   whatever the framing (a chunked upload has no length): past the limit it answers 413 and the
   route sees a disconnect, so no form parser or temporary file grows beyond it. Photo uploads
   (``POST /api/identities...``, ``POST /api/search``) may carry ``api.max_photos`` photos of
   ``api.max_upload_bytes``; every other request :data:`SMALL_BODY` bytes;
2. authenticates ``/api/...`` *before* the route runs (so before the body is read): the
   ``X-API-Key`` header, else the dashboard's session cookie (a server-side session, see
   :class:`genesis.adapters.db.apikeys.SessionStore`). No key: 401. A wrong key: 401, logged
   (without the key; every request value through :func:`genesis.domain.printable.for_log`) and
   counted against the client's address and the key's prefix in :class:`AuthThrottle`; past either
   allowance a wrong key gets 429 until the bucket refills (a right key is always let in). The
   verified key is kept in the request scope for the role dependencies of :mod:`genesis.api.deps`;
3. checks CSRF on every state-changing request made with the session cookie, on any path (so the
   dashboard's new routes get it without doing anything): the ``X-CSRF-Token`` header, or a
   ``csrf_token`` field of a url-encoded form, must be the session's token
   (:func:`genesis.adapters.db.apikeys.csrf_token`), which the page gets from its
   ``<meta name="csrf-token">`` and which another site can neither read nor compute.
   ``POST /login`` has no session yet; its own double-submit token is checked by the route.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from genesis.adapters.db import DatabaseUnavailableError
from genesis.adapters.db.apikeys import ApiKeyInfo, csrf_token, key_prefix
from genesis.api.context import AppServices
from genesis.api.errors import error_response
from genesis.domain.printable import for_log

log = logging.getLogger("genesis.api.auth")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "genesis_session"
LOGIN_COOKIE = "genesis_login"
"""Double-submit CSRF token of the login form (there is no session before the login)."""
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SMALL_BODY = 1024 * 1024
"""Largest body of a request that is not a photo upload (JSON, forms)."""
SCOPE_KEY = "genesis.key"
SCOPE_SESSION = "genesis.session"


def upload_route(method: str, path: str) -> bool:
    """Routes whose body may be photos (enroll, search by photo)."""
    return method == "POST" and (path.startswith("/api/identities") or path == "/api/search")


def needs_key(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class AuthThrottle:
    """Failed authentications (a wrong key, a failed login), counted in token buckets of ``burst``
    failures refilled at ``per_minute``: one bucket per client address and one per key prefix
    (``gk_<id>`` of the key presented, :func:`genesis.adapters.db.apikeys.key_prefix`).

    A failure is checked and counted in one step under one lock (:meth:`failure`), so failures
    sent in parallel cannot all pass the check before any is counted: past the allowance of its
    address or of its prefix a failure is answered 429 (with the wait) instead of 401.

    A key is always verified, and a right key always authenticates, whatever the buckets say:
    many users behind one NAT or proxy share an address, and a key's id is not a secret, so a
    throttle that refused right keys would let anyone lock the admin out. Guessing the 256-bit
    secret of a key is hopeless at any rate; what the throttle bounds is the noise (a throttled
    client's failures are answered 429 and not logged one by one) and it tells the scanner it is
    seen. Behind a reverse proxy every client has the proxy's address: throttle at the proxy too."""

    MAX_CLIENTS = 10_000

    def __init__(self, burst: int, per_minute: float) -> None:
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, bucket: str, now: float) -> float:
        tokens, at = self._buckets.get(bucket, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def _wait(self, level: float) -> float:
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate if self.rate > 0 else 3600.0

    def failure(self, client: str, prefix: str | None) -> float:
        """Count one failed authentication of ``client`` with a key of ``prefix`` (None: a malformed
        key, counted against the address only): 0 when the buckets allowed it (answer 401), else the
        seconds until they all would (answer 429)."""
        with self._lock:
            now = time.monotonic()
            if len(self._buckets) >= self.MAX_CLIENTS:  # forget buckets that are full again
                self._buckets = {c: v for c, v in self._buckets.items() if self._level(c, now) < self.burst}
            buckets = [f"address {client}"] + ([f"key {prefix}"] if prefix is not None else [])
            levels = [self._level(b, now) for b in buckets]
            for bucket, level in zip(buckets, levels, strict=True):
                self._buckets[bucket] = (max(0.0, level - 1.0), now)
            return max(self._wait(level) for level in levels)


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def authenticate(services: AppServices, key: str | None, session: str | None) -> ApiKeyInfo | None:
    """The key of an ``X-API-Key`` value, else of a dashboard session token (None: neither works)."""
    if key:
        return services.keys.verify(key)
    if session:
        return services.sessions.verify(session)
    return None


class Guard:
    """See the module docstring. ``services`` are the app's (keys, sessions, settings)."""

    def __init__(self, app: ASGIApp, services: AppServices, throttle: AuthThrottle) -> None:
        self.app = app
        self.services = services
        self.throttle = throttle
        api = services.settings.api
        self.upload_limit = api.max_upload_bytes * api.max_photos + 64 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = Headers(scope=scope)
        limit = self.upload_limit if upload_route(method, path) else SMALL_BODY

        async def refuse(status: int, message: str, extra: dict[str, str] | None = None) -> None:
            await error_response(status, message, headers=extra)(scope, receive, send)

        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await refuse(400, "invalid Content-Length header")
                return
            if int(length) > limit:
                await refuse(413, f"request body larger than {limit} bytes")
                return

        key = headers.get("x-api-key")
        cookies = cookie_parser(headers.get("cookie", ""))
        session = cookies.get(SESSION_COOKIE) or None
        client = client_of(scope)
        if needs_key(path):
            try:
                info = await run_in_threadpool(authenticate, self.services, key, session)
            except DatabaseUnavailableError as exc:
                log.error("database error on %s %s: %s", for_log(method), for_log(path), for_log(exc))
                await refuse(503, "the database is unavailable (see the server log)")
                return
            if info is None:
                if not key and not session:
                    await refuse(401, "missing API key: send it in the X-API-Key header")
                    return
                if key:
                    wait = self.throttle.failure(client, key_prefix(key))
                    if wait > 0:  # past the allowance: not logged one by one
                        await refuse(429, f"too many failed authentications from {client} or with this key: "
                                          f"try again in {wait:.0f} s", {"Retry-After": str(max(1, round(wait)))})
                        return
                    log.warning("authentication failed: %s %s from %s: unknown, revoked or malformed API key",
                                for_log(method), for_log(path), for_log(client))
                    await refuse(401, "invalid or revoked API key")
                else:
                    await refuse(401, "your dashboard session has ended: log in again")
                return
            scope[SCOPE_KEY] = info
            if not key:
                scope[SCOPE_SESSION] = session

        # CSRF: a change made with the session cookie (and no key header) must prove it comes from our page.
        if method not in SAFE_METHODS and session and not key and path != "/login":
            expected = csrf_token(session)
            sent = headers.get(CSRF_HEADER.lower())
            if sent is None and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                body, receive = await _buffer(receive, limit)
                if body is None:
                    await refuse(413, f"request body larger than {limit} bytes")
                    return
                sent = next(iter(parse_qs(body.decode("latin-1")).get(CSRF_FIELD, [])), None)
            if not sent or not hmac.compare_digest(sent, expected):
                await refuse(403, f"a change made with the dashboard session needs its CSRF token (the "
                                  f"{CSRF_HEADER} header or a {CSRF_FIELD} form field)")
                return

        await self._bounded(scope, receive, send, limit)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app, counting the body bytes it receives: past ``limit`` it gets a disconnect
        and the client a 413 (if nothing was answered yet)."""
        received = 0
        started = False
        cut = False

        async def guarded_receive() -> Message:
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started:
                        await error_response(413, f"request body larger than {limit} bytes")(scope, receive, send)
                    cut = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if cut:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not cut:
                raise


async def _buffer(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """The whole (small) body, and a ``receive`` that replays it; None when it exceeds ``limit``."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, receive
        chunks.append(chunk)
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
