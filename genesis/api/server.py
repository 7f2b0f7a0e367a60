"""How `genesis serve` runs uvicorn: the connection limits and timeouts of ``api.*``.

uvicorn alone keeps a connection that never sends a whole request open forever (its keep-alive
timeout only starts after a first response) and accepts connections until the process runs out of
file descriptors: ~20k keyless half-open connections exhaust the file table. So the HTTP protocol
is uvicorn's h11 protocol with two additions (:func:`guarded_protocol`):

- a **header deadline**: from the moment a connection opens, or its previous response ends, it has
  ``api.header_timeout_s`` to send a whole request head; the deadline is not pushed back by each
  byte, so headers trickled a byte at a time (slowloris) are cut too. The body is bounded in size
  by the guard (docs/security.md), not in time;
- a **connection cap**: past ``api.max_connections`` open connections a new one is answered 503
  and closed before anything is read.

uvicorn's own settings come from the same section (:func:`uvicorn_options`): ``limit_concurrency``
(503 past that many connections or requests in progress), ``timeout_keep_alive`` and h11's
largest request head; and a graceful shutdown bounded by ``SHUTDOWN_GRACE_S``: uvicorn alone waits
for every open response, and the console's live-updates streams (server-sent events) stay open for
minutes, so a SIGTERM would otherwise wait that long. The process's open-file limit is raised to fit
the cap where the hard limit allows (:func:`fit_file_limit`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from genesis.config.api import ApiConfig

log = logging.getLogger("genesis.api.server")

BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        b"retry-after: 1\r\ncontent-length: 34\r\n\r\ntoo many connections: retry later\n")
"""What a connection past ``api.max_connections`` gets before it is closed."""
FILES_BESIDES_CONNECTIONS = 256
"""Open files the server needs besides its connections (database, models, logs, temporary files)."""


SHUTDOWN_GRACE_S = 10.0
"""On SIGTERM, requests in progress get this long to finish; then they are cancelled (the browser's
live-updates stream reconnects to the next server by itself)."""


def uvicorn_options(api: ApiConfig) -> dict[str, Any]:
    """uvicorn's settings from ``api``: the HTTP protocol with the header deadline and the
    connection cap, and uvicorn's own concurrency limit, keep-alive timeout and head size."""
    return {
        "http": guarded_protocol(api.header_timeout_s, api.max_connections),
        "limit_concurrency": api.limit_concurrency,
        "timeout_keep_alive": api.keep_alive_timeout_s,
        "h11_max_incomplete_event_size": api.max_header_bytes,
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_S,
    }


def fit_file_limit(max_connections: int) -> int:
    """Raise the soft open-file limit (up to the hard one) so that ``max_connections`` fit beside
    the server's own files; the connections that fit (less than asked when the hard limit is lower)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + FILES_BESIDES_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - FILES_BESIDES_CONNECTIONS))


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a header deadline and a connection cap (see the module docstring)."""

    class GuardedH11Protocol(H11Protocol):
        _head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            if len(self.connections) > max_connections:
                transport.write(BUSY)  # type: ignore[attr-defined]
                transport.close()
                return
            self._watch_head()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_head()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_deadline()
            super().connection_lost(exc)

        def _watch_head(self) -> None:
            """A deadline runs while the client owes a request head; none once the head is in."""
            if self.transport.is_closing():
                self._stop_deadline()
            elif self.conn.their_state is h11.IDLE:
                if self._head_deadline is None:
                    self._head_deadline = self.loop.call_later(header_timeout_s, self._head_late)
            else:
                self._stop_deadline()

        def _stop_deadline(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _head_late(self) -> None:
            self._head_deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                log.debug("closing a connection that sent no whole request head in %g s", header_timeout_s)
                self.transport.close()

    return GuardedH11Protocol
