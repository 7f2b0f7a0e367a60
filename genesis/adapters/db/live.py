"""The live view's rows in the embedded mode's database (`genesis.services.live`): one latest
frame per camera (``live_frames``, overwritten) and the "someone is watching" flag (``live_watch``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from genesis.adapters.db.repository import dialect_insert
from genesis.adapters.db.tables_identities import LiveFrame, LiveWatch


def _upsert(conn: Connection, table: Any, values: dict[str, Any], update: list[str]) -> None:
    stmt = dialect_insert(conn, table).values(values)
    conn.execute(stmt.on_conflict_do_update(index_elements=[table.camera_id],
                                            set_={k: stmt.excluded[k] for k in update}))


def watched_until(engine: Engine, camera_id: str) -> datetime | None:
    """Until when someone watches the camera (None: nobody asked)."""
    with engine.connect() as conn:
        until: datetime | None = conn.execute(
            select(LiveWatch.until).where(LiveWatch.camera_id == camera_id)).scalar_one_or_none()
    return until


def watch(engine: Engine, camera_id: str, until: datetime) -> None:
    with engine.begin() as conn:
        _upsert(conn, LiveWatch, {"camera_id": camera_id, "until": until}, ["until"])


def write_frame(engine: Engine, camera_id: str, at: datetime, meta: dict[str, Any], jpeg: bytes) -> None:
    """The camera's latest live frame (replaces the one before)."""
    values = {"camera_id": camera_id, "at": at, "meta": meta, "jpeg": jpeg}
    with engine.begin() as conn:
        _upsert(conn, LiveFrame, values, ["at", "meta", "jpeg"])


def clear_frame(engine: Engine, camera_id: str) -> None:
    """Drop the camera's image and who was in it (its time stays: "no frame since ...")."""
    with engine.connect() as conn:
        meta = conn.execute(select(LiveFrame.meta).where(LiveFrame.camera_id == camera_id)).scalar_one_or_none()
    if meta is None:
        return
    with engine.begin() as conn:
        conn.execute(update(LiveFrame).where(LiveFrame.camera_id == camera_id)
                     .values(jpeg=b"", meta={**meta, "persons": []}))


def latest_frame(engine: Engine, camera_id: str) -> tuple[dict[str, Any], bytes, datetime] | None:
    """(meta, JPEG, time) of the camera's latest live frame, as stored."""
    with engine.connect() as conn:
        row = conn.execute(select(LiveFrame.meta, LiveFrame.jpeg, LiveFrame.at)
                           .where(LiveFrame.camera_id == camera_id)).one_or_none()
    return None if row is None else (dict(row[0]), bytes(row[1]), row[2])
