"""analytics: minute/hour/day rollups per camera, zone, line, identity and identity x zone; camera snapshots

Revision ID: 0003
Revises: 0004
Create Date: 2026-11-28

Hand-written (see 0001); only new tables, so it needs no batch mode on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)
GRANULARITY = "granularity IN ('minute', 'hour', 'day')"


def _key(*subject: str) -> list[sa.Column[object]]:
    cols: list[sa.Column[object]] = [
        sa.Column("granularity", sa.String(length=8), nullable=False),
        sa.Column("bucket", UTC_DATETIME, nullable=False),
        sa.Column("camera_id", sa.String(), nullable=False),
    ]
    cols += [sa.Column(name, sa.String(), nullable=False) for name in subject]
    return cols


def _counts(*names: str) -> list[sa.Column[object]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in names]


def _rollup_table(name: str, subject: tuple[str, ...], *columns: sa.Column[object]) -> None:
    op.create_table(
        name,
        *_key(*subject),
        *columns,
        sa.CheckConstraint(GRANULARITY, name=op.f(f"ck_{name}_granularity")),
        sa.PrimaryKeyConstraint("granularity", "bucket", "camera_id", *subject, name=op.f(f"pk_{name}")),
    )
    op.create_index(op.f(f"ix_{name}_bucket"), name, ["bucket"])


def upgrade() -> None:
    op.create_table(
        "camera_snapshots",
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("taken_at", UTC_DATETIME, nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", name=op.f("pk_camera_snapshots")),
    )
    _rollup_table(
        "rollup_camera", (),
        *_counts("sightings", "tracks", "recognised_tracks", "identities", "entries", "exits",
                 "crossings_in", "crossings_out"),
    )
    _rollup_table(
        "rollup_zone", ("zone",),
        *_counts("entries", "exits", "visits"),
        sa.Column("dwell_s", sa.Double(), nullable=False),
        sa.Column("peak_occupancy", sa.Integer(), nullable=False),
        sa.Column("mean_occupancy", sa.Double(), nullable=False),
    )
    _rollup_table("rollup_line", ("line",), *_counts("crossings_in", "crossings_out"))
    _rollup_table(
        "rollup_identity", ("identity",),
        *_counts("sightings", "tracks", "visits"),
        sa.Column("dwell_s", sa.Double(), nullable=False),
        *_counts("crossings_in", "crossings_out"),
    )
    _rollup_table(
        "rollup_identity_zone", ("identity", "zone"),
        *_counts("entries", "visits"),
        sa.Column("dwell_s", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    for name in ("rollup_identity_zone", "rollup_identity", "rollup_line", "rollup_zone", "rollup_camera"):
        op.drop_index(op.f(f"ix_{name}_bucket"), table_name=name)
        op.drop_table(name)
    op.drop_table("camera_snapshots")
