"""heatmap rows say the last frame they hold: a batch that repeats part of a stored one adds only its new frames

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Hand-written (see 0001). ``heatmap_cells.last_seq`` (nullable) is the last frame a row's grid counts, beside its
``first_seq``. A sequencer killed after handing a batch to the store and before saving its state is resumed from
the state before that batch; its next batch starts at the same frame and may hold more frames. Keyed by the first
frame alone, that batch's heat row was dropped whole, and the grid lost its extra frames; with the range known,
the writer leaves out the frames a stored row already counts. Rows stored before have no range (NULL): they are
taken to count their first frame only, as nothing says more. On PostgreSQL the column is added to the partitioned
table, which adds it to every partition.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("heatmap_cells", sa.Column("last_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("heatmap_cells") as batch:
        batch.drop_column("last_seq")
