"""The console's live updates: one server-sent-events stream per open page (``GET /api/console/events``).

Authenticated like every ``/api`` route (API key or the dashboard's session cookie, which an
``EventSource`` sends). The server looks for changes every ``console.events_poll_s`` and sends a
``state`` event only when something changed: the sizes the lists are made of (identities, unknown
groups, stored faces, the newest audit entry) and each camera's counters. A page refreshes what
changed; nothing is pushed per frame (the live view has its own route). A stream ends after
``console.events_max_s`` (the browser reconnects by itself), so a revoked key or an ended session is
noticed within that time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from genesis.api.deps import Services, Viewer
from genesis.api.errors import ERROR_RESPONSES
from genesis.api.services import console as svc

router = APIRouter(prefix="/api", tags=["console-events"], responses=ERROR_RESPONSES)

KEEPALIVE_S = 15.0
_shared: dict[int, tuple[float, dict[str, Any]]] = {}
"""The newest state per app (by id of its services) and when it was read: every open page of one
server shares one read per poll interval, however many pages are open."""


async def _state(s: Any, max_age: float) -> dict[str, Any]:
    now = time.monotonic()
    cached = _shared.get(id(s))
    if cached is not None and now - cached[0] < max_age:
        return cached[1]
    try:
        state = await to_thread.run_sync(svc.console_state, s.repo, s.settings)
    except Exception as exc:  # the database away: say so, keep the stream
        state = {"error": type(exc).__name__}
    _shared[id(s)] = (time.monotonic(), state)
    return state


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


@router.get("/console/events", summary="Live updates of the console (server-sent events, text/event-stream)",
            description="`event: state` with `{identities, unknowns, unknowns_seen, faces, audit_last, cameras: "
            "{id: counts}}` at "
            "the start and whenever it changes (looked at every `console.events_poll_s`); a comment every "
            "15 s keeps proxies from closing it. The stream ends after `console.events_max_s`; "
            "`retry` tells the browser to reconnect within 2 s.",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def console_events(request: Request, _key: Viewer, s: Services) -> StreamingResponse:
    cfg = s.settings.console

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        last: dict[str, Any] | None = None
        started = sent = time.monotonic()
        while time.monotonic() - started < cfg.events_max_s:
            if await request.is_disconnected():
                return
            state = await _state(s, cfg.events_poll_s * 0.9)
            if state != last:
                last = state
                sent = time.monotonic()
                yield _event("state", state)
            elif time.monotonic() - sent >= KEEPALIVE_S:
                sent = time.monotonic()
                yield ": keepalive\n\n"
            await asyncio.sleep(cfg.events_poll_s)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
