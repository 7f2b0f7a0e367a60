"""identities: enrolled face crops, negatives, unknown clusters, track faces, gallery version, audit log

Revision ID: 0004
Revises: 0005
Create Date: 2026-11-28

Hand-written (it does not import the application models); new tables only, so it needs no
batch mode on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _identity_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["identity_id"], ["identities.id"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "face_photos",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("photo_sha256", sa.String(length=64), nullable=False),
        sa.Column("photo_name", sa.String(), nullable=False),
        sa.Column("detector", sa.String(), nullable=False),
        sa.Column("crop", sa.LargeBinary(), nullable=False),
        sa.Column("face", JSON, nullable=False),
        sa.Column("quality", JSON, nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        _identity_fk(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_photos")),
        sa.UniqueConstraint("identity_id", "photo_sha256", name=op.f("uq_face_photos_identity_id_photo_sha256")),
    )
    op.create_table(
        "identity_negatives",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("track_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        _identity_fk(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_negatives")),
    )
    op.create_index(
        op.f("ix_identity_negatives_identity_id_model"), "identity_negatives", ["identity_id", "model"]
    )
    op.create_table(
        "unknown_clusters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("centroid", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("first_seen", UTC_DATETIME, nullable=False),
        sa.Column("last_seen", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unknown_clusters")),
    )
    op.create_index(op.f("ix_unknown_clusters_model"), "unknown_clusters", ["model"])
    op.create_table(
        "track_faces",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("camera_id", sa.String(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("distance", sa.Double(), nullable=True),
        sa.Column("cluster_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["cluster_id"], ["unknown_clusters.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("run_id", "track_id", name=op.f("pk_track_faces")),
    )
    op.create_index(op.f("ix_track_faces_model"), "track_faces", ["model"])
    op.create_index(op.f("ix_track_faces_cluster_id"), "track_faces", ["cluster_id"])
    op.create_table(
        "gallery_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gallery_version")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("gallery_version")
    op.drop_table("track_faces")
    op.drop_table("unknown_clusters")
    op.drop_table("identity_negatives")
    op.drop_table("face_photos")
