"""identity segments: a track's rows become one per segment (tracks, track_faces keyed by segment)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Hand-written (see 0001). Existing tracks become segment 0 of themselves (one segment each), with
no decision time and no end reason. The primary keys change, so SQLite rebuilds both tables
(batch mode, foreign keys off while it does: see ``Repository._migration_connection``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tracks", recreate="always") as batch:
        batch.add_column(sa.Column("segment", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("named_ts", sa.Double(), nullable=True))
        batch.add_column(sa.Column("end_reason", sa.String(length=16), nullable=True))
        batch.drop_constraint(op.f("pk_tracks"), type_="primary")
        batch.create_primary_key(op.f("pk_tracks"), ["run_id", "track_id", "segment"])
    with op.batch_alter_table("tracks") as batch:
        batch.alter_column("segment", server_default=None)
    with op.batch_alter_table("track_faces", recreate="always") as batch:
        batch.add_column(sa.Column("segment", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_constraint(op.f("pk_track_faces"), type_="primary")
        batch.create_primary_key(op.f("pk_track_faces"), ["run_id", "track_id", "segment"])
    with op.batch_alter_table("track_faces") as batch:
        batch.alter_column("segment", server_default=None)


def downgrade() -> None:
    # Only the first segment of each track survives a downgrade (the old key has no room for more).
    op.execute("DELETE FROM track_faces WHERE segment <> 0")
    op.execute("DELETE FROM tracks WHERE segment <> 0")
    with op.batch_alter_table("track_faces", recreate="always") as batch:
        batch.drop_constraint(op.f("pk_track_faces"), type_="primary")
        batch.create_primary_key(op.f("pk_track_faces"), ["run_id", "track_id"])
        batch.drop_column("segment")
    with op.batch_alter_table("tracks", recreate="always") as batch:
        batch.drop_constraint(op.f("pk_tracks"), type_="primary")
        batch.create_primary_key(op.f("pk_tracks"), ["run_id", "track_id"])
        batch.drop_column("end_reason")
        batch.drop_column("named_ts")
        batch.drop_column("segment")
