"""run owners: the site of a distributed run, the holder (lease) of an embedded one

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

Hand-written (see 0001). Both columns are nullable: runs stored before stay without a site (any
site's stale-run check judges them, as before) and without a holder (never taken for abandoned
by the embedded check: nobody knows which process ran them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("site", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("holder", json_type, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("holder")
        batch.drop_column("site")
