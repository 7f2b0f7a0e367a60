"""Day partitions of the high-volume tables on PostgreSQL (declarative, ``PARTITION BY RANGE (day)``).

``point_batches`` (packed trajectory points) and ``heatmap_cells`` are partitioned by ``day`` (UTC days since
1970 of a row's absolute time) on PostgreSQL; SQLite keeps plain tables and every function here does nothing there.
A partition ``<table>_pYYYYMMDD`` holds one day. Celery beat creates the next days ahead
(:func:`ensure_days`, ``rollups.partition_days_ahead``); a writer that meets a day without a
partition (a back-dated run, an import) creates it first, in a transaction of its own; retention drops
the partitions of whole days before the cutoff (:func:`drop_before`) instead of deleting their rows.

Creation is serialised by a transaction-level advisory lock, so two workers that need the same
day at once neither fail nor wait on each other's writes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, Engine, text

PARTITIONED = ("point_batches", "heatmap_cells")
"""The tables partitioned by ``day`` on PostgreSQL."""
DAY_S = 86400
_EPOCH = date(1970, 1, 1)
_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<ymd>\d{8})$")
_LOCK_KEY = 0x6765_6E65_7369_7370  # "genesisp": the advisory lock of partition changes
_known: set[tuple[str, str, int]] = set()
"""(database url, table, day) this process has seen a partition of (no catalogue query next time)."""
_known_lock = threading.Lock()


def day_of(t: float) -> int:
    """UTC days since 1970 of an epoch time."""
    return int(t // DAY_S)


def day_date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


def partition_name(table: str, day: int) -> str:
    return f"{table}_p{day_date(day):%Y%m%d}"


def is_partitioned(conn: Connection, table: str) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(text(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :t AND c.relnamespace = to_regnamespace(current_schema())::oid"), {"t": table}).first())


def partitions(conn: Connection, table: str) -> list[tuple[str, int]]:
    """(name, day) of the day partitions of ``table``, by day (none on SQLite)."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t "
        "AND p.relnamespace = to_regnamespace(current_schema())::oid"), {"t": table}).scalars()
    out = []
    for name in rows:
        m = _NAME.match(str(name))
        if m and m.group("table") == table:
            ymd = datetime.strptime(m.group("ymd"), "%Y%m%d").date()
            out.append((str(name), (ymd - _EPOCH).days))
    return sorted(out, key=lambda x: x[1])


def create_days(conn: Connection, days: Iterable[int], tables: Iterable[str] = PARTITIONED) -> list[str]:
    """Create the missing day partitions in this transaction (PostgreSQL; nothing on SQLite);
    the names created."""
    if conn.dialect.name != "postgresql":
        return []
    wanted = sorted(set(days))
    if not wanted:
        return []
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    created = []
    for table in tables:
        if not is_partitioned(conn, table):
            continue
        have = {d for _, d in partitions(conn, table)}
        for day in wanted:
            if day in have:
                continue
            name = partition_name(table, day)
            conn.execute(text(f'CREATE TABLE "{name}" PARTITION OF "{table}" FOR VALUES FROM ({day}) TO ({day + 1})'))
            created.append(name)
    return created


def ensure_days(engine: Engine, days: Iterable[int], tables: Iterable[str] = PARTITIONED) -> list[str]:
    """Make sure the day partitions exist (one short transaction of its own when one is missing); the
    names created. Days already seen by this process cost nothing."""
    if engine.dialect.name != "postgresql":
        return []
    url = str(engine.url)
    tables = tuple(tables)
    with _known_lock:
        missing = sorted({d for d in days for t in tables if (url, t, d) not in _known})
    if not missing:
        return []
    with engine.begin() as conn:
        created = create_days(conn, missing, tables)
    with _known_lock:
        _known.update((url, t, d) for d in missing for t in tables)
    return created


def ensure_ahead(engine: Engine, now: float, days_ahead: int) -> list[str]:
    """Beat: the partitions of yesterday, today and the next ``days_ahead`` days."""
    today = day_of(now)
    if engine.dialect.name != "postgresql":
        return []
    with engine.begin() as conn:
        return create_days(conn, range(today - 1, today + days_ahead + 1))


SUMMED = {"point_batches": "n"}
"""Tables whose rows stand for several things: :func:`drop_before` reports the sum of this column (the points of
the packed rows; a scan of the few rows of a day, not of the points) instead of the row estimate."""


def drop_before(conn: Connection, cutoffs: dict[str, float]) -> dict[str, int]:
    """Drop the day partitions of each table that end at or before its cutoff (epoch seconds); rows
    dropped per table (PostgreSQL's estimate of each partition's rows, ``reltuples``: counting them
    would cost what the drop saves; never analysed counts 0), or for a table of :data:`SUMMED` the exact sum of
    its column (``point_batches``: the points). Nothing on SQLite."""
    if conn.dialect.name != "postgresql":
        return {}
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    out: dict[str, int] = {}
    for table, cutoff in cutoffs.items():
        last = day_of(cutoff)  # days before this one end at or before the cutoff
        n = 0
        for name, day in partitions(conn, table):
            if day < last:
                if table in SUMMED:
                    rows = int(conn.execute(text(f'SELECT coalesce(sum("{SUMMED[table]}"), 0) FROM "{name}"'))
                               .scalar_one())
                else:
                    rows = max(0, int(conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = :n"),
                                                   {"n": name}).scalar_one()))
                conn.execute(text(f'DROP TABLE "{name}"'))
                n += int(rows)
                with _known_lock:
                    _known.difference_update({k for k in _known if k[1] == table and k[2] == day})
        out[table] = n
    return out


__all__ = [
    "PARTITIONED",
    "create_days",
    "day_of",
    "drop_before",
    "ensure_ahead",
    "ensure_days",
    "is_partitioned",
    "partition_name",
    "partitions",
]
