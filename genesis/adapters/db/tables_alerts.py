"""ORM models of the alerts: the alerts themselves, their delivery to each target, and the
occupancy samples of the anomaly baseline (created by migration 0002)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from genesis.adapters.db.tables import Base, UTCDateTime

ALERT_KINDS = ("crowding", "loitering", "anomaly", "watchlist", "restricted")
DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed")


class AlertRow(Base):
    """One alert. ``id`` is what `genesis alerts ack` takes; ``key`` (a hash of the natural key
    ``(run_id, kind, subject, track_id, seq)``) is the idempotency key sent to receivers."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("run_id", "kind", "subject", "track_id", "seq"),
        UniqueConstraint("key"),
        CheckConstraint("kind IN ('crowding', 'loitering', 'anomaly', 'watchlist', 'restricted')", name="kind"),
        Index(None, "camera_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    camera_id: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String)
    track_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[float] = mapped_column(Double)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    zone: Mapped[str | None] = mapped_column(String)
    identity_name: Mapped[str | None] = mapped_column(String)
    value: Mapped[float] = mapped_column(Double)
    threshold: Mapped[float] = mapped_column(Double)
    message: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AlertDeliveryRow(Base):
    """The delivery of one alert to one target (``webhook:URL`` or ``pubsub:CHANNEL``)."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sending', 'delivered', 'failed')", name="status"),
    )

    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True,
                                          autoincrement=False)
    target: Mapped[str] = mapped_column(String, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OccupancySampleRow(Base):
    """One anomaly window of one zone (``*``: the whole frame); the baseline aggregates them."""

    __tablename__ = "occupancy_samples"
    __table_args__ = (Index(None, "camera_id", "zone", "hour_of_week"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    zone: Mapped[str] = mapped_column(String, primary_key=True)
    window_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    camera_id: Mapped[str] = mapped_column(String)
    hour_of_week: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    value: Mapped[float] = mapped_column(Double)
    frames: Mapped[int] = mapped_column(Integer)
    anomalous: Mapped[bool] = mapped_column(Boolean)
