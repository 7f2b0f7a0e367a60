"""indexes of what an identity's page and the unknown-face retention read: named track segments, faces by age

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

Hand-written (see 0001). An identity's page, its runs and the review read the track segments that carry a name
(``tracks.identity_name``), which had no index: each read went through every segment stored (1.2 M on three busy
camera-days; 40 M on a hundred). ``ix_tracks_identity_name`` indexes the named segments only (``WHERE
identity_name IS NOT NULL``), and ``ix_tracks_identity_id`` becomes partial the same way: most segments of a busy
camera are of nobody enrolled, and a full index held an entry for each of them that no query looks up.

``ix_track_faces_created_at``: the retention of unknown faces (beat's hourly purge, ``genesis identities purge``)
deletes the faces stored before a cutoff; without an index each purge read the whole table, a busy camera's
largest (an embedding and a face crop per passage).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _named(column: str) -> dict[str, object]:
    where = sa.text(f"{column} IS NOT NULL")
    return {"postgresql_where": where, "sqlite_where": where}


def upgrade() -> None:
    op.drop_index("ix_tracks_identity_id", table_name="tracks")
    op.create_index("ix_tracks_identity_id", "tracks", ["identity_id"], **_named("identity_id"))  # type: ignore[arg-type]
    op.create_index("ix_tracks_identity_name", "tracks", ["identity_name"], **_named("identity_name"))  # type: ignore[arg-type]
    op.create_index("ix_track_faces_created_at", "track_faces", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_track_faces_created_at", table_name="track_faces")
    op.drop_index("ix_tracks_identity_name", table_name="tracks")
    op.drop_index("ix_tracks_identity_id", table_name="tracks")
    op.create_index("ix_tracks_identity_id", "tracks", ["identity_id"])
