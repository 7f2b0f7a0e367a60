"""The database adapter: SQLAlchemy models, Alembic migrations, the `Repository` and the queries
of every area (no module outside ``genesis.adapters`` imports SQLAlchemy: tests/unit/test_layers.py)."""

from sqlalchemy import Engine

from genesis.adapters.db.probe import DatabaseError, DatabaseUnavailableError, is_disk_full
from genesis.adapters.db.repository import (
    ALEMBIC_INI,
    MIGRATIONS_DIR,
    EmbeddingRecord,
    IdentityPassages,
    IdentitySummary,
    NotFoundError,
    Repository,
    RunRecord,
    TrackRecord,
    alembic_config,
    make_engine,
)

__all__ = [
    "ALEMBIC_INI",
    "MIGRATIONS_DIR",
    "DatabaseError",
    "DatabaseUnavailableError",
    "EmbeddingRecord",
    "Engine",
    "IdentityPassages",
    "IdentitySummary",
    "NotFoundError",
    "Repository",
    "RunRecord",
    "TrackRecord",
    "alembic_config",
    "is_disk_full",
    "make_engine",
]
