"""Tables of the identities area: enrolled face crops, "not this person" negatives, per-track
face embeddings, unknown-face clusters, the gallery version and the audit log.

Every ``vector``, ``centroid`` and ``crop`` column holds a blob written by
:class:`genesis.identities.crypto.BiometricCipher` (encrypted when a key is set).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Double, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from genesis.adapters.db.tables import Base, JSONType, UTCDateTime


class FacePhoto(Base):
    """An enrolled photo's face: a loose crop (JPEG, encrypted) and its five landmarks in crop
    coordinates, enough to embed it again with another model."""

    __tablename__ = "face_photos"
    __table_args__ = (UniqueConstraint("identity_id", "photo_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    photo_sha256: Mapped[str] = mapped_column(String(64))
    photo_name: Mapped[str] = mapped_column(String)
    detector: Mapped[str] = mapped_column(String)
    crop: Mapped[bytes] = mapped_column(LargeBinary)
    face: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """{"box": [x1, y1, x2, y2], "landmarks": [[x, y] x 5], "score": s} in crop pixels."""
    quality: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdentityNegative(Base):
    """A face an operator said is *not* this identity ("not this person")."""

    __tablename__ = "identity_negatives"
    __table_args__ = (Index(None, "identity_id", "model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    run_id: Mapped[str | None] = mapped_column(String)
    track_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UnknownCluster(Base):
    """Faces of people nobody enrolled, grouped across time and cameras: ``unknown-<id>``."""

    __tablename__ = "unknown_clusters"
    __table_args__ = (Index(None, "model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String)
    dim: Mapped[int] = mapped_column(Integer)
    centroid: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class TrackFace(Base):
    """The best face embedding of a track segment (for search by photo, clustering and "not this person")."""

    __tablename__ = "track_faces"
    __table_args__ = (Index(None, "model"), Index(None, "cluster_id"), Index(None, "created_at"))

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    track_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    camera_id: Mapped[str] = mapped_column(String)
    ts: Mapped[float] = mapped_column(Double)
    model: Mapped[str] = mapped_column(String)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    distance: Mapped[float | None] = mapped_column(Double)
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("unknown_clusters.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    crop: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The face as a small WebP (at most 160 px; JPEG for faces stored before WebP: genesis.identities.crops),
    encrypted like ``vector``; None for faces stored before crops were kept (migration 0006)."""
    segment: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, default=0)


class LiveFrame(Base):
    """The latest frame of each camera for the live view (embedded mode: `genesis run` writes it,
    `genesis serve` reads it); overwritten at most twice a second, and only while someone watches."""

    __tablename__ = "live_frames"

    camera_id: Mapped[str] = mapped_column(String, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """The frame's JSON: run, seq, ts, size, persons (track id, box, name)."""
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)


class LiveWatch(Base):
    """"Someone is watching this camera until ``until``": set by the server while a browser polls."""

    __tablename__ = "live_watch"

    camera_id: Mapped[str] = mapped_column(String, primary_key=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime())


class GalleryVersion(Base):
    """One row: bumped by every change of the enrolled faces (the embedded mode's cache key)."""

    __tablename__ = "gallery_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


class AuditEntry(Base):
    """Who did what to biometric data, and when (enroll, search, rename, reject, forget ...)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType)
