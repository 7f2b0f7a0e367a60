"""The queries of the identities area (`genesis.identities`): enrolled faces and embeddings,
negatives, track faces, unknown-face clusters, the gallery version and the audit log.

`IdentityRows` holds one open transaction (:func:`write_transaction` / :func:`read_transaction`);
its methods are the statements, in the words of the identities area. Blobs go in and come out as
stored: encrypting and decrypting them, and every decision about them, is the caller's
(`genesis.identities.store.IdentityStore`), so nothing here ever sees a clear embedding or face.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, exists, func, or_, select, tuple_, update

from genesis.adapters.db import attempts
from genesis.adapters.db.packs import run_packs, segments_of
from genesis.adapters.db.repository import (
    dialect_insert,
    lock_passages,
    read_connection,
    unpack_tracks,
    write_connection,
)
from genesis.adapters.db.tables import FaceEmbedding, Identity, Run, Track, utcnow
from genesis.adapters.db.tables_identities import (
    AuditEntry,
    FacePhoto,
    GalleryVersion,
    IdentityNegative,
    LiveFrame,
    TrackFace,
    UnknownCluster,
)
from genesis.domain import TrackRecord

CLUSTER_LOCK = 0x67656E65_636C7573
"""PostgreSQL advisory lock held while clustering (two store workers must not both create a cluster)."""

BIOMETRIC_COLUMNS: tuple[Any, ...] = (FaceEmbedding.vector, FacePhoto.crop, IdentityNegative.vector,
                                      UnknownCluster.centroid, TrackFace.vector)
"""Every column that holds biometric data (an embedding or a face)."""

_BIOMETRIC_BLOBS: tuple[tuple[Any, Any, tuple[Any, ...]], ...] = (
    (FaceEmbedding, FaceEmbedding.vector, (FaceEmbedding.id,)),
    (FacePhoto, FacePhoto.crop, (FacePhoto.id,)),
    (IdentityNegative, IdentityNegative.vector, (IdentityNegative.id,)),
    (UnknownCluster, UnknownCluster.centroid, (UnknownCluster.id,)),
    (TrackFace, TrackFace.vector, (TrackFace.run_id, TrackFace.track_id)),
    (TrackFace, TrackFace.crop, (TrackFace.run_id, TrackFace.track_id)),
)
"""(table, blob column, key columns) of every stored biometric blob, for key rotation."""


@dataclass(frozen=True, slots=True)
class NewEmbedding:
    """An enrolled embedding row as stored (``vector`` already encrypted when a key is set)."""

    identity_id: int
    model: str
    detector: str
    dim: int
    vector: bytes
    photo_sha256: str
    photo_name: str
    created_at: datetime

    def values(self) -> dict[str, Any]:
        return {"identity_id": self.identity_id, "model": self.model, "detector": self.detector, "dim": self.dim,
                "vector": self.vector, "photo_sha256": self.photo_sha256, "photo_name": self.photo_name,
                "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class FaceRow:
    """A stored track face with where, when and what was decided (no blob)."""

    run_id: str
    track_id: int
    camera_id: str
    ts: float
    distance: float | None
    cluster_id: int | None
    has_crop: bool
    identity_name: str | None
    started_at: datetime | None
    segment: int = 0


def _same_segment() -> Any:
    """Join condition: the track segment a track face belongs to."""
    return ((Track.run_id == TrackFace.run_id) & (Track.track_id == TrackFace.track_id)
            & (Track.segment == TrackFace.segment))


def _face_query() -> Any:
    return (select(TrackFace.run_id, TrackFace.track_id, TrackFace.camera_id, TrackFace.ts, TrackFace.distance,
                   TrackFace.cluster_id, (TrackFace.crop.is_not(None)).label("has_crop"), Track.identity_name,
                   Run.started_at, TrackFace.segment)
            .outerjoin(Track, _same_segment())
            .outerjoin(Run, Run.id == TrackFace.run_id))


@contextmanager
def write_transaction(engine: Engine) -> Iterator[IdentityRows]:
    """One write transaction (BEGIN IMMEDIATE on SQLite), committed on success."""
    with write_connection(engine) as conn:
        yield IdentityRows(conn)


@contextmanager
def read_transaction(engine: Engine) -> Iterator[IdentityRows]:
    with read_connection(engine) as conn:
        yield IdentityRows(conn)


class IdentityRows:
    """The statements of the identities area on one connection inside a transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_clusters(self) -> None:
        """Serialise clustering between store workers (PostgreSQL; SQLite's writer is alone anyway)."""
        if self.conn.dialect.name == "postgresql":
            self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CLUSTER_LOCK})")

    # -- policy, gallery version, audit ----------------------------------------------------------

    def biometric_mode(self, encrypted_prefixes: Sequence[bytes]) -> tuple[bool, bool]:
        """(some biometric blob starts with one of ``encrypted_prefixes``, some blob starts with none)."""
        encrypted = clear = False
        for col in BIOMETRIC_COLUMNS:
            sealed = or_(*(func.substr(col, 1, len(p)) == p for p in encrypted_prefixes))
            encrypted = encrypted or bool(self.conn.execute(select(exists().where(sealed))).scalar())
            clear = clear or bool(self.conn.execute(select(exists().where(col.is_not(None), ~sealed))).scalar())
        return encrypted, clear

    def bump_gallery_version(self) -> None:
        done = self.conn.execute(update(GalleryVersion).where(GalleryVersion.id == 1).values(
            version=GalleryVersion.version + 1)).rowcount
        if not done:
            self.conn.execute(
                dialect_insert(self.conn, GalleryVersion).on_conflict_do_nothing(index_elements=[GalleryVersion.id]),
                {"id": 1, "version": 1})

    def gallery_version(self) -> int | None:
        v = self.conn.execute(select(GalleryVersion.version).where(GalleryVersion.id == 1)).scalar_one_or_none()
        return None if v is None else int(v)

    def audit(self, actor: str, action: str, target: str | None, detail: dict[str, Any]) -> int:
        """Write an audit entry; its id."""
        new_id = self.conn.execute(dialect_insert(self.conn, AuditEntry).returning(AuditEntry.id), {
            "at": utcnow(), "actor": actor, "action": action, "target": target, "detail": detail}).scalar_one()
        return int(new_id)

    def audit_entries(self) -> list[tuple[datetime, str, str, str | None, dict[str, Any], int]]:
        """(at, actor, action, target, detail, id) of every audit entry, oldest first."""
        rows = self.conn.execute(select(AuditEntry.at, AuditEntry.actor, AuditEntry.action, AuditEntry.target,
                                        AuditEntry.detail, AuditEntry.id).order_by(AuditEntry.id)).all()
        return [(r[0], r[1], r[2], r[3], r[4], int(r[5])) for r in rows]

    def audit_entry(self, entry_id: int) -> tuple[str, str | None, dict[str, Any]] | None:
        """(action, target, detail) of one audit entry."""
        row = self.conn.execute(select(AuditEntry.action, AuditEntry.target, AuditEntry.detail)
                                .where(AuditEntry.id == entry_id)).one_or_none()
        return None if row is None else (str(row[0]), row[1], dict(row[2] or {}))

    def audit_page(self, limit: int, offset: int, action: str | None = None
                   ) -> tuple[list[tuple[datetime, str, str, str | None, dict[str, Any], int]], int]:
        """A page of the audit log, newest first (only ``action`` entries when given), and the total."""
        cond = AuditEntry.action == action if action else AuditEntry.id.is_not(None)
        total = int(self.conn.execute(select(func.count()).select_from(AuditEntry).where(cond)).scalar_one())
        rows = self.conn.execute(select(AuditEntry.at, AuditEntry.actor, AuditEntry.action, AuditEntry.target,
                                        AuditEntry.detail, AuditEntry.id).where(cond)
                                 .order_by(AuditEntry.id.desc()).limit(limit).offset(offset)).all()
        return [(r[0], r[1], r[2], r[3], r[4], int(r[5])) for r in rows], total

    def undone_entries(self, entry_ids: Sequence[int]) -> set[int]:
        """Which of these audit entries an ``undo`` entry names."""
        if not entry_ids:
            return set()
        wanted = {int(i) for i in entry_ids}
        rows = self.conn.execute(select(AuditEntry.detail).where(AuditEntry.action == "undo")).scalars().all()
        return {int(d["entry"]) for d in rows if isinstance(d, dict) and int(d.get("entry", -1)) in wanted}

    # -- identities and their embeddings -------------------------------------------------------

    def identity_id(self, name: str) -> int | None:
        ident = self.conn.execute(select(Identity.id).where(Identity.name == name)).scalar_one_or_none()
        return None if ident is None else int(ident)

    def identity_name(self, identity_id: int) -> str | None:
        name = self.conn.execute(select(Identity.name).where(Identity.id == identity_id)).scalar_one_or_none()
        return None if name is None else str(name)

    def add_identity(self, name: str, now: datetime) -> None:
        """Create the identity unless it exists."""
        self.conn.execute(dialect_insert(self.conn, Identity).on_conflict_do_nothing(index_elements=[Identity.name]),
                          {"name": name, "created_at": now})

    def insert_identity(self, name: str, now: datetime) -> None:
        """Create the identity (an IntegrityError if the name is taken)."""
        self.conn.execute(dialect_insert(self.conn, Identity), {"name": name, "created_at": now})

    def embedding_dims(self, model: str) -> tuple[int | None, int | None]:
        """(smallest, largest) dimension of the stored embeddings of ``model`` (None, None: there are none)."""
        row = self.conn.execute(select(func.min(FaceEmbedding.dim), func.max(FaceEmbedding.dim))
                                .where(FaceEmbedding.model == model)).one()
        return row[0], row[1]

    def add_embedding(self, row: NewEmbedding) -> bool:
        """Store an embedding unless its (identity, model, photo) is stored already; True when stored."""
        res = self.conn.execute(
            dialect_insert(self.conn, FaceEmbedding).on_conflict_do_nothing(
                index_elements=[FaceEmbedding.identity_id, FaceEmbedding.model, FaceEmbedding.photo_sha256]
            ).returning(FaceEmbedding.id),
            row.values(),
        ).all()
        return bool(res)

    def insert_embedding(self, row: NewEmbedding) -> None:
        """Store an embedding (an IntegrityError if its (identity, model, photo) is stored already)."""
        self.conn.execute(dialect_insert(self.conn, FaceEmbedding), row.values())

    def add_face_photo(self, identity_id: int, photo_sha256: str, photo_name: str, detector: str, crop: bytes,
                       face: dict[str, Any], quality: dict[str, Any], now: datetime) -> None:
        """Keep an enrollment photo's face crop unless that photo is kept already."""
        self.conn.execute(
            dialect_insert(self.conn, FacePhoto).on_conflict_do_nothing(
                index_elements=[FacePhoto.identity_id, FacePhoto.photo_sha256]),
            {"identity_id": identity_id, "photo_sha256": photo_sha256, "photo_name": photo_name,
             "detector": detector, "crop": crop, "face": face, "quality": quality, "created_at": now},
        )

    def embeddings_of_others(self, model: str, name: str) -> list[tuple[int, str, int, bytes]]:
        """(identity id, identity, dim, blob) of the embeddings of ``model`` of every identity but ``name``."""
        rows = self.conn.execute(
            select(Identity.id, Identity.name, FaceEmbedding.dim, FaceEmbedding.vector)
            .join(Identity, Identity.id == FaceEmbedding.identity_id)
            .where(FaceEmbedding.model == model, Identity.name != name)
        ).all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def _vector_rows(self, table: Any, model: str) -> list[tuple[str, int, bytes]]:
        """(identity, dim, blob) of the vectors of ``model`` in ``table`` (an identity's embeddings or
        negatives), in the order they were stored."""
        rows = self.conn.execute(
            select(Identity.name, table.dim, table.vector)
            .join(Identity, Identity.id == table.identity_id)
            .where(table.model == model).order_by(table.id)
        ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def gallery_rows(self, model: str) -> list[tuple[str, int, bytes]]:
        """(identity, dim, blob) of the enrolled embeddings of ``model``, in enrollment order."""
        return self._vector_rows(FaceEmbedding, model)

    def negative_rows(self, model: str) -> list[tuple[str, int, bytes]]:
        """(identity, dim, blob) of the negatives of ``model``, in the order they were given."""
        return self._vector_rows(IdentityNegative, model)

    def embedding_models(self) -> list[str]:
        return sorted(self.conn.execute(select(FaceEmbedding.model).distinct()).scalars())

    def photo_rows(self) -> list[tuple[str, str, str, str, bytes, dict[str, Any]]]:
        """(identity, sha256, photo name, detector, crop blob, face) of every kept photo, by identity."""
        rows = self.conn.execute(
            select(Identity.name, FacePhoto.photo_sha256, FacePhoto.photo_name, FacePhoto.detector,
                   FacePhoto.crop, FacePhoto.face)
            .join(Identity, Identity.id == FacePhoto.identity_id).order_by(Identity.name, FacePhoto.id)
        ).all()
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def photoless(self) -> list[tuple[str, str]]:
        """(identity, photo name) of embeddings with no kept face (unsorted, distinct)."""
        kept = select(FacePhoto.id).where(FacePhoto.identity_id == FaceEmbedding.identity_id,
                                           FacePhoto.photo_sha256 == FaceEmbedding.photo_sha256).exists()
        rows = self.conn.execute(select(Identity.name, FaceEmbedding.photo_name).join(
            Identity, Identity.id == FaceEmbedding.identity_id).where(~kept).distinct()).all()
        return [(r[0], r[1]) for r in rows]

    def delete_model(self, model: str) -> None:
        """Drop every embedding and negative of ``model`` (re-embedding replaces them)."""
        self.conn.execute(delete(FaceEmbedding).where(FaceEmbedding.model == model))
        self.conn.execute(delete(IdentityNegative).where(IdentityNegative.model == model))

    def rename_identity(self, identity_id: int, old: str, new: str) -> None:
        """The identity, its tracks and its recognition attempts take the name ``new``."""
        self.conn.execute(update(Identity).where(Identity.id == identity_id).values(name=new))
        self.conn.execute(update(Track).where(Track.identity_id == identity_id).values(identity_name=new))
        attempts.rename(self.conn, old, new)

    # -- forget --------------------------------------------------------------------------------

    def embeddings_of(self, identity_id: int) -> list[tuple[str, int, bytes]]:
        """(model, dim, blob) of the identity's embeddings."""
        return [(r[0], r[1], r[2]) for r in self.conn.execute(
            select(FaceEmbedding.model, FaceEmbedding.dim, FaceEmbedding.vector)
            .where(FaceEmbedding.identity_id == identity_id))]

    def delete_enrollment(self, identity_id: int) -> dict[str, int]:
        """Delete the identity's embeddings, kept faces and negatives; the counts of each."""
        return {
            "embeddings": self.conn.execute(
                delete(FaceEmbedding).where(FaceEmbedding.identity_id == identity_id)).rowcount,
            "face_photos": self.conn.execute(delete(FacePhoto).where(FacePhoto.identity_id == identity_id)).rowcount,
            "negatives": self.conn.execute(
                delete(IdentityNegative).where(IdentityNegative.identity_id == identity_id)).rowcount,
        }

    def named_segments(self, identity_id: int, name: str) -> list[tuple[str, int, int]]:
        """(run, track, segment) of the track segments linked to the identity by id or by name."""
        rows = self.conn.execute(select(Track.run_id, Track.track_id, Track.segment).where(
            (Track.identity_id == identity_id) | (Track.identity_name == name))).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def delete_track_face(self, run_id: str, track_id: int, segment: int) -> int:
        return int(self.conn.execute(delete(TrackFace).where(
            TrackFace.run_id == run_id, TrackFace.track_id == track_id, TrackFace.segment == segment)).rowcount)

    def track_face_vectors(self, model: str) -> list[tuple[str, int, int, int, bytes]]:
        """(run, track, segment, dim, blob) of every stored track face of ``model``."""
        rows = self.conn.execute(
            select(TrackFace.run_id, TrackFace.track_id, TrackFace.segment, TrackFace.dim, TrackFace.vector)
            .where(TrackFace.model == model)).all()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def cluster_centroids(self, model: str) -> list[tuple[int, int, bytes]]:
        """(cluster id, dim, centroid blob) of the unknown clusters of ``model``."""
        rows = self.conn.execute(
            select(UnknownCluster.id, UnknownCluster.dim, UnknownCluster.centroid)
            .where(UnknownCluster.model == model)).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def delete_cluster_with_faces(self, cluster_id: int) -> tuple[int, int]:
        """Delete an unknown cluster's faces, then the cluster: (faces, clusters) deleted."""
        faces = self.conn.execute(delete(TrackFace).where(TrackFace.cluster_id == cluster_id)).rowcount
        clusters = self.conn.execute(delete(UnknownCluster).where(UnknownCluster.id == cluster_id)).rowcount
        return int(faces), int(clusters)

    def erase_identity(self, identity_id: int, name: str) -> int:
        """The end of forgetting: tracks and recognition attempts lose the name, audit entries name it
        ``identity #<id>``, the identity row goes, and so do the live view's frames (they may show the
        name; the next published frame replaces them). Returns the track segments unlinked."""
        unlinked = self.conn.execute(
            update(Track).where((Track.identity_id == identity_id) | (Track.identity_name == name))
            .values(identity_id=None, identity_name=None)).rowcount
        attempts.rename(self.conn, name, None)
        self.conn.execute(update(AuditEntry).where(AuditEntry.target == name)
                          .values(target=f"identity #{identity_id}"))
        self.conn.execute(delete(Identity).where(Identity.id == identity_id))
        self.conn.execute(delete(LiveFrame))
        return int(unlinked)

    def rotate_blobs(self, rotate: Callable[[bytes], bytes]) -> int:
        """Rewrite every stored biometric blob as ``rotate`` returns it; the number rewritten."""
        n = 0
        for table, col, keys in _BIOMETRIC_BLOBS:
            for row in self.conn.execute(select(*keys, col).where(col.is_not(None))).all():
                cond = [k == v for k, v in zip(keys, row[:-1], strict=True)]
                self.conn.execute(update(table).where(*cond).values({col.key: rotate(row[-1])}))
                n += 1
        return n

    # -- track faces and unknown clusters --------------------------------------------------------

    def run_exists(self, run_id: str) -> bool:
        return self.conn.execute(select(Run.id).where(Run.id == run_id)).first() is not None

    def runs_with_prefix(self, prefix: str) -> list[str]:
        return sorted(self.conn.execute(select(Run.id).where(Run.id.startswith(prefix, autoescape=True))).scalars())

    def track_face_keys(self, run_id: str) -> set[tuple[int, int]]:
        """(track, segment) of the run's stored track faces."""
        return {(int(t), int(g)) for t, g in self.conn.execute(
            select(TrackFace.track_id, TrackFace.segment).where(TrackFace.run_id == run_id))}

    def add_track_face(self, run_id: str, track_id: int, segment: int, camera_id: str, ts: float, model: str,
                       dim: int, vector: bytes, distance: float | None, crop: bytes | None, now: datetime,
                       cluster_id: int | None = None) -> None:
        self.conn.execute(dialect_insert(self.conn, TrackFace), {
            "run_id": run_id, "track_id": track_id, "segment": segment, "camera_id": camera_id, "ts": ts,
            "model": model, "dim": dim, "vector": vector, "distance": distance, "cluster_id": cluster_id,
            "created_at": now, "crop": crop})

    def clusters_of(self, model: str) -> list[tuple[int, int, bytes, int]]:
        """(id, dim, centroid blob, size) of the unknown clusters of ``model``, oldest first."""
        rows = self.conn.execute(
            select(UnknownCluster.id, UnknownCluster.dim, UnknownCluster.centroid, UnknownCluster.size)
            .where(UnknownCluster.model == model).order_by(UnknownCluster.id)).all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def new_cluster(self, model: str, dim: int, centroid: bytes, now: datetime) -> int:
        """A new unknown cluster of one face; its id."""
        new_id = self.conn.execute(dialect_insert(self.conn, UnknownCluster).returning(UnknownCluster.id), {
            "model": model, "dim": dim, "centroid": centroid, "size": 1, "first_seen": now, "last_seen": now,
        }).scalar_one()
        return int(new_id)

    def set_face_cluster(self, run_id: str, track_id: int, segment: int, cluster_id: int | None) -> None:
        self.conn.execute(update(TrackFace).where(TrackFace.run_id == run_id, TrackFace.track_id == track_id,
                                                  TrackFace.segment == segment)
                          .values(cluster_id=cluster_id))

    def update_cluster(self, cluster_id: int, centroid: bytes, size: int, now: datetime) -> None:
        self.conn.execute(update(UnknownCluster).where(UnknownCluster.id == cluster_id)
                          .values(centroid=centroid, size=size, last_seen=now))

    def cluster_summaries(self) -> list[tuple[int, str, datetime, datetime]]:
        """(id, model, first seen, last seen) of every unknown cluster, oldest first."""
        rows = self.conn.execute(select(UnknownCluster.id, UnknownCluster.model, UnknownCluster.first_seen,
                                        UnknownCluster.last_seen).order_by(UnknownCluster.id)).all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def clustered_cameras(self) -> list[tuple[int, str]]:
        """(cluster id, camera) of every track face in a cluster."""
        rows = self.conn.execute(select(TrackFace.cluster_id, TrackFace.camera_id)
                                 .where(TrackFace.cluster_id.is_not(None))).all()
        return [(int(r[0] or 0), r[1]) for r in rows]

    def cluster_tracks(self, cluster_id: int) -> list[tuple[str, int]]:
        """(run, track) of a cluster's faces, by run then track."""
        rows = self.conn.execute(select(TrackFace.run_id, TrackFace.track_id)
                                 .where(TrackFace.cluster_id == cluster_id)
                                 .order_by(TrackFace.run_id, TrackFace.track_id)).all()
        return [(r[0], int(r[1])) for r in rows]

    def cluster_exists(self, cluster_id: int) -> bool:
        return self.conn.execute(select(UnknownCluster.id).where(UnknownCluster.id == cluster_id)).first() is not None

    def cluster_face_rows(self, cluster_id: int) -> list[tuple[str, int, str, int, bytes, int]]:
        """(run, track, model, dim, blob, segment) of a cluster's faces."""
        rows = self.conn.execute(select(TrackFace.run_id, TrackFace.track_id, TrackFace.model, TrackFace.dim,
                                        TrackFace.vector, TrackFace.segment)
                                 .where(TrackFace.cluster_id == cluster_id)).all()
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def name_segment(self, run_id: str, track_id: int, segment: int, identity_id: int, name: str) -> None:
        """A track segment gets the identity (its track taken out of its passage pack first, where packed)."""
        self.set_segment_identity(run_id, track_id, segment, identity_id, name)

    def unpack_for_naming(self, keys: Sequence[tuple[str, int]]) -> int:
        """Take the (run, track) of ``keys`` that are packed out of their passage packs, as rows again, a run at a
        time (each pack rewritten once): what naming a cluster's faces does first. The segments put back."""
        by_run: dict[str, set[int]] = {}
        for run_id, track_id in keys:
            by_run.setdefault(run_id, set()).add(int(track_id))
        n = 0
        for run_id, tracks in sorted(by_run.items()):
            lock_passages(self.conn, run_id)
            rows = set(self.conn.execute(select(Track.track_id).where(
                Track.run_id == run_id, Track.track_id.in_(sorted(tracks)))).scalars())
            if tracks - rows:
                n += unpack_tracks(self.conn, run_id, tracks - rows)
        return n

    def dissolve_cluster(self, cluster_id: int) -> None:
        """The cluster's faces leave it and the cluster goes (its faces were given a name)."""
        self.conn.execute(update(TrackFace).where(TrackFace.cluster_id == cluster_id).values(cluster_id=None))
        self.conn.execute(delete(UnknownCluster).where(UnknownCluster.id == cluster_id))

    def track_segments(self, run_id: str, track_id: int) -> list[tuple[int, str | None]]:
        """(segment, identity) of a track's segments in order (a packed track's from its pack: no name)."""
        rows = self.conn.execute(select(Track.segment, Track.identity_name).where(
            Track.run_id == run_id, Track.track_id == track_id).order_by(Track.segment)).all()
        if rows:
            return [(r[0], r[1]) for r in rows]
        return sorted((int(t.segment), t.identity) for t in self._packed_segments(run_id, track_id))

    def _packed_segments(self, run_id: str, track_id: int) -> list[TrackRecord]:
        """The segments of a packed track (none when it is rows, or unknown)."""
        return [t for p in run_packs(self.conn, run_id, [track_id]) for t in segments_of(p, [track_id])]

    def search_rows(self, model: str) -> list[tuple[str, int, str, float, int, bytes, int | None, str | None, int]]:
        """(run, track, camera, ts, dim, blob, cluster id, identity, segment) of every track face of ``model``."""
        rows = self.conn.execute(
            select(TrackFace.run_id, TrackFace.track_id, TrackFace.camera_id, TrackFace.ts, TrackFace.dim,
                   TrackFace.vector, TrackFace.cluster_id, Track.identity_name, TrackFace.segment)
            .outerjoin(Track, _same_segment())
            .where(TrackFace.model == model)
        ).all()
        return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows]

    def purge_unknowns(self, cutoff: datetime, limit: int) -> dict[str, int]:
        """Retention, one batch: at most ``limit`` faces of unknown clusters last seen before ``cutoff`` and of
        unnamed track segments stored before it, then (once no face of those clusters is left) the clusters. The
        counts of what went; fewer than ``limit`` faces: nothing more to purge. Batches keep each transaction (and
        the clustering lock its caller holds) short however large the backlog."""
        old = select(UnknownCluster.id).where(UnknownCluster.last_seen < cutoff)
        key = tuple_(TrackFace.run_id, TrackFace.track_id, TrackFace.segment)
        of_old = select(TrackFace.run_id, TrackFace.track_id, TrackFace.segment).where(
            TrackFace.cluster_id.in_(old)).limit(limit)
        n_faces = int(self.conn.execute(delete(TrackFace).where(key.in_(of_old))).rowcount or 0)
        n_clusters = 0
        if n_faces < limit:
            n_clusters = int(self.conn.execute(delete(UnknownCluster).where(UnknownCluster.id.in_(old))).rowcount or 0)
            named = select(Track.track_id).where(_same_segment(), Track.identity_name.is_not(None)).exists()
            unnamed = select(TrackFace.run_id, TrackFace.track_id, TrackFace.segment).where(
                TrackFace.created_at < cutoff, ~named).limit(limit - n_faces)
            n_faces += int(self.conn.execute(delete(TrackFace).where(key.in_(unnamed))).rowcount or 0)
        return {"unknown_clusters": n_clusters, "track_faces": n_faces}

    # -- the console's faces and review ----------------------------------------------------------

    def track_crop(self, run_id: str, track_id: int) -> bytes | None:
        """The crop blob of the track's first stored face that has one."""
        blob: bytes | None = self.conn.execute(
            select(TrackFace.crop).where(TrackFace.run_id == run_id, TrackFace.track_id == track_id,
                                         TrackFace.crop.is_not(None)).order_by(TrackFace.ts).limit(1)
        ).scalars().first()
        return blob

    def photo_crop(self, photo_id: int) -> bytes | None:
        blob: bytes | None = self.conn.execute(
            select(FacePhoto.crop).where(FacePhoto.id == photo_id)).scalar_one_or_none()
        return blob

    def photo_names(self, identity_id: int) -> list[tuple[int, str]]:
        """(photo id, photo name) of the identity's kept faces, in enrollment order."""
        rows = self.conn.execute(select(FacePhoto.id, FacePhoto.photo_name)
                                 .where(FacePhoto.identity_id == identity_id).order_by(FacePhoto.id)).all()
        return [(int(r[0]), str(r[1])) for r in rows]

    def track_embedding_names(self, identity_id: int) -> list[str]:
        """Photo names of the identity's embeddings that came from a track's face, in enrollment order."""
        return [str(n) for n in self.conn.execute(select(FaceEmbedding.photo_name).where(
            FaceEmbedding.identity_id == identity_id, FaceEmbedding.detector == "track").order_by(FaceEmbedding.id)
        ).scalars().all()]

    def track_has_crop(self, run_id: str, track_id: int) -> bool:
        found = self.conn.execute(select(TrackFace.track_id).where(
            TrackFace.run_id == run_id, TrackFace.track_id == track_id, TrackFace.crop.is_not(None))).first()
        return found is not None

    def _faces(self, query: Any) -> list[FaceRow]:
        return [FaceRow(r.run_id, int(r.track_id), r.camera_id, float(r.ts),
                        None if r.distance is None else float(r.distance), r.cluster_id, bool(r.has_crop),
                        r.identity_name, r.started_at, int(r.segment)) for r in self.conn.execute(query).all()]

    def cluster_faces(self, cluster_id: int) -> list[FaceRow]:
        return self._faces(_face_query().where(TrackFace.cluster_id == cluster_id))

    def faces_of_runs(self, run_ids: Sequence[str], identity: str | None = None) -> list[FaceRow]:
        """The stored faces of these runs (of the segments named ``identity`` only, when given), by run, track and
        segment."""
        query = _face_query().where(TrackFace.run_id.in_(run_ids))
        if identity is not None:
            query = query.where(Track.identity_name == identity)
        return self._faces(query.order_by(TrackFace.run_id, TrackFace.track_id, TrackFace.segment))

    def review_faces(self, model: str, threshold: float, margin: float, limit: int,
                     offset: int) -> tuple[list[FaceRow], int]:
        """Faces of ``model`` of unnamed segments, or named by recognition with a distance above
        ``threshold - margin``; newest first. (page, total)."""
        # Named by recognition (votes) with little to spare; a name an operator gave has no votes.
        weak = Track.identity_name.is_not(None) & (Track.votes > 0) & (TrackFace.distance > threshold - margin)
        unnamed = Track.identity_name.is_(None)
        cond = (TrackFace.model == model) & (unnamed | weak)
        total = int(self.conn.execute(
            select(func.count()).select_from(TrackFace).outerjoin(Track, _same_segment()).where(cond)).scalar_one())
        query = (_face_query().where(cond)
                 .order_by(Run.started_at.desc(), TrackFace.ts.desc(), TrackFace.track_id.desc())
                 .limit(limit).offset(offset))
        return self._faces(query), total

    def cluster_centroid(self, cluster_id: int) -> tuple[int, bytes] | None:
        """(dim, centroid blob) of an unknown cluster."""
        row = self.conn.execute(select(UnknownCluster.dim, UnknownCluster.centroid)
                                .where(UnknownCluster.id == cluster_id)).one_or_none()
        return None if row is None else (row[0], row[1])

    def cluster_vectors(self, cluster_id: int) -> list[tuple[str, int, int, bytes, int]]:
        """(run, track, dim, blob, segment) of a cluster's faces."""
        rows = self.conn.execute(select(TrackFace.run_id, TrackFace.track_id, TrackFace.dim, TrackFace.vector,
                                        TrackFace.segment).where(TrackFace.cluster_id == cluster_id)).all()
        return [(r[0], int(r[1]), r[2], r[3], int(r[4])) for r in rows]

    def cluster_member_vectors(self, cluster_id: int) -> list[tuple[int, bytes]]:
        """(dim, blob) of a cluster's faces."""
        rows = self.conn.execute(select(TrackFace.dim, TrackFace.vector).where(TrackFace.cluster_id == cluster_id))
        return [(r[0], r[1]) for r in rows.all()]

    def delete_cluster(self, cluster_id: int) -> None:
        self.conn.execute(delete(UnknownCluster).where(UnknownCluster.id == cluster_id))

    def last_track_face(self, run_id: str, track_id: int) -> tuple[str, int, bytes, int | None, int] | None:
        """(model, dim, blob, cluster id, segment) of the face of the track's last segment that has one."""
        row = self.conn.execute(select(TrackFace.model, TrackFace.dim, TrackFace.vector, TrackFace.cluster_id,
                                       TrackFace.segment).where(
            TrackFace.run_id == run_id, TrackFace.track_id == track_id).order_by(TrackFace.segment.desc()).limit(1)
        ).one_or_none()
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])

    def cluster_models(self, cluster_ids: Sequence[int]) -> dict[int, str]:
        return {int(k): str(v) for k, v in self.conn.execute(
            select(UnknownCluster.id, UnknownCluster.model).where(UnknownCluster.id.in_(cluster_ids))).all()}

    def first_seen(self, cluster_ids: Sequence[int]) -> datetime:
        first: datetime = self.conn.execute(
            select(func.min(UnknownCluster.first_seen)).where(UnknownCluster.id.in_(cluster_ids))).scalar_one()
        return first

    def move_cluster_faces(self, source: int, target: int) -> None:
        self.conn.execute(update(TrackFace).where(TrackFace.cluster_id == source).values(cluster_id=target))

    def set_cluster_first_seen(self, cluster_id: int, first: datetime) -> None:
        self.conn.execute(update(UnknownCluster).where(UnknownCluster.id == cluster_id).values(first_seen=first))

    # -- one identity segment of a track (the console's unit of review) and undo -----------------

    def segment_crop(self, run_id: str, track_id: int, segment: int) -> bytes | None:
        """The crop blob of one segment's face (None: no face, or its crop was not kept)."""
        blob: bytes | None = self.conn.execute(select(TrackFace.crop).where(
            TrackFace.run_id == run_id, TrackFace.track_id == track_id, TrackFace.segment == segment)
        ).scalars().first()
        return blob

    def segment_face(self, run_id: str, track_id: int, segment: int
                     ) -> tuple[str, int, bytes, int | None, bool] | None:
        """(model, dim, blob, cluster id, has crop) of one segment's face."""
        row = self.conn.execute(select(TrackFace.model, TrackFace.dim, TrackFace.vector, TrackFace.cluster_id,
                                       TrackFace.crop.is_not(None)).where(
            TrackFace.run_id == run_id, TrackFace.track_id == track_id, TrackFace.segment == segment)).one_or_none()
        return None if row is None else (row[0], int(row[1]), row[2], row[3], bool(row[4]))

    def face_segments(self, run_id: str, track_id: int) -> list[int]:
        """The segments of a track that have a stored face, in order."""
        return [int(g) for g in self.conn.execute(select(TrackFace.segment).where(
            TrackFace.run_id == run_id, TrackFace.track_id == track_id).order_by(TrackFace.segment)).scalars()]

    def segment_identity(self, run_id: str, track_id: int, segment: int) -> tuple[int | None, str | None] | None:
        """(identity id, identity name) of a track segment (a packed one has none); None when there is no such
        segment."""
        row = self.conn.execute(select(Track.identity_id, Track.identity_name).where(
            Track.run_id == run_id, Track.track_id == track_id, Track.segment == segment)).one_or_none()
        if row is not None:
            return (row[0], row[1])
        packed = any(int(t.segment) == segment for t in self._packed_segments(run_id, track_id))
        return (None, None) if packed else None

    def set_segment_identity(self, run_id: str, track_id: int, segment: int, identity_id: int | None,
                             name: str | None) -> None:
        """A track segment gets the identity, or none. A packed track is taken out of its pack first (a named
        segment is a row; a packed one has no name to take), under the run's passage lock, so that the upkeep
        packing it cannot lose the name."""
        lock_passages(self.conn, run_id)
        where = (Track.run_id == run_id, Track.track_id == track_id, Track.segment == segment)
        done = self.conn.execute(update(Track).where(*where).values(identity_id=identity_id, identity_name=name))
        if not done.rowcount and name is not None and unpack_tracks(self.conn, run_id, [track_id]):
            self.conn.execute(update(Track).where(*where).values(identity_id=identity_id, identity_name=name))

    def add_negative_id(self, identity_id: int, model: str, dim: int, vector: bytes, run_id: str,
                        track_id: int) -> int:
        """`add_negative`, returning the new row's id (so that an undo can remove exactly it)."""
        new_id = self.conn.execute(dialect_insert(self.conn, IdentityNegative).returning(IdentityNegative.id), {
            "identity_id": identity_id, "model": model, "dim": dim, "vector": vector, "run_id": run_id,
            "track_id": track_id, "created_at": utcnow()}).scalar_one()
        return int(new_id)

    def delete_negatives(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        return int(self.conn.execute(delete(IdentityNegative).where(IdentityNegative.id.in_(list(ids)))).rowcount)

    def delete_embedding(self, identity_id: int, photo_sha256: str) -> int:
        return int(self.conn.execute(delete(FaceEmbedding).where(
            FaceEmbedding.identity_id == identity_id, FaceEmbedding.photo_sha256 == photo_sha256)).rowcount)

    def identity_unused(self, identity_id: int, name: str) -> bool:
        """No embedding, kept photo or track segment refers to the identity."""
        for cond in (select(FaceEmbedding.id).where(FaceEmbedding.identity_id == identity_id),
                     select(FacePhoto.id).where(FacePhoto.identity_id == identity_id),
                     select(Track.track_id).where((Track.identity_id == identity_id) | (Track.identity_name == name))):
            if self.conn.execute(cond.limit(1)).first() is not None:
                return False
        return True

    def delete_identity(self, identity_id: int) -> None:
        self.conn.execute(delete(Identity).where(Identity.id == identity_id))

    def cluster_row(self, cluster_id: int) -> tuple[str, int, datetime, datetime] | None:
        """(model, dim, first seen, last seen) of an unknown cluster."""
        row = self.conn.execute(select(UnknownCluster.model, UnknownCluster.dim, UnknownCluster.first_seen,
                                       UnknownCluster.last_seen).where(UnknownCluster.id == cluster_id)).one_or_none()
        return None if row is None else (str(row[0]), int(row[1]), row[2], row[3])

    def restore_cluster(self, cluster_id: int, model: str, dim: int, centroid: bytes, first: datetime,
                        last: datetime) -> None:
        """Re-create an unknown cluster under its old id (an undone merge or naming)."""
        self.conn.execute(dialect_insert(self.conn, UnknownCluster), {
            "id": cluster_id, "model": model, "dim": dim, "centroid": centroid, "size": 0, "first_seen": first,
            "last_seen": last})

    def set_cluster_seen(self, cluster_id: int, first: datetime, last: datetime) -> None:
        self.conn.execute(update(UnknownCluster).where(UnknownCluster.id == cluster_id)
                          .values(first_seen=first, last_seen=last))

    def cluster_segments(self, cluster_id: int) -> list[tuple[str, int, int]]:
        """(run, track, segment) of a cluster's faces."""
        rows = self.conn.execute(select(TrackFace.run_id, TrackFace.track_id, TrackFace.segment)
                                 .where(TrackFace.cluster_id == cluster_id)
                                 .order_by(TrackFace.run_id, TrackFace.track_id, TrackFace.segment)).all()
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    def crop_count(self, cluster_id: int) -> tuple[int, int]:
        """(faces, faces with a kept crop) of a cluster."""
        row = self.conn.execute(select(func.count(), func.count(TrackFace.crop))
                                .where(TrackFace.cluster_id == cluster_id)).one()
        return int(row[0]), int(row[1])

    def keep_cluster_seen(self, cluster_id: int, last: datetime) -> None:
        self.conn.execute(update(UnknownCluster).where(UnknownCluster.id == cluster_id).values(last_seen=last))

    def counts(self, recent_runs: int = 20) -> dict[str, Any]:
        """What the console's live updates compare every second, each read cheap whatever the history:
        identities and unknown groups (small tables), the groups' newest last-seen, the stored faces of the
        ``recent_runs`` newest runs (by the primary key; older faces change only by forget or purge, which
        are audited) and the newest audit entry's id (the primary key's end)."""
        runs = select(Run.id).order_by(Run.started_at.desc()).limit(recent_runs).scalar_subquery()
        last_seen = self.conn.execute(select(func.max(UnknownCluster.last_seen))).scalar_one()
        return {
            "identities": int(self.conn.execute(select(func.count(Identity.id))).scalar_one()),
            "unknowns": int(self.conn.execute(select(func.count(UnknownCluster.id))).scalar_one()),
            "unknowns_seen": last_seen.isoformat() if last_seen is not None else None,
            "faces": int(self.conn.execute(select(func.count()).select_from(TrackFace)
                                           .where(TrackFace.run_id.in_(runs))).scalar_one()),
            "audit_last": int(self.conn.execute(select(func.max(AuditEntry.id))).scalar_one() or 0),
        }


__all__ = [
    "BIOMETRIC_COLUMNS",
    "CLUSTER_LOCK",
    "FaceRow",
    "IdentityRows",
    "NewEmbedding",
    "read_transaction",
    "write_transaction",
]
