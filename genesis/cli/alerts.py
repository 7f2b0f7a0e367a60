"""``genesis alerts``: list stored alerts (filters, table or JSON) and acknowledge them.

Registered on the main CLI as ``genesis alerts``. Like genesis/cli/dlq.py, the helpers of
:mod:`genesis.cli.main` are imported when a command runs, so the two modules import each other
in any order.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from genesis.cli.common import ConfigOpt, cells
from genesis.config.alerts import ALERT_KINDS

alerts_app = typer.Typer(help="Alerts raised by the rules: list them (filters, --json) and acknowledge them.",
                         invoke_without_command=True)


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """An ISO date/time (UTC when no zone is given) or a duration ago: ``30m``, ``2h``, ``7d``, ``1w``."""
    now = now or datetime.now(UTC)
    text = value.strip()
    m = _RELATIVE.match(text)
    if m:
        return now - timedelta(seconds=float(m[1]) * _UNITS[m[2]])
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        msg = f"{value!r} is neither an ISO date/time (2026-11-28T14:00) nor a duration (30m, 2h, 7d)"
        raise ValueError(msg) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _fail(message: str, code: int = 1) -> Any:
    from genesis.cli.common import fail

    fail(message, code)


def _store(config: Path | None) -> Any:
    from genesis.adapters.db import Repository
    from genesis.adapters.db.alerts import AlertStore
    from genesis.cli.common import settings_from

    repo = Repository(settings_from(config).database_url)
    return repo, AlertStore(repo.engine)


@alerts_app.callback()
def alerts(
    ctx: typer.Context,
    camera: Annotated[str | None, typer.Option("--camera", help="Only this camera.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help=f"Only this kind: {', '.join(ALERT_KINDS)}.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this time: ISO (UTC) or 30m, 2h, 7d ago.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Before this time (same forms).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List stored alerts, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    if kind is not None and kind not in ALERT_KINDS:
        _fail(f"--kind must be one of {', '.join(ALERT_KINDS)}, got {kind!r}", 2)
    try:
        t_since = parse_time(since) if since else None
        t_until = parse_time(until) if until else None
    except ValueError as exc:
        _fail(str(exc), 2)
    repo, store = _store(config)
    try:
        rows = store.query(camera, kind, t_since, t_until, limit)
        deliveries: dict[int, list[Any]] = {}
        for d in store.deliveries([r.id for r in rows]) if rows else []:
            deliveries.setdefault(d.alert_id, []).append(d)
    finally:
        repo.close()
    from genesis.cli.common import console

    if as_json:
        for r in rows:
            doc = {**r.payload(), "acknowledged_at": r.acknowledged_at.isoformat() if r.acknowledged_at else None,
                   "deliveries": {d.target: d.status for d in deliveries.get(r.id, [])}}
            print(json.dumps(doc, sort_keys=True))
        return
    if not rows:
        console.print("no alerts")
        return
    console.print(alerts_table(rows, deliveries))


def _delivery_cell(items: list[Any]) -> str:
    if not items:
        return "-"
    done = sum(1 for d in items if d.status == "delivered")
    failed = sum(1 for d in items if d.status == "failed")
    text = f"{done}/{len(items)}"
    return text + (f" ({failed} failed)" if failed else "")


def alerts_table(rows: list[Any], deliveries: dict[int, list[Any]]) -> Table:
    t = Table(title=f"Alerts ({len(rows)}, newest first)")
    for col in ("id", "time (UTC)", "camera", "kind", "zone", "who", "value", "message", "delivered", "ack"):
        t.add_column(col, overflow="fold")
    for r in rows:
        who = r.identity or (f"track {r.track_id}" if r.track_id >= 0 else "")
        t.add_row(*cells(r.id, r.at.strftime("%Y-%m-%d %H:%M:%S"), r.camera_id, r.kind, r.zone or "", who,
                         f"{r.value:g} / {r.threshold:g}", r.message, _delivery_cell(deliveries.get(r.id, [])),
                         "yes" if r.acknowledged_at else ""))
    return t


@alerts_app.command("ack")
def ack(
    alert_ids: Annotated[list[int], typer.Argument(help="Alert ids (the id column of `genesis alerts`).")],
    config: ConfigOpt = None,
) -> None:
    """Acknowledge alerts."""
    from genesis.cli.common import console

    repo, store = _store(config)
    try:
        missing = [i for i in alert_ids if not store.acknowledge(i)]
    finally:
        repo.close()
    done = [i for i in alert_ids if i not in missing]
    if done:
        console.print(f"acknowledged {', '.join(str(i) for i in done)}")
    if missing:
        _fail(f"no alert with id {', '.join(str(i) for i in missing)}")


def print_alert_summary(console: Console, report: dict[str, Any]) -> None:
    """The alerts part of the run summary."""
    res = report["results"].get("alerts")
    if not res or not res["count"]:
        return
    t = Table(title=f"Alerts ({res['count']}: " + ", ".join(f"{n} {k}" for k, n in res["by_kind"].items() if n) + ")")
    for col in ("at (s)", "kind", "zone", "who", "message"):
        t.add_column(col)
    for a in res["items"][:20]:
        who = a["identity"] or (f"track {a['track_id']}" if a["track_id"] is not None else "")
        t.add_row(*cells(f"{a['ts']:.1f}", a["kind"], a["zone"] or "", who, a["message"]))
    console.print(t)
    if res["count"] > 20:
        console.print(f"... and {res['count'] - 20} more in report.json (or `genesis alerts`)")
    delivery = report.get("run", {}).get("alert_delivery")
    if delivery and delivery.get("alerts") and (delivery["failed"] or delivery["pending"]):
        console.print(f"[yellow]alert delivery:[/] {delivery['delivered']} delivered, {delivery['failed']} failed, "
                      f"{delivery['pending']} still pending (see `genesis alerts`)")
