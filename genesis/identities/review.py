"""What the operator's console needs from the identities library: the faces themselves (track face
crops, enrolled face crops, the faces of an unknown cluster best first), the review queue (recent
unrecognised and low-margin faces) and the review actions that are not in `tracks` yet: assign one
track's face to an identity (existing or new) and merge two unknown clusters. Every change is
audited and bumps the gallery version, like the other changes of `IdentityStore`.

Crops are read decrypted only here, to be served to an authenticated caller; they stay encrypted in
the database (`genesis.identities.crypto`). They go with the rows that hold them: `forget` and the
retention `purge` delete track faces (and so their crops), `forget` deletes enrolled face crops.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, delete, func, select, update

from genesis.adapters.db.repository import dialect_insert
from genesis.adapters.db.tables import FaceEmbedding, Identity, Run, Track, utcnow
from genesis.adapters.db.tables_identities import FacePhoto, TrackFace, UnknownCluster
from genesis.identities.store import IdentityError, IdentityStore, check_name
from genesis.identities.tracks import _lock, _unit, label, parse_label


@dataclass(frozen=True, slots=True)
class FaceRef:
    """A stored track face: where and when, its decision, its cluster, whether a crop is kept."""

    run_id: str
    track_id: int
    camera_id: str
    ts: float
    started_at: datetime | None
    identity: str | None
    distance: float | None
    unknown: str | None
    has_crop: bool
    centroid_distance: float | None = None


def track_crop(store: IdentityStore, run_id: str, track_id: int) -> bytes | None:
    """The JPEG of a track's stored face (decrypted), None when there is none."""
    with store._read() as conn:
        # The first stored face of the track (a track cut into identity segments may have several).
        blob = conn.execute(select(TrackFace.crop).where(TrackFace.run_id == run_id, TrackFace.track_id == track_id,
                                                         TrackFace.crop.is_not(None)).order_by(TrackFace.ts).limit(1)
                            ).scalars().first()
    return None if blob is None else store.cipher.decrypt(blob)


@dataclass(frozen=True, slots=True)
class EnrolledFaceRef:
    """An enrolled face that can be shown: a kept photo crop (``photo_id``) or a track's face that
    was enrolled by naming a cluster or assigning the face (``run_id``, ``track_id``)."""

    photo: str
    photo_id: int | None = None
    run_id: str | None = None
    track_id: int | None = None


def enrolled_faces(store: IdentityStore, name: str) -> list[EnrolledFaceRef]:
    """An identity's enrolled faces that have a crop, photos first (IdentityError: no such identity)."""
    with store._read() as conn:
        ident = store._identity_id(conn, name)
        photos = conn.execute(select(FacePhoto.id, FacePhoto.photo_name).where(FacePhoto.identity_id == ident)
                              .order_by(FacePhoto.id)).all()
        names = conn.execute(select(FaceEmbedding.photo_name).where(
            FaceEmbedding.identity_id == ident, FaceEmbedding.detector == "track").order_by(FaceEmbedding.id)
        ).scalars().all()
        out = [EnrolledFaceRef(str(r[1]), photo_id=int(r[0])) for r in photos]
        for text in dict.fromkeys(names):
            run_id, _, track = str(text).removeprefix("track ").partition("/")
            if not track.isdigit():
                continue
            has = conn.execute(select(TrackFace.track_id).where(
                TrackFace.run_id == run_id, TrackFace.track_id == int(track), TrackFace.crop.is_not(None))).first()
            if has is not None:
                out.append(EnrolledFaceRef(str(text), run_id=run_id, track_id=int(track)))
    return out


def photo_crop(store: IdentityStore, photo_id: int) -> bytes | None:
    """The JPEG of one kept enrolled face (decrypted), None when there is no such photo."""
    with store._read() as conn:
        blob = conn.execute(select(FacePhoto.crop).where(FacePhoto.id == photo_id)).scalar_one_or_none()
    return None if blob is None else store.cipher.decrypt(blob)


def _refs(conn: Connection, query: object) -> list[FaceRef]:
    rows = conn.execute(query).all()  # type: ignore[call-overload]
    return [FaceRef(r.run_id, int(r.track_id), r.camera_id, float(r.ts), r.started_at, r.identity_name,
                    None if r.distance is None else float(r.distance),
                    label(r.cluster_id) if r.cluster_id is not None else None, bool(r.has_crop)) for r in rows]


def _face_query() -> object:
    return (select(TrackFace.run_id, TrackFace.track_id, TrackFace.camera_id, TrackFace.ts, TrackFace.distance,
                   TrackFace.cluster_id, (TrackFace.crop.is_not(None)).label("has_crop"), Track.identity_name,
                   Run.started_at)
            .outerjoin(Track, (Track.run_id == TrackFace.run_id) & (Track.track_id == TrackFace.track_id)
                       & (Track.segment == TrackFace.segment))
            .outerjoin(Run, Run.id == TrackFace.run_id))


def cluster_faces(store: IdentityStore, unknown_label: str) -> list[FaceRef]:
    """The faces of an unknown cluster, the most typical first (nearest its centroid): the first is
    the cluster's face on the dashboard, the others its strip. IdentityError: no such cluster."""
    cid = parse_label(unknown_label)
    with store._read() as conn:
        row = conn.execute(select(UnknownCluster.dim, UnknownCluster.centroid).where(UnknownCluster.id == cid)
                           ).one_or_none()
        if row is None:
            raise IdentityError(f"no unknown face {unknown_label}")
        centroid = _unit(store._vec(row[1], row[0]))
        refs = _refs(conn, _face_query().where(TrackFace.cluster_id == cid))  # type: ignore[attr-defined]
        vectors = {(r[0], int(r[1])): store._vec(r[3], r[2]) for r in conn.execute(
            select(TrackFace.run_id, TrackFace.track_id, TrackFace.dim, TrackFace.vector)
            .where(TrackFace.cluster_id == cid)).all()}
    out = []
    for ref in refs:
        d = 1.0 - float(_unit(vectors[(ref.run_id, ref.track_id)]) @ centroid)
        out.append(replace(ref, centroid_distance=round(d, 4)))
    out.sort(key=lambda f: (not f.has_crop, f.centroid_distance or 0.0, f.run_id, f.track_id))
    return out


def track_faces_of(store: IdentityStore, run_ids: list[str]) -> dict[tuple[str, int], FaceRef]:
    """The stored faces of these runs' tracks, by (run, track) (a track cut into identity segments: the
    face of its last segment that has one)."""
    if not run_ids:
        return {}
    with store._read() as conn:
        refs = _refs(conn, _face_query().where(TrackFace.run_id.in_(run_ids))  # type: ignore[attr-defined]
                     .order_by(TrackFace.run_id, TrackFace.track_id, TrackFace.segment))
    return {(r.run_id, r.track_id): r for r in refs}


def review_queue(store: IdentityStore, model: str, threshold: float, margin: float, limit: int,
                 offset: int = 0) -> tuple[list[FaceRef], int]:
    """Recent faces worth a look, newest first: faces of tracks that got no name, and faces given a
    name with little to spare (distance above ``threshold - margin``). Returns (page, total)."""
    # Named by recognition (votes) with little to spare; a name an operator gave has no votes.
    weak = Track.identity_name.is_not(None) & (Track.votes > 0) & (TrackFace.distance > threshold - margin)
    unnamed = Track.identity_name.is_(None)
    cond = (TrackFace.model == model) & (unnamed | weak)
    with store._read() as conn:
        total = int(conn.execute(
            select(func.count()).select_from(TrackFace)
            .outerjoin(Track, (Track.run_id == TrackFace.run_id) & (Track.track_id == TrackFace.track_id)
                       & (Track.segment == TrackFace.segment))
            .where(cond)).scalar_one())
        query = (_face_query().where(cond)  # type: ignore[attr-defined]
                 .order_by(Run.started_at.desc(), TrackFace.ts.desc(), TrackFace.track_id.desc())
                 .limit(limit).offset(offset))
        return _refs(conn, query), total


def _recompute(store: IdentityStore, conn: Connection, cid: int, now: datetime) -> int:
    """Centroid and size of a cluster from its members; an empty cluster is deleted. Returns the size."""
    rows = conn.execute(select(TrackFace.dim, TrackFace.vector).where(TrackFace.cluster_id == cid)).all()
    if not rows:
        conn.execute(delete(UnknownCluster).where(UnknownCluster.id == cid))
        return 0
    mean = _unit(np.sum([_unit(store._vec(r[1], r[0])) for r in rows], axis=0))
    _, blob = store._enc_vec(mean)
    conn.execute(update(UnknownCluster).where(UnknownCluster.id == cid)
                 .values(centroid=blob, size=len(rows), last_seen=now))
    return len(rows)


def assign_face(store: IdentityStore, run_id: str, track_id: int, name: str, actor: str,
                create: bool = False) -> str:
    """One track's face becomes an enrolled embedding of ``name`` (a new identity only with
    ``create``), the track gets the name, and the face leaves its unknown cluster. Audited
    (``assign``). IdentityError: no such track face, no such identity (or it exists with ``create``).
    A track cut into identity segments: the face (and the name) of its last segment that has a face."""
    name = name.strip()
    check_name(name)
    now = utcnow()
    with store._write() as conn:
        _lock(conn)
        face = conn.execute(select(TrackFace.model, TrackFace.dim, TrackFace.vector, TrackFace.cluster_id,
                                   TrackFace.segment).where(
            TrackFace.run_id == run_id, TrackFace.track_id == track_id).order_by(TrackFace.segment.desc()).limit(1)
        ).one_or_none()
        if face is None:
            raise IdentityError(f"track {track_id} of run {run_id} has no stored face")
        exists = conn.execute(select(Identity.id).where(Identity.name == name)).scalar_one_or_none()
        if create and exists is not None:
            raise IdentityError(f"an identity named {name!r} exists already")
        if not create and exists is None:
            raise IdentityError(f"no identity named {name!r}")
        if exists is None:
            conn.execute(dialect_insert(conn, Identity), {"name": name, "created_at": now})
        ident = int(conn.execute(select(Identity.id).where(Identity.name == name)).scalar_one())
        model, dim, blob, cid, segment = face
        _, enc = store._enc_vec(store._vec(blob, dim))
        conn.execute(dialect_insert(conn, FaceEmbedding).on_conflict_do_nothing(
            index_elements=[FaceEmbedding.identity_id, FaceEmbedding.model, FaceEmbedding.photo_sha256]), {
            "identity_id": ident, "model": model, "detector": "track", "dim": dim, "vector": enc,
            "photo_sha256": hashlib.sha256(f"track:{run_id}:{track_id}".encode()).hexdigest(),
            "photo_name": f"track {run_id}/{track_id}", "created_at": now})
        conn.execute(update(Track).where(Track.run_id == run_id, Track.track_id == track_id,
                                         Track.segment == segment)
                     .values(identity_id=ident, identity_name=name))
        detail: dict[str, object] = {"run": run_id, "track": track_id, "new": exists is None}
        if cid is not None:
            conn.execute(update(TrackFace).where(TrackFace.run_id == run_id, TrackFace.track_id == track_id,
                                                 TrackFace.segment == segment)
                         .values(cluster_id=None))
            _recompute(store, conn, int(cid), now)
            detail["cluster"] = label(int(cid))
        store._bump(conn)
        store._audit(conn, actor, "assign", name, detail)
    store._publish()
    return name


def merge_clusters(store: IdentityStore, source: str, target: str, actor: str) -> int:
    """Every face of unknown cluster ``source`` joins ``target`` (same model); ``source`` is gone.
    Returns the target's size. Audited (``merge``). IdentityError: no such cluster, same cluster,
    different models."""
    src, dst = parse_label(source), parse_label(target)
    if src == dst:
        raise IdentityError(f"{source} cannot be merged into itself")
    now = utcnow()
    with store._write() as conn:
        _lock(conn)
        models = dict(conn.execute(select(UnknownCluster.id, UnknownCluster.model)
                                   .where(UnknownCluster.id.in_([src, dst]))).all())
        for cid, text in ((src, source), (dst, target)):
            if cid not in models:
                raise IdentityError(f"no unknown face {text}")
        if models[src] != models[dst]:
            raise IdentityError(f"{source} and {target} are faces of different models")
        first = conn.execute(select(func.min(UnknownCluster.first_seen)).where(UnknownCluster.id.in_([src, dst]))
                             ).scalar_one()
        conn.execute(update(TrackFace).where(TrackFace.cluster_id == src).values(cluster_id=dst))
        conn.execute(delete(UnknownCluster).where(UnknownCluster.id == src))
        size = _recompute(store, conn, dst, now)
        conn.execute(update(UnknownCluster).where(UnknownCluster.id == dst).values(first_seen=first))
        store._audit(conn, actor, "merge", target, {"cluster": source, "size": size})
    return size


__all__ = [
    "FaceRef",
    "assign_face",
    "cluster_faces",
    "enrolled_faces",
    "merge_clusters",
    "photo_crop",
    "review_queue",
    "track_crop",
    "track_faces_of",
]
