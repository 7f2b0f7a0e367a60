"""What every ``genesis`` sub-command shares: the consoles, ``--config`` and error exits.

A module of its own so that the command modules can import it at the top without importing
each other (``genesis.cli.main`` registers them all)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from genesis.config import ConfigError, Settings, default_settings, load_settings

console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Settings YAML (default: $GENESIS_CONFIG, else configs/settings.yaml if present)."
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_from(config: Path | None) -> Settings:
    try:
        return load_settings(config) if config is not None else default_settings()
    except ConfigError as exc:
        fail(str(exc), 2)
