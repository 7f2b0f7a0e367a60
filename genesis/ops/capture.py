"""The ops endpoint of the capture process (``genesis capture``, ``workers/capture.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from genesis.config import Settings

if TYPE_CHECKING:
    from genesis.pipeline.capture import CaptureLoop


def capture_port(settings: Settings, port: int | None) -> int:
    """``--port`` when given, else ``ops.port``, else ``ops.ports.capture`` (0: no endpoint)."""
    if port is not None:
        return port
    return settings.ops.port if settings.ops.port is not None else settings.ops.ports.capture


def endpoint_starter(
    settings: Settings, port: int | None
) -> Callable[[list[CaptureLoop]], Callable[[], None]]:
    """For ``run_captures(on_start=...)``: serve the loops' health, status and metrics while they run."""

    def start(loops: list[CaptureLoop]) -> Callable[[], None]:
        chosen = capture_port(settings, port)
        if not chosen:
            return lambda: None
        from genesis.ops.server import OpsServer
        from genesis.ops.status import CaptureProbe

        server = OpsServer(CaptureProbe(settings, lambda: [loop.status() for loop in loops]), settings.ops.host,
                           chosen)
        server.start()
        return server.stop

    return start
