"""The database adapter: SQLAlchemy models, Alembic migrations and the `Repository`."""

from genesis.adapters.db import models_analytics  # noqa: F401  (its tables belong to Base.metadata)
from genesis.adapters.db.repository import (
    ALEMBIC_INI,
    MIGRATIONS_DIR,
    EmbeddingRecord,
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
    "EmbeddingRecord",
    "IdentitySummary",
    "NotFoundError",
    "Repository",
    "RunRecord",
    "TrackRecord",
    "alembic_config",
    "make_engine",
]
