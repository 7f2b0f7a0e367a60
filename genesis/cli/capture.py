"""``genesis capture``: the capture process of the distributed mode, one camera or all of them.

Kept apart from ``genesis.cli.main`` so that ``workers/capture.py`` can run the same code; the
helpers of the CLI (``fail``, ``settings_from``, the consoles) are imported when the command
runs, which keeps ``genesis.cli.main`` free to import this module at its top.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from genesis.cli.common import ConfigOpt
from genesis.config import CameraConfig, ConfigError, Settings
from genesis.domain.redact import redact

if TYPE_CHECKING:  # imported by the capture itself: every other command starts without them (about 1 s)
    from genesis.pipeline.capture import CaptureLoop, CaptureStats


@dataclass(slots=True)
class CaptureResult:
    camera: CameraConfig
    source: str
    stats: CaptureStats | None = None
    error: str | None = None


def capture_targets(
    settings: Settings, source: str | None, camera: str | None, all_cameras: bool
) -> list[tuple[CameraConfig, str]] | str:
    """The (camera, source) pairs to capture, or an error message."""
    if all_cameras:
        if source is not None or camera is not None:
            return "--all captures every configured camera: give no --source or --camera with it"
        targets = [(c, c.source) for c in settings.cameras if c.source]
        if not targets:
            return "--all: no camera of the configuration has a source"
        return targets
    try:
        cam = settings.camera(camera, source)
    except ConfigError as exc:  # an id that breaks the camera-id rule
        return f"--camera: {exc}"
    if source is None:
        if camera is None:
            return "give --source FILE|URL|INDEX, --camera ID of a configured camera with a source, or --all"
        if cam.source is None:
            return f"camera {camera} has no source in the configuration: give --source"
        source = cam.source
    return [(cam, source)]


def run_captures(
    settings: Settings,
    targets: list[tuple[CameraConfig, str]],
    *,
    stride: int | None = None,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[list[CaptureLoop]], Callable[[], None]] | None = None,
) -> list[CaptureResult]:
    """Capture every target in its own thread until each ends (files) or ``stop`` is set.

    SIGINT and SIGTERM set ``stop`` (when called from the main thread), so live captures end
    cleanly and publish their end marker; a second SIGINT interrupts at once. ``on_start`` is
    given the loops before they run (the ops endpoint) and returns what to call at the end.
    """
    from genesis.adapters.video import SourceError
    from genesis.pipeline.capture import distributed_capture
    from genesis.tasks.celery_config import make_app

    stop = stop or threading.Event()
    results = [CaptureResult(cam, src) for cam, src in targets]
    # Everything is built here, in the calling thread: first imports (celery's lazy module
    # among them) are not safe to race from several threads. One Celery app per camera.
    loops = [
        distributed_capture(settings, r.camera, r.source, app=make_app(settings), stop=stop,
                            stride=stride, max_frames=max_frames)
        for r in results
    ]

    def work(result: CaptureResult, loop: CaptureLoop) -> None:
        try:
            result.stats = loop.run()
        except SourceError as exc:
            result.error = str(exc)
        except Exception as exc:  # reported per camera; the other cameras go on
            result.error = f"{type(exc).__name__}: {exc}"
            result.stats = loop.stats()

    threads = [
        threading.Thread(target=work, args=(r, loop), name=f"capture-{r.camera.id}", daemon=True)
        for r, loop in zip(results, loops, strict=True)
    ]
    restore = _stop_on_signals(stop)
    finish = on_start(loops) if on_start is not None else None
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
    finally:
        restore()
        if finish is not None:
            finish()
    return results


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Route SIGINT/SIGTERM to ``stop``; returns a function that puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    for s in previous:
        signal.signal(s, handler)

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


def summary_line(result: CaptureResult) -> str:
    s = result.stats
    assert s is not None
    if not s.started:
        return (f"camera {result.camera.id}: stopped before the source connected ({redact(result.source)}); "
                "no run recorded")
    extra = f", reconnects {s.reconnects} (lost {s.outage_s:.1f} s)" if s.reconnects else ""
    extra += f", skipped {s.skipped} (fps limit)" if s.skipped else ""
    extra += f", still {s.still} (sent as markers, not detected)" if s.still else ""
    extra += f", damaged {s.damaged} (skipped in {s.damaged_places} damaged place(s) of the file)" \
        if s.damaged_places else ""
    why = ", ".join(f"{reason} {n}" for reason, n in sorted(s.dropped_by.items())) or "backpressure"
    return (
        f"camera {result.camera.id}: published {s.published}, dropped {s.dropped} ({why}), "
        f"read {s.read}{extra}, run {s.run_id}"
    )


def capture_command(
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Video file, RTSP/HTTP URL or webcam index (default: the camera's)."),
    ] = None,
    camera: Annotated[str | None, typer.Option("--camera", help="Camera id (from the config).")] = None,
    config: ConfigOpt = None,
    stride: Annotated[int | None, typer.Option("--stride", min=1, help="Capture every Nth frame.")] = None,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Stop after N frames read (after the stride).")
    ] = None,
    all_cameras: Annotated[
        bool, typer.Option("--all", help="Capture every camera of the config that has a source (one thread each).")
    ] = False,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535,
                     help="Port of the /health, /metrics, /status endpoint (default: ops.port, else ops.ports.capture; "
                     "0 = none)."),
    ] = None,
    no_http: Annotated[bool, typer.Option("--no-http", help="Serve no endpoint.")] = False,
) -> None:
    """Capture a source into the distributed pipeline: frames to Redis, references to the detect queue."""
    from genesis.cli.common import console, err_console, fail, settings_from

    settings = settings_from(config)
    targets = capture_targets(settings, source, camera, all_cameras)
    if isinstance(targets, str):
        fail(targets, 2)
    from genesis.ops.capture import endpoint_starter

    http_port = 0 if no_http else port
    results = run_captures(settings, targets, stride=stride, max_frames=max_frames,
                           on_start=endpoint_starter(settings, http_port))
    failed = [r for r in results if r.error is not None]
    for r in results:
        if r.stats is not None and r.error is None:
            console.print(summary_line(r), highlight=False, soft_wrap=True)
    if len(results) == 1 and failed:
        fail(failed[0].error or "capture failed")
    for r in failed:
        err_console.print(f"[bold red]error:[/] camera {r.camera.id}: {r.error}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
