"""What every ``genesis`` sub-command shares: the consoles, ``--config`` and error exits.

A module of its own so that the command modules can import it at the top without importing
each other (``genesis.cli.main`` registers them all)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from genesis.config import ConfigError, Settings, default_settings, load_settings
from genesis.domain.printable import escape_controls
from genesis.domain.redact import redact

console = Console()
err_console = Console(stderr=True)


def safe(value: object) -> str:
    """User text (a name, a message, a zone ...) made inert for the Rich consoles: markup such as
    ``[/bold]`` or ``[link=...]`` is escaped (printed as typed), and control characters (terminal
    escape sequences, bidi overrides) are shown as ``\\xNN`` instead of being sent to the terminal."""
    return escape(escape_controls(value, keep="\t\n"))


def cells(*values: object) -> list[str]:
    """A table row of user values, each through :func:`safe` (Rich parses markup in table cells)."""
    return [safe(v) for v in values]

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Settings YAML (default: $GENESIS_CONFIG, else configs/settings.yaml if present)."
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: MESSAGE`` (credentials redacted, markup escaped) and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {safe(redact(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_from(config: Path | None) -> Settings:
    try:
        return load_settings(config) if config is not None else default_settings()
    except ConfigError as exc:
        fail(str(exc), 2)
