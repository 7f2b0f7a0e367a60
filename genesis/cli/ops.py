"""``genesis ops``: look at the ops endpoints of running processes (container healthchecks too).

``genesis ops check URL`` exits 0 when the endpoint answers 200 (``ok`` or ``degraded``), 1 when it
answers ``failing`` (503) or anything else, 2 when nothing answers; it prints the status and
reasons on one line. ``genesis ops status URL`` prints an endpoint's ``/status`` JSON.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Annotated

import typer

ops_app = typer.Typer(help="Operations: query the /health and /status endpoints of running processes.",
                      no_args_is_help=True)

UrlArg = Annotated[str, typer.Argument(help="Endpoint URL, e.g. http://127.0.0.1:8080/health (or host:port).")]


def _url(url: str, path: str) -> str:
    if "://" not in url:
        url = f"http://{url}"
    rest = url.partition("://")[2]
    return url if "/" in rest else f"{url}{path}"


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _ask(url: str, path: str, timeout: float) -> tuple[str, int, bytes]:
    """(the endpoint's URL, HTTP status, body) of ``path`` on the process at ``url``; exit 2 when it does
    not answer."""
    from genesis.cli.common import fail

    target = _url(url, path)
    try:
        code, body = _get(target, timeout)
    except (urllib.error.URLError, OSError) as exc:
        fail(f"{target}: no answer ({getattr(exc, 'reason', exc)})", 2)
    return target, code, body


@ops_app.command("check")
def check(url: UrlArg, timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 5.0) -> None:
    """Exit 0 if the endpoint is healthy (ok or degraded), 1 if not, 2 if it does not answer."""
    from genesis.cli.common import console, fail

    target, code, body = _ask(url, "/health", timeout)
    try:
        data = json.loads(body)
        status = str(data.get("status", code))
        reasons = [str(r) for r in data.get("reasons", [])]
    except (ValueError, AttributeError):
        status, reasons = body.decode("utf-8", "replace").strip()[:80] or str(code), []
    line = f"{target}: {status}" + (f" ({'; '.join(reasons)})" if reasons else "")
    if code != 200:
        fail(f"{line} [HTTP {code}]", 1)
    console.print(line, highlight=False, soft_wrap=True)


@ops_app.command("status")
def status(url: UrlArg, timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 5.0) -> None:
    """Print the /status JSON of a process."""
    from genesis.cli.common import console, fail

    target, code, body = _ask(url, "/status", timeout)
    if code != 200:
        fail(f"{target}: HTTP {code}", 1)
    console.print_json(body.decode("utf-8", "replace"))


if __name__ == "__main__":
    # `python -m genesis.cli.ops check URL`: the containers' health checks. The same command as
    # `genesis ops check`, without importing the whole CLI (a tenth of the CPU time: it matters
    # on a host whose cores the workers keep busy, where every service checks every 15 s).
    ops_app()
