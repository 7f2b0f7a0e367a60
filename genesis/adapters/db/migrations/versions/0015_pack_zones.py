"""the zones of each passage pack, so that a zone filter reads only the packs that hold the zone

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

Hand-written (see 0001). ``passage_packs.zones``: the names of the zones of a pack's events, each between two
``genesis.adapters.db.packs.ZONE_SEP``. The packs stored before it are decoded and their zones written here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from genesis.adapters.db import packs

    with op.batch_alter_table("passage_packs") as batch:
        batch.add_column(sa.Column("zones", sa.String(), server_default="", nullable=False))
    bind = op.get_bind()
    table = sa.table("passage_packs", sa.column("run_id", sa.String()), sa.column("day", sa.Integer()),
                     sa.column("first_track", sa.BigInteger()), sa.column("data", sa.LargeBinary()),
                     sa.column("zones", sa.String()))
    keys = bind.execute(sa.select(table.c.run_id, table.c.day, table.c.first_track)).all()
    for run_id, day, first in keys:  # one pack in memory at a time
        where = (table.c.run_id == run_id) & (table.c.day == day) & (table.c.first_track == first)
        data = bind.execute(sa.select(table.c.data).where(where)).scalar_one()
        bind.execute(sa.update(table).where(where).values(zones=packs.zones_of(packs.decode(bytes(data)))))


def downgrade() -> None:
    with op.batch_alter_table("passage_packs") as batch:
        batch.drop_column("zones")
