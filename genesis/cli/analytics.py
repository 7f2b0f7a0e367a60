"""``genesis heatmap`` and ``genesis rollup``: analytics over the stored rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from genesis.cli.common import ConfigOpt, cells, console, err_console
from genesis.config.rollups import Granularity

SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Start (ISO 8601, e.g. 2026-11-28T10:00; UTC when no zone is given).")
]
UntilOpt = Annotated[str | None, typer.Option("--until", help="End, exclusive (ISO 8601; UTC when no zone).")]


def parse_time(value: str | None, option: str) -> float | None:
    """An ISO 8601 time as epoch seconds (naive times are UTC); a clear error otherwise."""
    from genesis.cli.common import fail

    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} {value!r}: not an ISO 8601 time (e.g. 2026-11-28T10:00 or 2026-11-28T10:00:00+01:00)", 2)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def identity_breakdown_table(res: dict[str, Any]) -> Table | None:
    """The summary's "Identity breakdown": one row per (person, zone) and (person, line)."""
    if not any(i["zones"] or i["lines"] for i in res["identities"]):
        return None
    names = {ln["name"]: (ln["in_name"], ln["out_name"]) for ln in res["lines"]}
    t = Table(title="Identity breakdown")
    for col in ("name", "zone / line", "visits", "dwell total (s)", "mean dwell (s)", "max dwell (s)", "crossings"):
        t.add_column(col)
    for ident in res["identities"]:
        for zone, z in ident["zones"].items():
            t.add_row(*cells(ident["name"], zone, z["visits"], f"{z['dwell_s']:.1f}", f"{z['mean_dwell_s']:.1f}",
                             f"{z['max_dwell_s']:.1f}", ""))
        for line, c in ident["lines"].items():
            in_name, out_name = names.get(line, ("in", "out"))
            t.add_row(*cells(ident["name"], line, "", "", "", "", f"{c['in']} {in_name}, {c['out']} {out_name}"))
    return t


def heatmap_command(
    camera: Annotated[str, typer.Argument(help="Camera id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    since: SinceOpt = None,
    until: UntilOpt = None,
    cell: Annotated[int | None, typer.Option("--cell", min=1, max=64, help="Grid cell in pixels.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Accumulated foot points of a camera (its hourly grids, whole hours), as a colour overlay on its latest
    snapshot."""
    import cv2
    import numpy as np

    from genesis.adapters.db import Repository
    from genesis.adapters.db.analytics import AnalyticsStore
    from genesis.cli.common import fail, settings_from
    from genesis.services.heatmap import grid_image

    settings = settings_from(config)
    lo, hi = parse_time(since, "--since"), parse_time(until, "--until")
    if lo is not None and hi is not None and hi <= lo:
        fail("--until must be after --since", 2)
    if out.suffix.lower() != ".png":
        fail(f"--out {out}: the heatmap is written as PNG (give a .png file)", 2)
    with Repository(settings.database_url) as repo:
        store = AnalyticsStore(repo)
        known = store.cameras()
        if camera not in known:
            fail(f"unknown camera {camera!r}: no runs stored for it"
                 + (f" (cameras with runs: {', '.join(known)})" if known else " (the database has no runs)"))
        with console.status(f"reading the heatmap grids of {camera}..."):
            heat = store.heat_grid(camera, lo, hi)
        if heat is None or heat.points == 0:
            window = f"between {_iso(lo) if lo else 'the start'} and {_iso(hi) if hi else 'now'}"
            fail(f"no sightings of camera {camera!r} {window}")
        snap = store.snapshot(camera)
        background = None
        if snap is not None:
            jpeg, _width, _height, _taken = snap
            background = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    stored = heat.cell_px
    if cell is not None and cell != stored and cell % stored:
        fail(f"--cell {cell}: the grids are stored at {stored} px cells; give a multiple of {stored}", 2)
    image, points = grid_image(heat, background, cell), heat.points
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), image):
        fail(f"cannot write {out}")
    note = "" if background is not None else " (no snapshot stored: on black)"
    console.print(f"wrote {out}: {points} foot points of camera {camera}{note}")


def rollup_command(
    since: SinceOpt = None,
    until: UntilOpt = None,
    granularity: Annotated[
        list[str] | None,
        typer.Option("--granularity", "-g", help="minute, hour or day (repeatable; default: the configured ones)."),
    ] = None,
    camera: Annotated[str | None, typer.Option("--camera", help="Only this camera.")] = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also apply the retention purge.")] = False,
    config: ConfigOpt = None,
) -> None:
    """(Re)build the rollups of a time window from the stored rows (default: all stored data)."""
    from genesis.adapters.db import Repository
    from genesis.adapters.db.analytics import AnalyticsStore
    from genesis.cli.common import fail, settings_from
    from genesis.services.rollups import BUCKET_S, align_down, align_up, rollup
    from genesis.services.rollups import purge as do_purge

    settings = settings_from(config)
    grans = granularity or list(settings.rollups.granularities)
    for g in grans:
        if g not in BUCKET_S:
            fail(f"--granularity {g!r}: use minute, hour or day", 2)
    lo, hi = parse_time(since, "--since"), parse_time(until, "--until")
    with Repository(settings.database_url) as repo:
        span = AnalyticsStore(repo).time_range(camera)
        if span is None and (lo is None or hi is None):
            fail("no runs stored" + (f" for camera {camera!r}" if camera else "") + ": nothing to roll up")
        if span is not None:
            lo = span[0] if lo is None else lo
            hi = span[1] + 1.0 if hi is None else hi
        assert lo is not None and hi is not None
        if hi <= lo:
            fail("--until must be after --since", 2)
        chunks: list[tuple[Granularity, float, float]] = []
        for g in grans:
            gran: Granularity = g  # type: ignore[assignment]
            step = max(BUCKET_S[g], 86400.0)  # one day of buckets per transaction
            start, end = align_down(lo, g), align_up(hi, g)
            while start < end:
                chunks.append((gran, start, min(start + step, end)))
                start += step
        totals: dict[str, dict[str, int]] = {g: {} for g in grans}
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=err_console) as bar:
            task = bar.add_task("rollups", total=len(chunks))
            for gran, a, b in chunks:
                res = rollup(repo, gran, a, b, camera)
                for kind, count in res.rows.items():
                    totals[gran][kind] = totals[gran].get(kind, 0) + count
                bar.advance(task)
        purged = do_purge(repo, settings) if purge else None
    t = Table(title=f"Rollups {_iso(lo)} .. {_iso(hi)}" + (f", camera {camera}" if camera else ""))
    for col in ("granularity", "camera rows", "zone rows", "line rows", "identity rows", "identity x zone rows"):
        t.add_column(col)
    for g in grans:
        t.add_row(g, *(str(totals[g].get(k, 0)) for k in ("camera", "zone", "line", "identity", "identity_zone")))
    console.print(t)
    if purged is not None:
        console.print("purged: " + ", ".join(f"{k} {v}" for k, v in purged.items()))
