"""alerts: alerts, their deliveries, and the occupancy samples of the anomaly baseline

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Hand-written; new tables only (no batch operation needed on SQLite). A unit test checks it
against the models (genesis/adapters/db/tables_alerts.py) with autogenerate.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("track_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("zone", sa.String(), nullable=True),
        sa.Column("identity_name", sa.String(), nullable=True),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("acknowledged_at", UTC_DATETIME, nullable=True),
        sa.CheckConstraint(
            "kind IN ('crowding', 'loitering', 'anomaly', 'watchlist', 'restricted')", name=op.f("ck_alerts_kind")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_alerts_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("key", name=op.f("uq_alerts_key")),
        sa.UniqueConstraint(
            "run_id", "kind", "subject", "track_id", "seq", name=op.f("uq_alerts_run_id_kind_subject_track_id_seq")
        ),
    )
    op.create_index(op.f("ix_alerts_camera_id_at"), "alerts", ["camera_id", "at"])
    op.create_table(
        "alert_deliveries",
        sa.Column("alert_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", UTC_DATETIME, nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("delivered_at", UTC_DATETIME, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'failed')", name=op.f("ck_alert_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_deliveries_alert_id_alerts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("alert_id", "target", name=op.f("pk_alert_deliveries")),
    )
    op.create_table(
        "occupancy_samples",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("window_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("hour_of_week", sa.Integer(), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("anomalous", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_occupancy_samples_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "zone", "window_index", name=op.f("pk_occupancy_samples")),
    )
    op.create_index(
        op.f("ix_occupancy_samples_camera_id_zone_hour_of_week"), "occupancy_samples",
        ["camera_id", "zone", "hour_of_week"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_occupancy_samples_camera_id_zone_hour_of_week"), table_name="occupancy_samples")
    op.drop_table("occupancy_samples")
    op.drop_table("alert_deliveries")
    op.drop_index(op.f("ix_alerts_camera_id_at"), table_name="alerts")
    op.drop_table("alerts")
