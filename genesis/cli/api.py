"""``genesis serve`` (the REST API and dashboard) and ``genesis apikey create|list|revoke``.

Registered on the main CLI; the helpers of :mod:`genesis.cli.main` are imported when a command runs
(as in :mod:`genesis.cli.dlq`), so the two modules can import each other in any order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from genesis.cli.common import ConfigOpt, fail, settings_from

if TYPE_CHECKING:
    from genesis.config import Settings
    from genesis.config.api import ApiConfig
    from genesis.ops.server import OpsServer

apikey_app = typer.Typer(help="API keys of the REST API and dashboard: create, list, revoke.", no_args_is_help=True)





def _print(*objects: object, **kwargs: object) -> None:
    from genesis.cli.common import console

    console.print(*objects, **kwargs)  # type: ignore[arg-type]


def serve_command(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default: api.host).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port (default: api.port, 8000).")
    ] = None,
    ops_port: Annotated[
        int | None,
        typer.Option("--ops-port", min=0, max=65535,
                     help="Port of /health, /metrics and /status for Prometheus (default: ops.port, else "
                          "ops.ports.api, 8086; 0 = none)."),
    ] = None,
    ops_host: Annotated[
        str | None,
        typer.Option("--ops-host", help="Address of that endpoint (default: ops.host when it is set, else the "
                                        "API's own address)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the REST API (OpenAPI docs at /docs) and the web dashboard (at /)."""
    import uvicorn

    from genesis.adapters.db import DatabaseError
    from genesis.api import create_app
    from genesis.api.server import uvicorn_options

    settings = settings_from(config)
    try:
        app = create_app(settings)
    except DatabaseError as exc:
        fail(f"cannot open the database: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    _warn_plaintext()
    bind_host = host or settings.api.host
    bind_port = port or settings.api.port
    _print(f"Genesis API on http://{bind_host}:{bind_port} (dashboard /, docs /docs)", highlight=False)
    api = _fit_connections(settings)
    ops = _ops_endpoint(settings, ops_port, _ops_host(settings, ops_host, bind_host), f"{bind_host}:{bind_port}")
    try:
        uvicorn.run(app, host=bind_host, port=bind_port, log_level="info", proxy_headers=False,
                    **uvicorn_options(api))
    except OSError as exc:
        fail(f"cannot listen on {bind_host}:{bind_port}: {exc}")
    finally:
        if ops is not None:
            ops.stop()


def _fit_connections(settings: Settings) -> ApiConfig:
    """``api`` with ``max_connections`` (and ``limit_concurrency``) lowered to what the open-file
    limit allows, after raising it as far as the hard limit goes; one warning line when lowered."""
    from genesis.api.server import fit_file_limit
    from genesis.cli.common import err_console

    api = settings.api
    fits = fit_file_limit(api.max_connections)
    if fits >= api.max_connections:
        return api
    err_console.print(f"[yellow]warning:[/] the open-file limit (ulimit -n) allows {fits} connections, not "
                      f"api.max_connections {api.max_connections}: serving at most {fits}", highlight=False)
    return api.model_copy(update={"max_connections": fits, "limit_concurrency": min(api.limit_concurrency, fits)})


def _warn_plaintext() -> None:
    """One line at start when biometric data would be stored in the clear (docs/security.md)."""
    from genesis.cli.common import err_console
    from genesis.identities.crypto import KEY_ENV, BiometricCipher, BiometricKeyError

    try:
        enabled = BiometricCipher.from_env().enabled
    except BiometricKeyError as exc:
        fail(str(exc), 2)
    if not enabled:
        err_console.print(f"[yellow]warning:[/] {KEY_ENV} is not set: enrolled embeddings and face crops are stored "
                          "in the clear (genesis identities new-key; docs/security.md)", highlight=False)


def _ops_host(settings: Settings, option: str | None, api_host: str) -> str:
    """Where the ops endpoint of ``genesis serve`` listens: ``--ops-host``, else an ``ops.host`` that
    was set (file or GENESIS_OPS__HOST), else where the API listens — an API kept on 127.0.0.1 does
    not get its status published on every interface by the workers' default (0.0.0.0)."""
    if option:
        return option
    return settings.ops.host if "host" in settings.ops.model_fields_set else api_host


def _ops_endpoint(settings: Settings, port: int | None, host: str, listen: str) -> OpsServer | None:
    """The process's own /health, /metrics and /status (like every worker's), on its ops port:
    Prometheus scrapes it without an API key, and the API's routes stay behind keys; ``listen`` is
    the API's address as /status reports it."""
    from genesis.ops.server import OpsServer
    from genesis.ops.status import ApiProbe

    chosen = port if port is not None else settings.ops.port
    if chosen is None:
        chosen = settings.ops.ports.api
    if not chosen:
        return None
    server = OpsServer(ApiProbe(settings, listen), host, chosen)
    return server if server.start() else None




@apikey_app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", "-r", help="viewer, operator or admin.")],
    name: Annotated[str, typer.Option("--name", "-n", help="A label for the key (default: ROLE-ID).")] = "",
    config: ConfigOpt = None,
) -> None:
    """Create a key and print it (only this once: it is stored hashed)."""
    from genesis.adapters.db import Repository
    from genesis.adapters.db.apikeys import ApiKeyStore
    from genesis.adapters.db.tables_api import API_ROLES

    if role not in API_ROLES:
        fail(f"--role must be one of {', '.join(API_ROLES)}", 2)
    settings = settings_from(config)
    with Repository(settings.database_url) as repo:
        try:
            token, info = ApiKeyStore(repo.engine).create(role, name)
        except ValueError as exc:
            fail(str(exc), 2)
    from genesis.cli.common import err_console, safe

    err_console.print(f"created key {info.id} ({safe(info.name)}, role {info.role}); it is shown only now:",
                      highlight=False)
    print(token)


@apikey_app.command("list")
def list_keys(config: ConfigOpt = None) -> None:
    """List keys (ids, names, roles; never the keys themselves)."""
    from genesis.adapters.db import Repository
    from genesis.adapters.db.apikeys import ApiKeyStore

    settings = settings_from(config)
    with Repository(settings.database_url) as repo:
        keys = ApiKeyStore(repo.engine).list()
    if not keys:
        _print("no API keys: genesis apikey create --role ROLE")
        return
    t = Table(title="API keys")
    for col in ("id", "name", "role", "created (UTC)", "last used (UTC)", "status"):
        t.add_column(col)
    from genesis.cli.common import safe

    for k in keys:
        t.add_row(k.id, safe(k.name), k.role, k.created_at.strftime("%Y-%m-%d %H:%M"),
                  k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "-",
                  "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M}")
    _print(t)


@apikey_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key id (see `genesis apikey list`).")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a key: it stops working at once."""
    from genesis.adapters.db import Repository
    from genesis.adapters.db.apikeys import ApiKeyStore, parse_key

    settings = settings_from(config)
    ident = parse_key(key_id) or key_id
    with Repository(settings.database_url) as repo:
        if not ApiKeyStore(repo.engine).revoke(ident):
            fail(f"no active key {key_id!r}: see `genesis apikey list`")
    _print(f"revoked key {ident}")
