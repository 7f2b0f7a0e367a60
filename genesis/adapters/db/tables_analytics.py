"""Analytics tables: rollups (minute/hour/day aggregates of the raw rows) and camera snapshots.

Rollups are keyed on (granularity, bucket start, camera, subject): a rollup job replaces the
rows of the buckets it covers in one transaction, so re-running it gives the same rows.
Every granularity is computed from the raw rows (distinct counts do not add up).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Double, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from genesis.adapters.db.tables import Base, UTCDateTime

GRANULARITIES = ("minute", "hour", "day")
_GRANULARITY_CHECK = "granularity IN ('minute', 'hour', 'day')"


class CameraSnapshot(Base):
    """The most recent frame of a camera (JPEG), the background of its heatmaps."""

    __tablename__ = "camera_snapshots"

    camera_id: Mapped[str] = mapped_column(String, primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)


class RollupCamera(Base):
    __tablename__ = "rollup_camera"
    __table_args__ = (CheckConstraint(_GRANULARITY_CHECK, name="granularity"), Index(None, "bucket"))

    granularity: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String, primary_key=True)
    sightings: Mapped[int] = mapped_column(BigInteger)
    tracks: Mapped[int] = mapped_column(BigInteger)
    recognised_tracks: Mapped[int] = mapped_column(BigInteger)
    identities: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[int] = mapped_column(BigInteger)
    exits: Mapped[int] = mapped_column(BigInteger)
    crossings_in: Mapped[int] = mapped_column(BigInteger)
    crossings_out: Mapped[int] = mapped_column(BigInteger)


class RollupZone(Base):
    __tablename__ = "rollup_zone"
    __table_args__ = (CheckConstraint(_GRANULARITY_CHECK, name="granularity"), Index(None, "bucket"))

    granularity: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String, primary_key=True)
    zone: Mapped[str] = mapped_column(String, primary_key=True)
    entries: Mapped[int] = mapped_column(BigInteger)
    exits: Mapped[int] = mapped_column(BigInteger)
    visits: Mapped[int] = mapped_column(BigInteger)
    dwell_s: Mapped[float] = mapped_column(Double)
    peak_occupancy: Mapped[int] = mapped_column(Integer)
    mean_occupancy: Mapped[float] = mapped_column(Double)


class RollupLine(Base):
    __tablename__ = "rollup_line"
    __table_args__ = (CheckConstraint(_GRANULARITY_CHECK, name="granularity"), Index(None, "bucket"))

    granularity: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String, primary_key=True)
    line: Mapped[str] = mapped_column(String, primary_key=True)
    crossings_in: Mapped[int] = mapped_column(BigInteger)
    crossings_out: Mapped[int] = mapped_column(BigInteger)


class RollupIdentity(Base):
    """Per recognised identity and camera: presence, visits and dwell (all zones), crossings (all lines)."""

    __tablename__ = "rollup_identity"
    __table_args__ = (CheckConstraint(_GRANULARITY_CHECK, name="granularity"), Index(None, "bucket"))

    granularity: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String, primary_key=True)
    identity: Mapped[str] = mapped_column(String, primary_key=True)
    sightings: Mapped[int] = mapped_column(BigInteger)
    tracks: Mapped[int] = mapped_column(BigInteger)
    visits: Mapped[int] = mapped_column(BigInteger)
    dwell_s: Mapped[float] = mapped_column(Double)
    crossings_in: Mapped[int] = mapped_column(BigInteger)
    crossings_out: Mapped[int] = mapped_column(BigInteger)


class RollupIdentityZone(Base):
    """Per recognised identity, camera and zone: entries, visits and dwell."""

    __tablename__ = "rollup_identity_zone"
    __table_args__ = (CheckConstraint(_GRANULARITY_CHECK, name="granularity"), Index(None, "bucket"))

    granularity: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String, primary_key=True)
    identity: Mapped[str] = mapped_column(String, primary_key=True)
    zone: Mapped[str] = mapped_column(String, primary_key=True)
    entries: Mapped[int] = mapped_column(BigInteger)
    visits: Mapped[int] = mapped_column(BigInteger)
    dwell_s: Mapped[float] = mapped_column(Double)
