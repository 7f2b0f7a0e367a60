"""Capture launcher: ``python workers/capture.py --config configs/settings.yaml [--camera ID]``.

Captures every camera of the configuration that has a ``source`` (or only ``--camera``) into
the distributed pipeline; the same code as ``genesis capture``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer

from genesis.cli.capture import capture_command
from genesis.ops.launch import port_number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", "-c", type=Path, default=None, help="Settings YAML.")
    parser.add_argument("--camera", default=None, help="Only this camera (default: every camera with a source).")
    parser.add_argument("--source", default=None, help="Override the camera's source (needs --camera).")
    parser.add_argument("--stride", type=int, default=None, help="Capture every Nth frame.")
    parser.add_argument("--max-frames", type=int, default=None, help="Stop after N frames read.")
    http = parser.add_mutually_exclusive_group()
    http.add_argument("--port", type=port_number, default=None,
                      help="Port of the /health, /metrics, /status endpoint (default: ops.ports.capture).")
    http.add_argument("--no-http", action="store_true", help="Serve no endpoint.")
    args = parser.parse_args(argv)
    if args.source is not None and args.camera is None:
        parser.error("--source needs --camera")
    try:
        capture_command(source=args.source, camera=args.camera, config=args.config, stride=args.stride,
                        max_frames=args.max_frames, all_cameras=args.camera is None,
                        port=args.port, no_http=args.no_http)
    except typer.Exit as exc:
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
