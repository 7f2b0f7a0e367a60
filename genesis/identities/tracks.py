"""Faces of tracks: the best embedding of every track that had a face (float16, encrypted:
`genesis.identities.store.track_face_blob`), unknown-face clusters with persistent pseudonymous ids
(``unknown-17``), naming a cluster, "not this person", search by photo and the retention purge.

Clustering is incremental and deterministic: the unknown tracks of a run are taken in (time,
track id) order; each joins the unknown cluster of its model whose centroid is nearest, if within
the threshold (default: the model's recognition threshold), else starts a new cluster; the centroid
is the normalised mean of its members. Clusters span runs and cameras.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from genesis.adapters.db.identities import IdentityRows, NewEmbedding
from genesis.adapters.db.repository import NotFoundError
from genesis.adapters.db.tables import utcnow
from genesis.identities.crops import for_storage
from genesis.identities.store import IdentityError, IdentityStore, check_name, vector_blob

UNKNOWN_PREFIX = "unknown-"
MAX_CROP_B64 = 256 * 1024
"""A track face crop is a JPEG of at most 160 px (a few kB); anything far larger is bad input."""


@dataclass(frozen=True, slots=True)
class TrackFaceRecord:
    """A track's best face: what the recognize stage hands to storage."""

    camera_id: str
    track_id: int
    ts: float
    model: str
    vector: list[float]
    identity: str | None
    distance: float | None
    crop: bytes = b""
    """A small JPEG of the face (shown by the dashboard; stored as WebP, encrypted like the vector)."""
    segment: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"camera_id": self.camera_id, "track_id": self.track_id, "ts": self.ts, "model": self.model,
                "vector": self.vector, "identity": self.identity, "distance": self.distance,
                "crop": base64.b64encode(self.crop).decode("ascii"), "segment": self.segment}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrackFaceRecord:
        crop = d.get("crop") or ""
        if not isinstance(crop, str) or len(crop) > MAX_CROP_B64:
            raise ValueError("track face crop: not a base64 string of a small JPEG")
        return cls(str(d["camera_id"]), int(d["track_id"]), float(d["ts"]), str(d["model"]),
                   [float(x) for x in d["vector"]], d.get("identity"),
                   None if d.get("distance") is None else float(d["distance"]),
                   base64.b64decode(crop, validate=True), int(d.get("segment", 0)))


def track_faces(recognizer: Any, camera_id: str, model: str, blur: str = "off") -> list[TrackFaceRecord]:
    """The best face of every identity segment of a `TrackRecognizer` that had one, with the segment's
    decision (a stranger's segment is clustered as an unknown even when the track was named before).

    ``blur`` is the camera's privacy mode (docs/privacy.md): with ``unenrolled`` the face crop of
    a segment without a name is not kept (its embedding is, for clustering and search), with
    ``everyone`` no crop is kept."""
    out = []
    for tid in recognizer.track_ids():
        for seg in recognizer.segments(tid):
            best = recognizer.best_face(tid, seg.index)
            if best is None:
                continue
            ident = recognizer.segment_identity(seg)
            crop = best.crop or b""
            if blur == "everyone" or (blur == "unenrolled" and ident.identity is None):
                crop = b""
            out.append(TrackFaceRecord(camera_id, tid, float(best.ts), model, [float(x) for x in best.vector],
                                       ident.identity, ident.best_distance, crop, seg.index))
    return out


def label(cluster_id: int) -> str:
    return f"{UNKNOWN_PREFIX}{cluster_id}"


def parse_label(text: str) -> int:
    if not text.startswith(UNKNOWN_PREFIX) or not text[len(UNKNOWN_PREFIX):].isdigit():
        raise IdentityError(f"{text!r} is not an unknown-face id (unknown-N)")
    return int(text[len(UNKNOWN_PREFIX):])


def _unit(v: Any) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    out: np.ndarray = a / max(float(np.linalg.norm(a)), 1e-12)
    return out


@contextmanager
def _clustering(store: IdentityStore) -> Iterator[IdentityRows]:
    """A write transaction of the store that first waits for the clustering lock (PostgreSQL: two store
    workers must not both create a cluster)."""
    with store._write() as rows:
        rows.lock_clusters()
        yield rows


def track_embedding(rows: IdentityRows, run_id: str, track_id: int, segment: int, identity_id: int, model: str,
                    dim: int, vector: bytes, now: datetime, *, segment_in_name: bool = True) -> str | None:
    """A track segment's face becomes an enrolled embedding of ``identity_id`` (``vector`` as stored),
    named after the track (``track <run>/<track>``, then ``/<segment>`` for a later segment when
    ``segment_in_name``), unless that photo is enrolled already. Returns the photo's SHA-256 key when
    it was added (None: enrolled already)."""
    tail = segment if segment and segment_in_name else None
    sha = hashlib.sha256(f"track:{run_id}:{track_id}{'' if tail is None else f':{tail}'}".encode()).hexdigest()
    added = rows.add_embedding(NewEmbedding(identity_id, model, "track", dim, vector, sha,
                                            f"track {run_id}/{track_id}" + ("" if tail is None else f"/{tail}"), now))
    return sha if added else None


def save_track_faces(store: IdentityStore, run_id: str, records: Sequence[TrackFaceRecord],
                     cluster_threshold: float) -> int:
    """Store the faces of a run's tracks and cluster the unknown ones; idempotent (a track already
    stored is skipped, so a redelivered task clusters nothing twice). Returns the faces added."""
    if not records:
        return 0
    now = utcnow()
    with _clustering(store) as rows:
        if not rows.run_exists(run_id):
            raise NotFoundError(f"unknown run {run_id}")
        have = rows.track_face_keys(run_id)
        new = sorted((r for r in records if (r.track_id, r.segment) not in have),
                     key=lambda r: (r.ts, r.track_id, r.segment))
        # Clustered first, so that each face is written once, with its cluster (a row updated after its insert
        # leaves a dead copy behind on PostgreSQL: it doubled the bytes of track_faces until a VACUUM FULL).
        clusters: dict[tuple[int, int], int] = {}
        for model in sorted({r.model for r in new if r.identity is None}):
            clusters.update(_cluster(store, rows, [r for r in new if r.identity is None and r.model == model], model,
                                     cluster_threshold, now))
        for r in new:
            dim, blob = store._enc_track_vec(np.asarray(r.vector, dtype=np.float32))  # float16 at rest
            rows.add_track_face(run_id, r.track_id, r.segment, r.camera_id, r.ts, r.model, dim, blob, r.distance,
                                store.cipher.encrypt(for_storage(r.crop)) if r.crop else None, now,
                                clusters.get((r.track_id, r.segment)))
    return len(new)


def _cluster(store: IdentityStore, db: IdentityRows, records: list[TrackFaceRecord], model: str,
             threshold: float, now: datetime) -> dict[tuple[int, int], int]:
    """The unknown cluster of each record ((track, segment) -> cluster id); new clusters are created and the
    centroids of those that grew updated."""
    assigned: dict[tuple[int, int], int] = {}
    rows = db.clusters_of(model)
    ids = [int(r[0]) for r in rows]
    sums = [store._vec(r[2], r[1]) * int(r[3]) for r in rows]  # centroid x size = sum of the unit members
    sizes = [int(r[3]) for r in rows]
    touched: set[int] = set()
    for r in records:
        v = _unit(r.vector)
        j = -1
        if ids:
            cents = np.stack([_unit(s) for s in sums])
            d = 1.0 - cents @ v
            j = int(np.argmin(d))  # ties: the oldest cluster
            if float(d[j]) > threshold:
                j = -1
        if j < 0:
            dim, blob = store._enc_vec(v)
            ids.append(db.new_cluster(model, dim, blob, now))
            sums.append(v.copy())
            sizes.append(1)
            j = len(ids) - 1
        else:
            sums[j] = sums[j] + v
            sizes[j] += 1
            touched.add(j)
        assigned[(r.track_id, r.segment)] = ids[j]
    for j in sorted(touched):
        _, blob = store._enc_vec(_unit(sums[j]))
        db.update_cluster(ids[j], blob, sizes[j], now)
    return assigned


@dataclass(frozen=True, slots=True)
class UnknownSummary:
    label: str
    model: str
    tracks: int
    cameras: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime


def unknowns(store: IdentityStore) -> list[UnknownSummary]:
    with store._read() as rows:
        clusters = rows.cluster_summaries()
        members = rows.clustered_cameras()
    tracks: dict[int, int] = {}
    cams: dict[int, set[str]] = {}
    for cid, cam in members:
        tracks[cid] = tracks.get(cid, 0) + 1
        cams.setdefault(cid, set()).add(cam)
    return [UnknownSummary(label(c[0]), c[1], tracks.get(c[0], 0), tuple(sorted(cams.get(c[0], set()))), c[2], c[3])
            for c in clusters]


def cluster_members(store: IdentityStore, unknown_label: str) -> list[tuple[str, int]]:
    cid = parse_label(unknown_label)
    with store._read() as rows:
        return rows.cluster_tracks(cid)


def name_unknown(store: IdentityStore, unknown_label: str, name: str, actor: str) -> int:
    """Turn an unknown cluster into an identity (new, or an existing one): its track faces become
    enrolled embeddings and its tracks get the name. Returns the tracks relabelled."""
    return name_unknown_entry(store, unknown_label, name, actor)[0]


def name_unknown_entry(store: IdentityStore, unknown_label: str, name: str, actor: str,
                       visible_only: bool = False) -> tuple[int, int]:
    """`name_unknown`, returning (segments named, audit entry id). The entry holds what an undo needs
    (`genesis.identities.review.undo`). ``visible_only``: refuse (IdentityError) when a face of the
    cluster has no kept crop (blur): nobody could have seen it, so nobody may name it."""
    cid = parse_label(unknown_label)
    name = name.strip()
    check_name(name)
    now = utcnow()
    with _clustering(store) as rows:
        cluster = rows.cluster_row(cid)
        if cluster is None:
            raise IdentityError(f"no unknown face {unknown_label}")
        if visible_only:
            total, kept = rows.crop_count(cid)
            if kept < total:
                raise IdentityError(f"{total - kept} of the {total} faces of {unknown_label} were not kept (blurred "
                                    "by the privacy settings): a face nobody can see cannot be named here")
        faces = rows.cluster_face_rows(cid)
        new = rows.identity_id(name) is None
        rows.add_identity(name, now)
        ident = store._identity_id(rows, name)
        done: list[list[Any]] = []
        rows.unpack_for_naming([(f[0], f[1]) for f in faces])  # packed tracks as rows first, a pack rewritten once
        for run_id, track_id, model, dim, blob, segment in faces:
            vector = store._vec(blob, dim)
            _, enc = store._enc_vec(vector)
            before = rows.segment_identity(run_id, track_id, segment)
            added = track_embedding(rows, run_id, track_id, segment, ident, model, dim, enc, now)
            rows.name_segment(run_id, track_id, segment, ident, name)
            # Ids only, never names: forgetting an identity must leave its name nowhere, this entry included.
            done.append([run_id, track_id, segment, added, before[0] if before else None])
        rows.dissolve_cluster(cid)
        store._bump(rows)
        entry = store._audit(rows, actor, "name", name, {
            "cluster": unknown_label, "tracks": len(faces), "identity_id": ident, "new": new,
            "undo": {"model": cluster[0], "dim": cluster[1], "first_seen": cluster[2].isoformat(),
                     "last_seen": cluster[3].isoformat(), "faces": done}})
    store._publish()
    return len(faces), entry


def resolve_run(store: IdentityStore, run_prefix: str) -> str:
    with store._read() as rows:
        found = rows.runs_with_prefix(run_prefix)
    if len(found) != 1:
        raise IdentityError(f"no run {run_prefix!r}" if not found else f"run prefix {run_prefix!r} is ambiguous")
    return found[0]


@dataclass(frozen=True, slots=True)
class SearchHit:
    run_id: str
    track_id: int
    camera_id: str
    ts: float
    distance: float
    identity: str | None
    unknown: str | None
    segment: int = 0


def search(store: IdentityStore, vector: np.ndarray, model: str, top: int, threshold: float, actor: str,
           photo: str = "") -> list[SearchHit]:
    """Tracks whose best face is within ``threshold`` of ``vector`` (same model only), nearest first."""
    v = _unit(vector)
    with store._read() as db:
        rows = db.search_rows(model)
    hits = []
    if rows:
        dim = rows[0][4]
        m = np.stack([_unit(store._vec(r[5], dim)) for r in rows])
        d = 1.0 - m @ v
        for i in np.argsort(d, kind="stable")[:max(top, 0)]:
            if float(d[i]) > threshold:
                break
            r = rows[int(i)]
            hits.append(SearchHit(r[0], int(r[1]), r[2], float(r[3]), round(float(d[i]), 4), r[7],
                                  label(r[6]) if r[6] is not None else None, int(r[8])))
    store.audit(actor, "search", None, {"photo_sha256": photo, "model": model, "hits": len(hits)})
    return hits


PURGE_BATCH = 5000
"""Faces deleted per transaction by :func:`purge`: the clustering lock it holds is never held for long (the store
workers take it to save their faces), even for the first purge of a large backlog."""


def purge(store: IdentityStore, days: int, actor: str, now: datetime | None = None, *,
          audit_nothing: bool = True, batch: int = PURGE_BATCH) -> dict[str, int]:
    """Retention: unknown clusters not seen for ``days`` and the faces of unknown tracks older than
    that are deleted (the tracks themselves stay, anonymous), ``batch`` faces a transaction. Audited; a purge that
    found nothing only when ``audit_nothing`` (beat's hourly purge leaves those out)."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    counts = {"unknown_clusters": 0, "track_faces": 0}
    while True:
        with _clustering(store) as rows:
            done = rows.purge_unknowns(cutoff, batch)
        for k, n in done.items():
            counts[k] += n
        if done["track_faces"] < batch:
            break
    if audit_nothing or any(counts.values()):
        store.audit(actor, "purge", None, {"days": days, **counts})
    return counts


def vector_of(store: IdentityStore, blob: bytes, dim: int) -> np.ndarray:
    return store._vec(blob, dim)


__all__ = ["TrackFaceRecord", "label", "name_unknown", "name_unknown_entry", "save_track_faces", "search",
           "track_faces", "unknowns", "vector_blob"]


def cluster_threshold(settings: Any) -> float:
    t = settings.identities.cluster_threshold
    return float(t) if t is not None else float(settings.recognition.embedder.cosine_threshold)


def camera_track_faces(settings: Any, state: Any, recognizer: Any = None) -> list[TrackFaceRecord]:
    """`track_faces` of a `CameraState` (of ``recognizer``: the tracks it retired), with the camera's model
    and privacy mode."""
    return track_faces(state.recognizer if recognizer is None else recognizer, state.camera.id,
                       settings.recognition.embedder.model, settings.blur_mode(state.camera))


def save_camera_track_faces(repo: Any, settings: Any, run_id: str, state: Any, recognizer: Any = None) -> int:
    """The embedded runner's end of run: store the best face of each track of a `CameraState` (of
    ``recognizer``: the tracks it retired)."""
    records = camera_track_faces(settings, state, recognizer)
    if not records:
        return 0
    return save_track_faces(IdentityStore(repo), run_id, records, cluster_threshold(settings))
