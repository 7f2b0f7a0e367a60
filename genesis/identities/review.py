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

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from genesis.adapters.db.identities import FaceRow, IdentityRows
from genesis.adapters.db.tables import utcnow
from genesis.identities.store import IdentityError, IdentityStore, check_name
from genesis.identities.tracks import _clustering, _unit, label, parse_label, track_embedding


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
    with store._read() as rows:
        # The first stored face of the track (a track cut into identity segments may have several).
        blob = rows.track_crop(run_id, track_id)
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
    with store._read() as rows:
        ident = store._identity_id(rows, name)
        photos = rows.photo_names(ident)
        names = rows.track_embedding_names(ident)
        out = [EnrolledFaceRef(photo_name, photo_id=photo_id) for photo_id, photo_name in photos]
        for text in dict.fromkeys(names):
            run_id, _, track = str(text).removeprefix("track ").partition("/")
            if not track.isdigit():
                continue
            if rows.track_has_crop(run_id, int(track)):
                out.append(EnrolledFaceRef(str(text), run_id=run_id, track_id=int(track)))
    return out


def photo_crop(store: IdentityStore, photo_id: int) -> bytes | None:
    """The JPEG of one kept enrolled face (decrypted), None when there is no such photo."""
    with store._read() as rows:
        blob = rows.photo_crop(photo_id)
    return None if blob is None else store.cipher.decrypt(blob)


def _refs(rows: list[FaceRow]) -> list[FaceRef]:
    return [FaceRef(r.run_id, r.track_id, r.camera_id, r.ts, r.started_at, r.identity_name, r.distance,
                    label(r.cluster_id) if r.cluster_id is not None else None, r.has_crop) for r in rows]


def cluster_faces(store: IdentityStore, unknown_label: str) -> list[FaceRef]:
    """The faces of an unknown cluster, the most typical first (nearest its centroid): the first is
    the cluster's face on the dashboard, the others its strip. IdentityError: no such cluster."""
    cid = parse_label(unknown_label)
    with store._read() as rows:
        row = rows.cluster_centroid(cid)
        if row is None:
            raise IdentityError(f"no unknown face {unknown_label}")
        centroid = _unit(store._vec(row[1], row[0]))
        refs = _refs(rows.cluster_faces(cid))
        vectors = {(r[0], r[1]): store._vec(r[3], r[2]) for r in rows.cluster_vectors(cid)}
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
    with store._read() as rows:
        refs = _refs(rows.faces_of_runs(run_ids))
    return {(r.run_id, r.track_id): r for r in refs}


def review_queue(store: IdentityStore, model: str, threshold: float, margin: float, limit: int,
                 offset: int = 0) -> tuple[list[FaceRef], int]:
    """Recent faces worth a look, newest first: faces of tracks that got no name, and faces given a
    name with little to spare (distance above ``threshold - margin``). Returns (page, total)."""
    with store._read() as rows:
        page, total = rows.review_faces(model, threshold, margin, limit, offset)
    return _refs(page), total


def _recompute(store: IdentityStore, db: IdentityRows, cid: int, now: datetime) -> int:
    """Centroid and size of a cluster from its members; an empty cluster is deleted. Returns the size."""
    rows = db.cluster_member_vectors(cid)
    if not rows:
        db.delete_cluster(cid)
        return 0
    mean = _unit(np.sum([_unit(store._vec(r[1], r[0])) for r in rows], axis=0))
    _, blob = store._enc_vec(mean)
    db.update_cluster(cid, blob, len(rows), now)
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
    with _clustering(store) as rows:
        face = rows.last_track_face(run_id, track_id)
        if face is None:
            raise IdentityError(f"track {track_id} of run {run_id} has no stored face")
        exists = rows.identity_id(name)
        if create and exists is not None:
            raise IdentityError(f"an identity named {name!r} exists already")
        if not create and exists is None:
            raise IdentityError(f"no identity named {name!r}")
        if exists is None:
            rows.insert_identity(name, now)
        ident = store._identity_id(rows, name)
        model, dim, blob, cid, segment = face
        _, enc = store._enc_vec(store._vec(blob, dim))
        # The photo is the track's (not the segment's): assigning another segment later adds no second one.
        track_embedding(rows, run_id, track_id, segment, ident, model, dim, enc, now, segment_in_name=False)
        rows.name_segment(run_id, track_id, segment, ident, name)
        detail: dict[str, object] = {"run": run_id, "track": track_id, "new": exists is None}
        if cid is not None:
            rows.set_face_cluster(run_id, track_id, segment, None)
            _recompute(store, rows, int(cid), now)
            detail["cluster"] = label(int(cid))
        store._bump(rows)
        store._audit(rows, actor, "assign", name, detail)
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
    with _clustering(store) as rows:
        models = rows.cluster_models([src, dst])
        for cid, text in ((src, source), (dst, target)):
            if cid not in models:
                raise IdentityError(f"no unknown face {text}")
        if models[src] != models[dst]:
            raise IdentityError(f"{source} and {target} are faces of different models")
        first = rows.first_seen([src, dst])
        rows.move_cluster_faces(src, dst)
        rows.delete_cluster(src)
        size = _recompute(store, rows, dst, now)
        rows.set_cluster_first_seen(dst, first)
        store._audit(rows, actor, "merge", target, {"cluster": source, "size": size})
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
