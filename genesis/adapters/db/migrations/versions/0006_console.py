"""console: face crops of track faces, the live view's latest frames and "someone is watching" flags

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-30

Hand-written; a unit test checks it against the models with autogenerate.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("track_faces") as batch:
        batch.add_column(sa.Column("crop", sa.LargeBinary(), nullable=True))
    op.create_table(
        "live_frames",
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("meta", JSON, nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", name=op.f("pk_live_frames")),
    )
    op.create_table(
        "live_watch",
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("until", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("camera_id", name=op.f("pk_live_watch")),
    )


def downgrade() -> None:
    op.drop_table("live_watch")
    op.drop_table("live_frames")
    with op.batch_alter_table("track_faces") as batch:
        batch.drop_column("crop")
