"""Alembic environment of the Genesis schema.

The database comes from the caller, never from this file: either an open connection in
``config.attributes["connection"]`` (what `Repository.upgrade` passes, so that SQLite
``:memory:`` and the caller's engine settings work), or a URL set with
``config.set_main_option("sqlalchemy.url", url)`` (`alembic_config(url)`), or ``-x url=...``
on the alembic command line.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from genesis.adapters.db.repository import MIGRATION_LOCK, WRITE_TRANSACTION, make_engine
from genesis.adapters.db.schema import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no database URL for the migrations: pass a connection or set sqlalchemy.url "
            "(genesis.adapters.db.alembic_config(url)), or run alembic with -x url=..."
        )
    return url


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        # Batch mode lets ALTER-style operations work on SQLite (copy-and-move of the table).
        render_as_batch=True,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) instead of running it."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    # One transaction for the whole upgrade on SQLite too. Alembic's SQLite dialect says DDL is not
    # transactional and then commits after every migration; a second process starting together then
    # takes the write lock between two of them, reads the version the first one reached and applies the
    # next migration while the first one, still working from the version it read at the start, applies
    # it again ("duplicate column name"). SQLite's DDL is transactional (the driver's own BEGIN handling
    # is off, see make_engine), so the migrations run as one BEGIN IMMEDIATE transaction.
    _configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Workers starting together would all try to create the tables: the first one
            # migrates, the others wait here and then find the database at head. (On SQLite
            # the migration transaction is BEGIN IMMEDIATE, which serialises the same way.)
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Foreign keys off on SQLite: batch migrations drop and recreate tables.
    engine = make_engine(_url(), foreign_keys=False, poolclass=NullPool)
    try:
        with engine.connect().execution_options(**{WRITE_TRANSACTION: True}) as conn:
            _run(conn)
            if conn.in_transaction():
                conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
