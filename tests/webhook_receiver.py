"""A real local HTTP server that receives alert webhooks (http.server in a thread).

It answers 500 to the first POST of each alert id (``X-Genesis-Alert-Id``) when ``fail_first``
is set, 200 afterwards, and records every request, so a test can check that each alert was
accepted exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    alert_id: str
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Receiver:
    url: str
    fail_first: bool
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> Counter[str]:
        """Alert id -> number of POSTs answered 200."""
        with self.lock:
            return Counter(r.alert_id for r in self.requests if r.status == 200)

    def refused(self) -> Counter[str]:
        with self.lock:
            return Counter(r.alert_id for r in self.requests if r.status != 200)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.accepted()) >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"{len(self.accepted())} of {count} alerts accepted after {timeout} s: {self.requests}")


@contextmanager
def webhook_receiver(fail_first: bool = True) -> Iterator[Receiver]:
    receiver = Receiver(url="", fail_first=fail_first)
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            alert_id = self.headers.get("X-Genesis-Alert-Id", "")
            with receiver.lock:
                status = 200
                if receiver.fail_first and alert_id not in seen:
                    seen.add(alert_id)
                    status = 500
                receiver.requests.append(Received(alert_id, status, json.loads(raw), dict(self.headers.items())))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
