"""The HTTP endpoint of a long-running process: ``/health``, ``/metrics``, ``/status``.

A small threaded ``http.server`` in a daemon thread (no framework): the process's main loop is
not disturbed, and an endpoint that cannot bind its port is logged and skipped, never fatal (a
process that cannot be observed still works).
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Probe(Protocol):
    """What a process shows on its endpoint (see :mod:`genesis.ops.status`)."""

    def health(self) -> tuple[int, dict[str, Any]]: ...

    def status(self) -> dict[str, Any]: ...

    def metrics(self) -> bytes: ...


class _Handler(BaseHTTPRequestHandler):
    probe: Probe
    server_version = "genesis-ops"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            if path == "/health":
                code, body = self.probe.health()
                self._send(code, json.dumps(body).encode(), "application/json")
            elif path == "/status":
                self._send(200, json.dumps(self.probe.status(), default=str).encode(), "application/json")
            elif path == "/metrics":
                self._send(200, self.probe.metrics(), PROMETHEUS_CONTENT_TYPE)
            elif path == "/":
                self._send(200, json.dumps({"endpoints": ["/health", "/metrics", "/status"]}).encode(),
                           "application/json")
            else:
                self._send(404, json.dumps({"error": f"no such endpoint: {path}"}).encode(), "application/json")
        except Exception as exc:
            log.exception("ops endpoint %s failed", path)
            self._send(500, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode(), "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ops %s - %s", self.address_string(), format % args)


class OpsServer:
    """Serve a probe on ``host:port`` in a daemon thread; ``port`` 0 asks for no server."""

    def __init__(self, probe: Probe, host: str, port: int) -> None:
        self.probe = probe
        self.host = host
        self.port = port
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> bool:
        """Bind and serve; False (with a warning) when the port is taken or not allowed."""
        handler = type("Handler", (_Handler,), {"probe": self.probe})
        try:
            httpd = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            log.warning("ops endpoint not started: cannot listen on %s:%d: %s", self.host, self.port, exc)
            return False
        httpd.daemon_threads = True
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="genesis-ops",
                         daemon=True).start()
        log.info("ops endpoint on http://%s:%d (/health, /metrics, /status)", self.host, self.port)
        return True

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
