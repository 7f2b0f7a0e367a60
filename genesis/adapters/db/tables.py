"""SQLAlchemy ORM models: the schema shared by PostgreSQL (distributed) and SQLite (embedded).

The schema itself is created by the Alembic migrations in ``migrations/versions``; these
models describe the same tables for queries and for ``alembic revision --autogenerate``
(a unit test checks that the migrations and the models agree).

Choices that keep both backends identical:

* event tables (track points, attempts, zone events, line crossings, tracks) use their natural
  key as primary key, which is also the ``ON CONFLICT`` target of the idempotent writes;
* floats are ``Double`` (SQLite REAL, PostgreSQL double precision) so they round-trip exactly;
* datetimes are stored in UTC and always read back timezone-aware (`UTCDateTime`);
* enumerations are strings guarded by CHECK constraints (no PostgreSQL ENUM types to migrate);
* constraint names come from one naming convention, so batch migrations on SQLite can find them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES = ("running", "finished", "failed")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz`` but returns it in the session time zone; SQLite has no
    time zone at all and returns naive values. Both are normalised to UTC on the way out,
    and naive datetimes are refused on the way in (their meaning would depend on the host).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Camera(Base):
    __tablename__ = "cameras"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Identity(Base):
    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FaceEmbedding(Base):
    """One enrolled photo's embedding for one model; ``vector`` is little-endian float32 bytes."""

    __tablename__ = "face_embeddings"
    __table_args__ = (
        UniqueConstraint("identity_id", "model", "photo_sha256"),
        Index(None, "model"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String)
    detector: Mapped[str] = mapped_column(String)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    photo_sha256: Mapped[str] = mapped_column(String(64))
    photo_name: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Run(Base):
    """One processing session of one camera (a video file, or a stream from start to stop)."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'finished', 'failed')", name="status"),
        Index(None, "camera_id"),
    )

    id: Mapped[str] = mapped_column(String, primary_key=True)
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id"))
    source: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    frames: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType)
    site: Mapped[str | None] = mapped_column(String(255))
    """The site (Redis) of a distributed run: only that site's stale-run check judges it (NULL: any)."""
    holder: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    """The lease of an embedded run: the process that runs it (host, boot id, pid, process start)."""


class Track(Base):
    """One identity segment of a person's passage in a run (a track never cut has one, ``segment`` 0).

    ``identity_name`` keeps the decision even if the identity goes. A sighting belongs to the segment
    of its track whose ``first_seq``..``last_seq`` holds its ``seq``."""

    __tablename__ = "tracks"
    __table_args__ = (
        # Of the named segments only (migration 0013): most segments of a busy camera carry no name.
        Index(None, "identity_id", postgresql_where=text("identity_id IS NOT NULL"),
              sqlite_where=text("identity_id IS NOT NULL")),
        Index(None, "identity_name", postgresql_where=text("identity_name IS NOT NULL"),
              sqlite_where=text("identity_name IS NOT NULL")),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    track_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    camera_id: Mapped[str] = mapped_column(String)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    first_ts: Mapped[float] = mapped_column(Double)
    last_ts: Mapped[float] = mapped_column(Double)
    frames: Mapped[int] = mapped_column(BigInteger)
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id", ondelete="SET NULL"))
    identity_name: Mapped[str | None] = mapped_column(String)
    votes: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    best_distance: Mapped[float | None] = mapped_column(Double)
    segment: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, default=0)
    named_ts: Mapped[float | None] = mapped_column(Double)
    end_reason: Mapped[str | None] = mapped_column(String(16))


class PointBatchRow(Base):
    """The trajectory points (``genesis.stages.path``: the box at a frame and ``frames``, the sightings of the
    track it stands for) that one stored batch holds for one run and one UTC day, packed
    (``genesis.adapters.db.points``: 44 bytes a point, sorted by (seq, track id); box and score single precision,
    ``ts`` double, all exact). The camera is the run's.

    One row per (run, batch, day), every track of the batch together, rather than one per track: a busy batch
    holds a few points of each of many short tracks (3.6 points a frame, about 2 of each track per 25-frame batch
    on the crowd clip), so a row per track would cost more in row header and key than its points; and the readers
    want frames in order (the API's pages by (run, seq, track), a frame's recent boxes, time buckets), which rows
    of consecutive frames give by their key alone. A track's or an identity's points are picked out after
    unpacking (their rows chosen in SQL by run, frames and time).

    ``first_seq`` / ``first_track`` (the first point's frame and track when written; the frame is also the base
    of the packed frame offsets), ``last_seq``, ``first_ts`` / ``last_ts`` (smallest and largest ``ts``) and ``n``
    (points) choose and count rows in SQL without unpacking them. The key (run, first_seq, first_track, day) is
    what a retried write of the same batch gives again (ON CONFLICT DO NOTHING: nothing twice) and no other
    batch gives: a point is stored once, and a batch's frames may overlap an earlier one's (the exit points of
    tracks gone a while carry their old frame), so the first frame alone is not unique. ``day`` (UTC days since
    1970 of the points' absolute time) is the partition key on PostgreSQL (``genesis.adapters.db.partitions``),
    a plain column on SQLite."""

    __tablename__ = "point_batches"
    __table_args__ = (Index(None, "run_id", "last_seq"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    first_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_track: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    first_ts: Mapped[float] = mapped_column(Double)
    last_ts: Mapped[float] = mapped_column(Double)
    n: Mapped[int] = mapped_column(Integer)
    points: Mapped[bytes] = mapped_column(LargeBinary)


class PassagePack(Base):
    """Passages of one run that ended on one UTC day, packed once their day is old enough
    (``retention.pack_after_days``; ``genesis.adapters.db.packs``): the segments, zone events and line crossings of
    tracks that carry no name, which nothing but the run's report, its lists, the zone filter of its sightings and
    the rollups of their hours read again (review or clustering naming one takes its track out of the pack first).

    One row per (run, day of the tracks' last sighting, first track): the storage upkeep packs a day's tracks
    in parts of at most ``PACK_TRACKS``; a track taken out and unnamed again is packed later, in a part of its
    own. ``first_track`` / ``last_track`` (smallest and largest track id),
    ``first_ts`` / ``last_ts`` (smallest and largest absolute time of the pack's rows) and the counts choose and
    count packs in SQL without unpacking them; ``data`` holds the rows (zlib-compressed columns)."""

    __tablename__ = "passage_packs"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    first_track: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    last_track: Mapped[int] = mapped_column(BigInteger)
    first_ts: Mapped[float] = mapped_column(Double)
    last_ts: Mapped[float] = mapped_column(Double)
    tracks: Mapped[int] = mapped_column(Integer)
    segments: Mapped[int] = mapped_column(Integer)
    zone_events: Mapped[int] = mapped_column(Integer)
    crossings: Mapped[int] = mapped_column(Integer)
    open_visits: Mapped[int] = mapped_column(Integer)
    """Zone entries without their exit (a track lost in a zone): a running run keeps those visits open."""
    data: Mapped[bytes] = mapped_column(LargeBinary)
    zones: Mapped[str] = mapped_column(String, default="", server_default="")
    """The zones of the pack's events, each between two ``packs.ZONE_SEP`` (migration 0015): a zone filter reads
    only the packs that hold the zone."""


class HeatmapRow(Base):
    """Foot-point counts of one run in one hour (absolute time) on the camera's heatmap grid.

    Written per stored batch (``first_seq`` .. ``last_seq``: the batch's first and last frame in that hour; a
    write leaves out the frames a stored row counts already, so a retried or resumed batch counts each frame
    once) and merged per hour by the rollup job (``first_seq`` = -1). ``cells`` holds the
    non-zero cells: ``n`` little-endian uint32 cell indices (row-major on a ``rows`` x ``cols`` grid of
    ``cell_px`` squares over ``width`` x ``height``) followed by their ``n`` uint32 counts. ``day`` (of
    ``hour``) is the partition key on PostgreSQL, as for ``point_batches``."""

    __tablename__ = "heatmap_cells"
    __table_args__ = (Index(None, "camera_id", "hour"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    first_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    camera_id: Mapped[str] = mapped_column(String)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    cell_px: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger)
    cells: Mapped[bytes] = mapped_column(LargeBinary)
    last_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The last frame the grid counts (``first_seq``..``last_seq``; None for rows stored before migration 0012)."""


class AttemptPack(Base):
    """The face recognition attempts (a face searched on a track at one frame) that one stored batch holds for one
    run, packed (``genesis.adapters.db.attempts``: sorted by (seq, track id), byte-shuffled and compressed, every
    value exact). The camera is the run's.

    ``first_seq`` / ``first_track`` (the first attempt's frame and track when written, the key a retried batch
    gives again), ``last_seq``, ``first_ts`` / ``last_ts`` (smallest and largest ``ts``), ``n`` (attempts) and
    ``named`` (those that named someone) choose and count rows in SQL without unpacking them; ``names`` the
    identities the row's attempts name, each between two ``attempts.NAME_SEP`` (a rename or a forget rewrites
    only the rows that hold the name)."""

    __tablename__ = "attempt_packs"
    __table_args__ = (Index(None, "run_id", "last_seq"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    first_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_track: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    first_ts: Mapped[float] = mapped_column(Double)
    last_ts: Mapped[float] = mapped_column(Double)
    n: Mapped[int] = mapped_column(Integer)
    named: Mapped[int] = mapped_column(Integer)
    names: Mapped[str] = mapped_column(String)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ZoneEventRow(Base):
    __tablename__ = "zone_events"
    __table_args__ = (CheckConstraint("kind IN ('enter', 'exit')", name="kind"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    zone: Mapped[str] = mapped_column(String, primary_key=True)
    track_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String)
    ts: Mapped[float] = mapped_column(Double)


class LineCrossingRow(Base):
    __tablename__ = "line_crossings"
    __table_args__ = (CheckConstraint("direction IN ('in', 'out')", name="direction"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    line: Mapped[str] = mapped_column(String, primary_key=True)
    track_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    camera_id: Mapped[str] = mapped_column(String)
    direction: Mapped[str] = mapped_column(String(8))
    ts: Mapped[float] = mapped_column(Double)
