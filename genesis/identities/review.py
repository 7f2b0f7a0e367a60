"""What the operator's console needs from the identities library: the faces themselves (track face
crops, enrolled face crops, the faces of an unknown cluster best first), the review queue (recent
unrecognised and low-margin faces) and the review actions: assign one segment's face to an identity
(existing or new), "not this person" on one segment, name an unknown cluster, merge two clusters,
and undo any of them. Every change is audited and bumps the gallery version, like the other changes
of `IdentityStore`; its audit entry holds what its inverse needs, and the undo is audited too.

The unit of review is a track **segment** (``run``, ``track``, ``segment``), never a whole track: a
tracker may hand one id from one person to the next, and recognition cuts the track there
(docs/recognition.md). Every face shown and every action names the segment it belongs to, so a
review action changes exactly the segments the operator saw.

Crops are read decrypted only here, to be served to an authenticated caller; they stay encrypted in
the database (`genesis.identities.crypto`). They go with the rows that hold them: `forget` and the
retention `purge` delete track faces (and so their crops), `forget` deletes enrolled face crops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from genesis.adapters.db.identities import FaceRow, IdentityRows
from genesis.adapters.db.tables import utcnow
from genesis.identities.crops import as_jpeg
from genesis.identities.store import IdentityError, IdentityStore, check_name
from genesis.identities.tracks import _clustering, _unit, label, name_unknown_entry, parse_label, track_embedding


@dataclass(frozen=True, slots=True)
class FaceRef:
    """A stored face of one track segment: where and when, its decision, its cluster, whether a crop is kept."""

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
    segment: int = 0


def track_crop(store: IdentityStore, run_id: str, track_id: int, segment: int = 0) -> bytes | None:
    """The JPEG of one track segment's stored face (decrypted; stored as WebP: genesis.identities.crops), None when
    there is none."""
    with store._read() as rows:
        blob = rows.segment_crop(run_id, track_id, segment)
    return None if blob is None else as_jpeg(store.cipher.decrypt(blob))


@dataclass(frozen=True, slots=True)
class EnrolledFaceRef:
    """An enrolled face that can be shown: a kept photo crop (``photo_id``) or a track segment's face
    that was enrolled by naming a cluster or assigning the face (``run_id``, ``track_id``, ``segment``)."""

    photo: str
    photo_id: int | None = None
    run_id: str | None = None
    track_id: int | None = None
    segment: int = 0


def parse_track_photo(text: str) -> tuple[str, int, int] | None:
    """(run, track, segment) of an enrolled track face's photo name (``track RUN/TRACK[/SEGMENT]``)."""
    parts = str(text).removeprefix("track ").split("/")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
        return None
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else 0


def enrolled_faces(store: IdentityStore, name: str) -> list[EnrolledFaceRef]:
    """An identity's enrolled faces that have a crop, photos first (IdentityError: no such identity)."""
    with store._read() as rows:
        ident = store._identity_id(rows, name)
        photos = rows.photo_names(ident)
        names = rows.track_embedding_names(ident)
        out = [EnrolledFaceRef(photo_name, photo_id=photo_id) for photo_id, photo_name in photos]
        for text in dict.fromkeys(names):
            found = parse_track_photo(text)
            if found is None:
                continue
            run_id, track, segment = found
            if rows.segment_crop(run_id, track, segment) is not None:
                out.append(EnrolledFaceRef(str(text), run_id=run_id, track_id=track, segment=segment))
    return out


def photo_crop(store: IdentityStore, photo_id: int) -> bytes | None:
    """The JPEG of one kept enrolled face (decrypted), None when there is no such photo."""
    with store._read() as rows:
        blob = rows.photo_crop(photo_id)
    return None if blob is None else store.cipher.decrypt(blob)


def _refs(rows: list[FaceRow]) -> list[FaceRef]:
    return [FaceRef(r.run_id, r.track_id, r.camera_id, r.ts, r.started_at, r.identity_name, r.distance,
                    label(r.cluster_id) if r.cluster_id is not None else None, r.has_crop, segment=r.segment)
            for r in rows]


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
        vectors = {(r[0], r[1], r[4]): store._vec(r[3], r[2]) for r in rows.cluster_vectors(cid)}
    out = []
    for ref in refs:
        d = 1.0 - float(_unit(vectors[(ref.run_id, ref.track_id, ref.segment)]) @ centroid)
        out.append(replace(ref, centroid_distance=round(d, 4)))
    out.sort(key=lambda f: (not f.has_crop, f.centroid_distance or 0.0, f.run_id, f.track_id, f.segment))
    return out


def sample(faces: list[FaceRef], n: int) -> list[FaceRef]:
    """At most ``n`` of a cluster's faces (ordered as `cluster_faces` orders them) spread over all of
    them: the most typical first, the least typical last, evenly between, so a face that does not
    belong shows before anyone names or merges the group."""
    if n <= 0:
        return []
    if len(faces) <= n:
        return list(faces)
    if n == 1:
        return faces[:1]
    step = (len(faces) - 1) / (n - 1)
    return [faces[round(i * step)] for i in range(n)]


def track_faces_of(store: IdentityStore, run_ids: list[str],
                   identity: str | None = None) -> dict[tuple[str, int, int], FaceRef]:
    """The stored faces of these runs' track segments (of the segments named ``identity`` only, when given), by
    (run, track, segment)."""
    if not run_ids:
        return {}
    with store._read() as rows:
        refs = _refs(rows.faces_of_runs(run_ids, identity))
    return {(r.run_id, r.track_id, r.segment): r for r in refs}


def review_queue(store: IdentityStore, model: str, threshold: float, margin: float, limit: int,
                 offset: int = 0) -> tuple[list[FaceRef], int]:
    """Recent faces worth a look, newest first: faces of segments that got no name, and faces given a
    name with little to spare (distance above ``threshold - margin``). Returns (page, total)."""
    with store._read() as rows:
        page, total = rows.review_faces(model, threshold, margin, limit, offset)
    return _refs(page), total


def _recompute(store: IdentityStore, db: IdentityRows, cid: int, now: datetime, *, keep_seen: bool = True) -> int:
    """Centroid and size of a cluster from its members; an empty cluster is deleted. Returns the size.
    Its last-seen time stays (``keep_seen``): a review action is not a sighting."""
    rows = db.cluster_member_vectors(cid)
    if not rows:
        db.delete_cluster(cid)
        return 0
    seen = db.cluster_row(cid)
    mean = _unit(np.sum([_unit(store._vec(r[1], r[0])) for r in rows], axis=0))
    _, blob = store._enc_vec(mean)
    db.update_cluster(cid, blob, len(rows), now)
    if keep_seen and seen is not None:
        db.keep_cluster_seen(cid, seen[3])
    return len(rows)


@dataclass(frozen=True, slots=True)
class Done:
    """What a review action did: its audit entry (``entry``, the handle of its undo) and a sentence."""

    entry: int
    message: str
    identity: str | None = None
    size: int = 0


def _segment_label(run_id: str, track_id: int, segment: int) -> str:
    return f"track {track_id}" + (f" (segment {segment})" if segment else "") + f" of run {run_id[:8]}"


def assign_face(store: IdentityStore, run_id: str, track_id: int, name: str, actor: str,
                create: bool = False, segment: int | None = None, visible_only: bool = False) -> str:
    """`assign_segment` by track: the track's only face segment (IdentityError when it has several and
    none is named, or none); returns the name."""
    if segment is None:
        with store._read() as rows:
            found = rows.face_segments(run_id, track_id)
        if not found:
            raise IdentityError(f"track {track_id} of run {run_id} has no stored face")
        if len(found) > 1:
            raise IdentityError(f"track {track_id} of run {run_id} is cut into {len(found)} identity segments "
                                f"({', '.join(map(str, found))}): say which segment's face this is")
        segment = found[0]
    return str(assign_segment(store, run_id, track_id, segment, name, actor, create, visible_only).identity)


def assign_segment(store: IdentityStore, run_id: str, track_id: int, segment: int, name: str, actor: str,
                   create: bool = False, visible_only: bool = False) -> Done:
    """One segment's face becomes an enrolled embedding of ``name`` (a new identity only with
    ``create``), that segment (only) gets the name, and the face leaves its unknown cluster. Audited
    (``assign``, with what an undo needs). IdentityError: no such face, no such identity (or it exists
    with ``create``), or (``visible_only``) its crop was not kept, so nobody could have seen it."""
    name = name.strip()
    check_name(name)
    now = utcnow()
    what = _segment_label(run_id, track_id, segment)
    with _clustering(store) as rows:
        face = rows.segment_face(run_id, track_id, segment)
        if face is None:
            raise IdentityError(f"{what} has no stored face")
        model, dim, blob, cid, has_crop = face
        if visible_only and not has_crop:
            raise IdentityError(f"the face of {what} was not kept (blurred by the privacy settings): a face "
                                "nobody can see cannot be named here")
        exists = rows.identity_id(name)
        if create and exists is not None:
            raise IdentityError(f"an identity named {name!r} exists already")
        if not create and exists is None:
            raise IdentityError(f"no identity named {name!r}")
        if exists is None:
            rows.insert_identity(name, now)
        ident = store._identity_id(rows, name)
        before = rows.segment_identity(run_id, track_id, segment)
        _, enc = store._enc_vec(store._vec(blob, dim))
        sha = track_embedding(rows, run_id, track_id, segment, ident, model, dim, enc, now)
        rows.name_segment(run_id, track_id, segment, ident, name)
        detail: dict[str, Any] = {"run": run_id, "track": track_id, "segment": segment, "new": exists is None,
                                  "identity_id": ident}
        # The former identity by id only: a forgotten identity's name must be left in no audit entry.
        undo: dict[str, Any] = {"embedding": sha, "before": before[0] if before else None}
        if cid is not None:
            cluster = rows.cluster_row(int(cid))
            rows.set_face_cluster(run_id, track_id, segment, None)
            _recompute(store, rows, int(cid), now)
            detail["cluster"] = label(int(cid))
            if cluster is not None:
                undo["cluster"] = {"id": int(cid), "model": cluster[0], "dim": cluster[1],
                                   "first_seen": cluster[2].isoformat(), "last_seen": cluster[3].isoformat()}
        detail["undo"] = undo
        store._bump(rows)
        entry = store._audit(rows, actor, "assign", name, detail)
    store._publish()
    return Done(entry, f"{what} is now {name}", name)


def one_segment(store: IdentityStore, run_id: str, track_id: int, segment: int | None) -> int:
    """The segment of a track an action names: ``segment`` when it exists, else the track's only one.
    IdentityError (one line): no such track or segment, or several segments and none named (listed with
    their identities, so the operator can say which face they mean)."""
    with store._read() as db:
        rows = db.track_segments(run_id, track_id)
    if not rows:
        raise IdentityError(f"no track {track_id} in run {run_id}")
    found = [int(r[0]) for r in rows]
    if segment is not None:
        if segment not in found:
            raise IdentityError(f"track {track_id} of run {run_id[:8]} has no segment {segment} "
                                f"(its segments: {', '.join(map(str, found))})")
        return segment
    if len(rows) > 1:
        listed = ", ".join(f"{g} ({name or 'no identity'})" for g, name in rows)
        raise IdentityError(f"track {track_id} of run {run_id[:8]} is cut into {len(rows)} identity segments: "
                            f"{listed}; say which as RUN:TRACK:SEGMENT")
    return found[0]


def reject_segment(store: IdentityStore, run_id: str, track_id: int, segment: int, actor: str,
                   identity: str | None = None) -> Done:
    """"Not this person" on one segment: its face becomes a negative of the identity (its name, or
    ``identity``) and the segment loses the name; the track's other segments keep theirs. Audited
    (``reject``, with the negative's id for an undo). IdentityError: no such segment, face or name."""
    what = _segment_label(run_id, track_id, segment)
    with store._write() as db:
        before = db.segment_identity(run_id, track_id, segment)
        if before is None:
            raise IdentityError(f"no {what}")
        name = identity or before[1]
        if name is None:
            raise IdentityError(f"{what} has no identity: say which")
        ident = store._identity_id(db, name)
        face = db.segment_face(run_id, track_id, segment)
        if face is None:
            raise IdentityError(f"{what} has no stored face to reject")
        model, dim, blob, _, _ = face
        _, enc = store._enc_vec(store._vec(blob, dim))
        negative = db.add_negative_id(ident, model, dim, enc, run_id, track_id)
        named = before[1] == name
        if named:
            db.set_segment_identity(run_id, track_id, segment, None, None)
        store._bump(db)
        entry = store._audit(db, actor, "reject", name, {
            "run": run_id, "track": track_id, "segment": segment,
            "undo": {"negatives": [negative], "segments": [segment] if named else [], "identity_id": ident}})
    store._publish()
    return Done(entry, f"{what} is not {name}", name)


def name_cluster(store: IdentityStore, unknown_label: str, name: str, actor: str, visible_only: bool = False) -> Done:
    """Name an unknown cluster (`genesis.identities.tracks.name_unknown_entry`)."""
    n, entry = name_unknown_entry(store, unknown_label, name, actor, visible_only)
    return Done(entry, f"{unknown_label} is now {name.strip()} ({n} face(s))", name.strip(), n)


def merge_clusters(store: IdentityStore, source: str, target: str, actor: str) -> int:
    """Every face of unknown cluster ``source`` joins ``target`` (same model); ``source`` is gone.
    Returns the target's size (`merge_entry` also says the audit entry)."""
    return merge_entry(store, source, target, actor).size


def merge_entry(store: IdentityStore, source: str, target: str, actor: str) -> Done:
    """Merge ``source`` into ``target``: first and last seen are the earliest and the latest of the two
    (a merge is not a sighting). Audited (``merge``, with the source's faces for an undo).
    IdentityError: no such cluster, same cluster, different models."""
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
        a, b = rows.cluster_row(src), rows.cluster_row(dst)
        assert a is not None and b is not None
        moved = rows.cluster_segments(src)
        rows.move_cluster_faces(src, dst)
        rows.delete_cluster(src)
        size = _recompute(store, rows, dst, now)
        rows.set_cluster_seen(dst, min(a[2], b[2]), max(a[3], b[3]))
        entry = store._audit(rows, actor, "merge", target, {
            "cluster": source, "size": size,
            "undo": {"model": a[0], "dim": a[1], "first_seen": a[2].isoformat(), "last_seen": a[3].isoformat(),
                     "target_first_seen": b[2].isoformat(), "target_last_seen": b[3].isoformat(),
                     "faces": [list(f) for f in moved]}})
    return Done(entry, f"{source} merged into {target} ({size} faces)", None, size)


# -- undo ------------------------------------------------------------------------------------------

UNDOABLE = ("assign", "reject", "name", "merge")


class UndoError(IdentityError):
    """The entry cannot be undone (not a review action, undone already, or what it changed has changed since)."""


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _restore_cluster(store: IdentityStore, db: IdentityRows, spec: dict[str, Any],
                     faces: list[tuple[str, int, int]], now: datetime, gone: bool = False) -> None:
    """The faces join cluster ``spec["id"]`` again, re-created under its id when it is gone (``gone``: it
    must be). A cluster id may be taken again once its cluster is deleted (SQLite reuses the largest
    id): a cluster of that id first seen after the original was, or of another model, is another group
    of people, and the undo is refused rather than put these faces into it."""
    cid = int(spec["id"])
    found = db.cluster_row(cid)
    if found is not None and (gone or found[0] != spec["model"] or found[2] > _time(spec["first_seen"])):
        raise UndoError(f"{label(cid)} is another group of faces now: the faces cannot go back into it")
    if found is None:
        dim = int(spec["dim"])
        _, blob = store._enc_vec(np.zeros(dim, dtype=np.float32))
        db.restore_cluster(cid, str(spec["model"]), dim, blob, _time(spec["first_seen"]), _time(spec["last_seen"]))
    for run_id, track_id, segment in faces:
        db.set_face_cluster(run_id, int(track_id), int(segment), cid)
    _recompute(store, db, cid, now)
    db.set_cluster_seen(cid, _time(spec["first_seen"]), _time(spec["last_seen"]))


def _rename_segment(db: IdentityRows, run_id: str, track_id: int, segment: int, identity_id: Any) -> None:
    """The segment gets its former identity back (by id; none when it was forgotten since)."""
    name = db.identity_name(int(identity_id)) if identity_id is not None else None
    db.set_segment_identity(run_id, track_id, segment, int(identity_id) if name else None, name)


def _drop_if_new(db: IdentityRows, detail: dict[str, Any], name: str | None) -> bool:
    if detail.get("new") and detail.get("identity_id") is not None and name is not None \
            and db.identity_unused(int(detail["identity_id"]), name):
        db.delete_identity(int(detail["identity_id"]))
        return True
    return False


def undo(store: IdentityStore, entry_id: int, actor: str) -> Done:
    """The audited inverse of a review action (`UNDOABLE`): an assignment, a rejection, a naming or a
    merge is taken back as it was done; an identity the action created goes with it when nothing else
    refers to it. The undo is audited (``undo``, naming the entry) and cannot be repeated.
    UndoError: no such entry, not undoable, undone already, or what it changed changed since."""
    now = utcnow()
    with _clustering(store) as db:
        found = db.audit_entry(entry_id)
        if found is None:
            raise UndoError(f"no audit entry {entry_id}")
        action, target, detail = found
        spec = detail.get("undo")
        if action not in UNDOABLE or not isinstance(spec, dict):
            raise UndoError(f"audit entry {entry_id} ({action}) cannot be undone")
        if db.undone_entries([entry_id]):
            raise UndoError(f"audit entry {entry_id} ({action}) was undone already")
        if action == "assign":
            run_id, track_id, segment = str(detail["run"]), int(detail["track"]), int(detail["segment"])
            now_named = db.segment_identity(run_id, track_id, segment)
            if now_named is not None and now_named[1] != target:
                raise UndoError(f"{_segment_label(run_id, track_id, segment)} is no longer {target}")
            if spec.get("embedding"):
                db.delete_embedding(int(detail["identity_id"]), str(spec["embedding"]))
            _rename_segment(db, run_id, track_id, segment, spec.get("before"))
            if isinstance(spec.get("cluster"), dict):
                _restore_cluster(store, db, spec["cluster"], [(run_id, track_id, segment)], now)
            _drop_if_new(db, detail, target)
            message = f"{_segment_label(run_id, track_id, segment)} is no longer {target}"
        elif action == "reject":
            run_id, track_id = str(detail["run"]), int(detail["track"])
            db.delete_negatives([int(i) for i in spec.get("negatives", [])])
            ident = int(spec["identity_id"])
            if db.identity_name(ident) != target:
                raise UndoError(f"the identity {target!r} is gone or was renamed")
            for segment in spec.get("segments", []):
                current = db.segment_identity(run_id, track_id, int(segment))
                if current is not None and current[1] is None:
                    db.set_segment_identity(run_id, track_id, int(segment), ident, target)
            message = f"{_segment_label(run_id, track_id, int(detail.get('segment', 0)))} is {target} again"
        elif action == "name":
            faces = [(str(f[0]), int(f[1]), int(f[2])) for f in spec.get("faces", [])]
            named_id = detail.get("identity_id")
            for run_id, track_id, segment in faces:
                current = db.segment_identity(run_id, track_id, segment)
                if current is not None and current[1] not in (target, None):
                    raise UndoError(f"{_segment_label(run_id, track_id, segment)} was named {current[1]} since")
            for (run_id, track_id, segment), f in zip(faces, spec.get("faces", []), strict=True):
                if named_id is not None and f[3]:
                    db.delete_embedding(int(named_id), str(f[3]))
                _rename_segment(db, run_id, track_id, segment, f[4] if len(f) > 4 else None)
            cid = parse_label(str(detail["cluster"]))
            _restore_cluster(store, db, {**spec, "id": cid}, faces, now, gone=True)
            _drop_if_new(db, detail, target)
            message = f"{target} is {detail['cluster']} again"
        else:  # merge
            src, dst = parse_label(str(detail["cluster"])), parse_label(str(target))
            faces = [(str(f[0]), int(f[1]), int(f[2])) for f in spec.get("faces", [])]
            if db.cluster_row(dst) is None:
                raise UndoError(f"{target} is gone (named or purged since)")
            _restore_cluster(store, db, {**spec, "id": src}, faces, now, gone=True)
            _recompute(store, db, dst, now)
            db.set_cluster_seen(dst, _time(spec["target_first_seen"]), _time(spec["target_last_seen"]))
            message = f"{detail['cluster']} is apart from {target} again"
        store._bump(db)
        entry = store._audit(db, actor, "undo", target, {"entry": entry_id, "action": action})
    store._publish()
    return Done(entry, f"undone: {message}", target)


__all__ = [
    "Done",
    "FaceRef",
    "UndoError",
    "assign_face",
    "assign_segment",
    "cluster_faces",
    "enrolled_faces",
    "merge_clusters",
    "merge_entry",
    "name_cluster",
    "photo_crop",
    "reject_segment",
    "review_queue",
    "sample",
    "track_crop",
    "track_faces_of",
    "undo",
]
