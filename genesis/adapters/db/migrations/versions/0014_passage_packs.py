"""passages of past days packed: the segments, zone events and crossings of unnamed, faceless tracks

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

Hand-written (see 0001). ``passage_packs`` holds, per run and UTC day, the rows of the tracks that ended that day
long enough ago that their points, attempts and unknown faces are gone, and that carry no name: one compressed
row instead of a row per segment, zone event and crossing (``genesis.adapters.db.packs``). The storage upkeep
fills it (``genesis.services.rollups.storage_upkeep``); nothing is packed by the migration itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "passage_packs",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_track", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last_track", sa.BigInteger(), nullable=False),
        sa.Column("first_ts", sa.Double(), nullable=False),
        sa.Column("last_ts", sa.Double(), nullable=False),
        sa.Column("tracks", sa.Integer(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("zone_events", sa.Integer(), nullable=False),
        sa.Column("crossings", sa.Integer(), nullable=False),
        sa.Column("open_visits", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_passage_packs_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "day", "first_track", name=op.f("pk_passage_packs")),
    )


def downgrade() -> None:
    """Unpacks nothing: a database with packs must not go below 0014 (their rows would be lost)."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM passage_packs LIMIT 1")).first() is not None:
        raise RuntimeError("passage_packs holds packed passages: downgrading below 0014 would lose them")
    op.drop_table("passage_packs")
