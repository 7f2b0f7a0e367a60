"""``genesis db stats``: rows and bytes per table, per camera and camera-day, and MB per camera-day.

The figures come from :func:`genesis.adapters.db.storage.storage_stats`; this module only prints them.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from genesis.cli.common import ConfigOpt, cells, console, fail, settings_from

METHODS = {
    "pg_total_relation_size": "PostgreSQL's pg_total_relation_size (heap + TOAST + indexes), pg_relation_size, "
                              "pg_indexes_size",
    "dbstat": "SQLite's dbstat virtual table (pages of each b-tree)",
    "page_count": "SQLite page_count x page_size (dbstat not available: the whole file only, no per-table bytes)",
}


def human(n: int | float | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def stats_command(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of tables.")] = False,
    per_day: Annotated[bool, typer.Option("--per-day/--no-per-day",
                                          help="Rows per camera and UTC day (reads every row of the large "
                                               "tables).")] = True,
) -> None:
    """Rows and bytes per table (table + indexes + TOAST), rows per camera and per camera-day, the projected
    MB per camera-day (an estimate: each table's bytes per row x the day's rows), and what each camera holds once
    its oldest rows reach the configured retention."""
    from genesis.adapters.db import DatabaseError, Repository
    from genesis.adapters.db.storage import storage_stats
    from genesis.services.rollups import kept_days

    settings = settings_from(config)
    try:
        with Repository(settings.database_url, migrate=False) as repo:
            stats = storage_stats(repo.engine, per_day=per_day, keep_days=kept_days(settings),
                                  pack_after_days=settings.retention.packed_after_days())
    except DatabaseError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(stats.to_dict(), sort_keys=True))
        return
    t = Table(title=f"tables ({stats.dialect})")
    for col in ("table", "rows", "total", "heap", "indexes", "toast", "bytes/row"):
        t.add_column(col, justify="left" if col == "table" else "right")
    for ts in sorted(stats.tables, key=lambda x: (-(x.bytes or 0), x.table)):
        t.add_row(*cells(ts.table, f"{ts.rows:,}", human(ts.bytes), human(ts.heap_bytes), human(ts.index_bytes),
                         human(ts.toast_bytes), "-" if ts.bytes_per_row is None else f"{ts.bytes_per_row:.0f}"))
    console.print(t)
    console.print(f"bytes measured with {METHODS.get(stats.method, stats.method)}; tables {human(stats.tables_bytes)}, "
                  f"whole database {human(stats.database_bytes)}", highlight=False, soft_wrap=True)
    if not per_day:
        return
    names = sorted({n for d in stats.camera_days for n in d.rows})
    if stats.cameras:
        c = Table(title="per camera")
        for col in ("camera", "days", *names, "bytes (est.)", "MB/day (est.)", "at retention (est.)"):
            c.add_column(col, justify="left" if col == "camera" else "right")
        for cam in stats.cameras:
            c.add_row(*cells(cam.camera_id, cam.days, *(f"{cam.rows.get(n, 0):,}" for n in names),
                             human(cam.bytes_estimate), "?" if cam.mb_per_day is None else f"{cam.mb_per_day:.2f}",
                             human(cam.bytes_at_retention)))
        console.print(c)
        d = Table(title="per camera-day (UTC)")
        for col in ("camera", "day", *names, "bytes (est.)"):
            d.add_column(col, justify="left" if col in ("camera", "day") else "right")
        for day in stats.camera_days:
            d.add_row(*cells(day.camera_id, day.day.isoformat(), *(f"{day.rows.get(n, 0):,}" for n in names),
                             human(day.bytes_estimate)))
        console.print(d)
    mb = stats.mb_per_camera_day
    console.print(
        "projection: " + ("no camera-day stored yet" if not stats.camera_days else
                          "? MB per camera-day (no per-table bytes)" if mb is None else
                          f"{mb:.2f} MB per camera-day, averaged over the {len(stats.camera_days)} camera-days "
                          "stored (partial days included; an estimate: bytes per row x rows)"),
        highlight=False, soft_wrap=True)
    kept = [c.bytes_at_retention for c in stats.cameras if c.bytes_at_retention is not None]
    if kept and len(kept) == len(stats.cameras):
        r = settings.retention
        packed = r.packed_after_days()
        packing = "never packed" if packed is None else f"packed after {packed} d"
        console.print(
            f"at the configured retention (points {r.sightings_days} d, unknown faces {r.unknown_faces_days} d, events "
            f"{r.events_days} d, unnamed passages {packing}): {human(sum(kept))} for these cameras once their "
            "oldest rows reach it (an estimate: each table's rows a day x bytes per row x the days it keeps them)",
            highlight=False, soft_wrap=True)
