"""Is the database there: the health probe, and the errors that say it is not (the database
library's own classes under names of ours, so that no module outside the adapter imports it)."""

from __future__ import annotations

import errno
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError

DatabaseError = SQLAlchemyError
"""Any error of the database library (a bad URL, a missing driver, a failed statement ...)."""
DatabaseUnavailableError = OperationalError
"""The database cannot be reached or refused the connection (a `DatabaseError`)."""
DATABASE_AWAY_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError, DisconnectionError)
"""The errors that say the database is away for now (worth a retry): connection lost, server
restarting, deadlock or serialization failure (psycopg2 raises all of them as OperationalError)."""


SQLITE_FULL = 13
"""SQLite's "database or disk is full"."""
POSTGRES_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the disk is full: OSError ENOSPC/EDQUOT, SQLite's
    SQLITE_FULL, PostgreSQL's disk_full (53100)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(current, "sqlite_errorcode", None) == SQLITE_FULL:
            return True
        if getattr(current, "pgcode", None) == POSTGRES_DISK_FULL:
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return False


@lru_cache(maxsize=4)
def _engine(url: str, timeout_s: float) -> Any:
    args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        args["connect_timeout"] = max(1, round(timeout_s))
    return create_engine(url, connect_args=args, pool_pre_ping=True, pool_size=1, max_overflow=1) \
        if not url.startswith("sqlite") else create_engine(url, connect_args=args)


def ping(url: str, timeout_s: float) -> None:
    """Connect to ``url`` and run ``SELECT 1``; `DatabaseError` or OSError when that fails. The
    engine is kept (a few URLs), so a probe every few seconds reuses its connection."""
    engine: Engine = _engine(url, timeout_s)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


__all__ = ["DATABASE_AWAY_ERRORS", "DatabaseError", "DatabaseUnavailableError", "is_disk_full", "ping"]
