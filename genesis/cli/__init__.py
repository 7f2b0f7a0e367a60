"""The `genesis` command line: one module per command group (``genesis.cli.main`` assembles them)."""

from __future__ import annotations


def main() -> None:
    """The console script's entry point (imports the commands only when called)."""
    from genesis.cli.main import main as run

    run()
