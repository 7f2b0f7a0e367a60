"""initial schema: cameras, identities, embeddings, runs, tracks and the per-frame event tables

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Hand-written; it does not import the application models (a migration must keep creating
the schema of its day), and a unit test checks it against them with autogenerate.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _box() -> list[sa.Column[float]]:
    return [sa.Column(name, sa.Double(), nullable=False) for name in ("x1", "y1", "x2", "y2")]


def _run_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cameras")),
    )
    op.create_table(
        "identities",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identities")),
        sa.UniqueConstraint("name", name=op.f("uq_identities_name")),
    )
    op.create_table(
        "face_embeddings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("detector", sa.String(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("photo_sha256", sa.String(length=64), nullable=False),
        sa.Column("photo_name", sa.String(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["identities.id"],
            name=op.f("fk_face_embeddings_identity_id_identities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_embeddings")),
        sa.UniqueConstraint(
            "identity_id", "model", "photo_sha256", name=op.f("uq_face_embeddings_identity_id_model_photo_sha256")
        ),
    )
    op.create_index(op.f("ix_face_embeddings_model"), "face_embeddings", ["model"])
    op.create_table(
        "runs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", UTC_DATETIME, nullable=False),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
        sa.Column("frames", sa.BigInteger(), nullable=False),
        sa.Column("meta", JSON, nullable=False),
        sa.CheckConstraint("status IN ('running', 'finished', 'failed')", name=op.f("ck_runs_status")),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], name=op.f("fk_runs_camera_id_cameras")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_camera_id"), "runs", ["camera_id"])
    op.create_table(
        "tracks",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("first_ts", sa.Double(), nullable=False),
        sa.Column("last_ts", sa.Double(), nullable=False),
        sa.Column("frames", sa.BigInteger(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=True),
        sa.Column("identity_name", sa.String(), nullable=True),
        sa.Column("votes", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("best_distance", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["identity_id"], ["identities.id"], name=op.f("fk_tracks_identity_id_identities"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_tracks_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "track_id", name=op.f("pk_tracks")),
    )
    op.create_index(op.f("ix_tracks_identity_id"), "tracks", ["identity_id"])
    op.create_table(
        "sightings",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        *_box(),
        sa.Column("score", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_sightings_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "track_id", "seq", name=op.f("pk_sightings")),
    )
    op.create_index(op.f("ix_sightings_run_id_seq"), "sightings", ["run_id", "seq"])
    op.create_table(
        "recognition_attempts",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        *_box(),
        sa.Column("face_score", sa.Double(), nullable=False),
        sa.Column("identity_name", sa.String(), nullable=True),
        sa.Column("distance", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_recognition_attempts_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "track_id", "seq", name=op.f("pk_recognition_attempts")),
    )
    op.create_table(
        "zone_events",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.CheckConstraint("kind IN ('enter', 'exit')", name=op.f("ck_zone_events_kind")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_zone_events_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "zone", "track_id", "seq", "kind", name=op.f("pk_zone_events")),
    )
    op.create_table(
        "line_crossings",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("line", sa.String(), nullable=False),
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f("ck_line_crossings_direction")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_line_crossings_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "line", "track_id", "seq", name=op.f("pk_line_crossings")),
    )


def downgrade() -> None:
    op.drop_table("line_crossings")
    op.drop_table("zone_events")
    op.drop_table("recognition_attempts")
    op.drop_index(op.f("ix_sightings_run_id_seq"), table_name="sightings")
    op.drop_table("sightings")
    op.drop_index(op.f("ix_tracks_identity_id"), table_name="tracks")
    op.drop_table("tracks")
    op.drop_index(op.f("ix_runs_camera_id"), table_name="runs")
    op.drop_table("runs")
    op.drop_index(op.f("ix_face_embeddings_model"), table_name="face_embeddings")
    op.drop_table("face_embeddings")
    op.drop_table("identities")
    op.drop_table("cameras")
