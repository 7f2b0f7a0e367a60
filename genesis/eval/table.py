"""Aligned Markdown tables: readable in a terminal and pasteable into the docs."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """First column left-aligned, the others right-aligned (numbers)."""
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(
            cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ) + " |"

    sep = "| " + " | ".join(("-" * w if c == 0 else "-" * (w - 1) + ":") for c, w in enumerate(widths)) + " |"
    return "\n".join([line(table[0]), sep, *(line(r) for r in table[1:])])
