"""A names column: a few names in one text column, each between two :data:`SEP` (``passage_packs.zones``,
``attempt_packs.names``), so that SQL finds the rows holding a name with one LIKE. Below the codecs that use it
(`genesis.adapters.db.packs`, `genesis.adapters.db.attempts`), which need nothing else of each other."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SEP = "\x1f"
"""Separates the names: the unit separator, a character of no zone's or identity's name."""


def joined(names: Sequence[str]) -> str:
    """A names column: each name between two :data:`SEP` ("" for none); ValueError for a name that holds it."""
    for n in names:
        if SEP in n:
            raise ValueError(f"a name holds a control character: {n!r}")
    return "".join(SEP + n for n in names) + SEP if names else ""


def split(column: str) -> list[str]:
    """The names of a names column, in their order."""
    return column.split(SEP)[1:-1] if column else []


def holding(column: Any, name: str) -> Any:
    """SQL: the rows whose names ``column`` holds ``name`` (an exact name; LIKE's wildcards in it escaped)."""
    return column.contains(SEP + name + SEP, autoescape=True)


__all__ = ["SEP", "holding", "joined", "split"]
