"""The database adapter: SQLAlchemy models, Alembic migrations and the `Repository`."""

# The identities area's tables must be in Base.metadata wherever it is used (migrations, autogenerate).
from genesis.adapters.db import models_identities as models_identities
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
