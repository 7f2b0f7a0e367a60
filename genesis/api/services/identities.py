"""Identities through the library of the identities area (`genesis.services.enroll`, `genesis.identities`):
quality-gated enrollment from uploads, audited rename / forget, unknown-face clusters, naming a
cluster, "not this person", search by photo and the audit log.

Every change is written to the audit log with the caller's API key as the actor
(:func:`actor_of`), and goes through an `IdentityStore` holding the app's Redis client, so the
gallery version reaches the distributed workers at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genesis.adapters.db.apikeys import ApiKeyInfo
from genesis.config import Settings
from genesis.identities import review
from genesis.identities.store import AuditRecord, IdentityError, IdentityStore, NearIdentityError, check_name
from genesis.identities.tracks import SearchHit, UnknownSummary, parse_label, search, unknowns
from genesis.services.enroll import EnrollError, decode_image, prepare_photo

__all__ = ["AuditRecord", "SearchHit", "UnknownSummary"]


class IdentityConflictError(ValueError):
    """The change clashes with what is stored (a name taken, a track without a face ...)."""


class NotFoundError(LookupError):
    """No such identity, unknown cluster or track."""


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    photo: str
    reason: str


class EnrollRejectedError(Exception):
    """One or more photos failed the quality gate; nothing was stored."""

    def __init__(self, rejections: list[Rejection]) -> None:
        super().__init__("; ".join(r.reason for r in rejections))
        self.rejections = rejections


@dataclass(frozen=True, slots=True)
class Enrolled:
    name: str
    photos: int
    added: int
    several_faces: list[str]
    """Uploaded file names whose photo had several faces (the clearly largest was used)."""
    warnings: list[str] = field(default_factory=list)


def actor_of(key: ApiKeyInfo) -> str:
    """The audit log's actor for a request: the API key's name and id."""
    return f"api-key:{key.name}#{key.id}"


def store_of(repo: Any, redis: Any) -> IdentityStore:
    return IdentityStore(repo, redis=redis)


def list_identities(repo: Any) -> list[dict[str, Any]]:
    return [
        {"id": s.id, "name": s.name, "photos": s.photos, "models": list(s.models), "created_at": s.created_at}
        for s in repo.identities()
    ]


def _safe_name(filename: str, index: int) -> str:
    base = Path(filename or "").name
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)[:80].lstrip(".")
    return base or f"photo-{index + 1}"


def enroll_name(name: str) -> str:
    """The name to enroll under (stripped), or EnrollRejectedError naming the broken rule."""
    try:
        return check_name(name)
    except IdentityError as exc:
        raise EnrollRejectedError([Rejection("", str(exc))]) from None


def enroll_uploads(store: IdentityStore, settings: Settings, name: str, uploads: list[Upload], face_detector: Any,
                   embedder: Any, detector_label: str, actor: str, force: bool = False) -> Enrolled:
    """Check every photo (all are checked, each rejection with its reason), then store all or nothing."""
    name = enroll_name(name)
    cfg = settings.identities
    faces, several, warnings, rejected = [], [], [], []
    for i, up in enumerate(uploads):
        label = up.filename or f"photo {i + 1}"
        try:
            face, found, warn = prepare_photo(up.data, _safe_name(up.filename, i), face_detector, embedder,
                                              detector_label, cfg.quality, cfg.keep_crops, what=label)
        except EnrollError as exc:
            rejected.append(Rejection(label, str(exc)))
            continue
        faces.append(face)
        warnings += warn
        if found > 1:
            several.append(label)
    if rejected:
        raise EnrollRejectedError(rejected)
    try:
        added = store.enroll(name, faces, actor, force=force,
                             thresholds={embedder.model_name: settings.recognition.embedder.cosine_threshold})
    except NearIdentityError:
        raise
    except IdentityError as exc:
        raise EnrollRejectedError([Rejection("", str(exc))]) from None
    return Enrolled(name, len(uploads), added, several, warnings)


def name_of(store: IdentityStore, identity_id: int) -> str:
    """The current name of the identity with this stable id (NotFoundError when there is none)."""
    name = store.identity_name(identity_id)
    if name is None:
        raise NotFoundError(f"no identity with id {identity_id}")
    return name


def _exists(store: IdentityStore, name: str) -> bool:
    return store.exists(name)


def rename(store: IdentityStore, old: str, new: str, actor: str) -> str:
    """Rename (audited); its tracks and recognition attempts follow. Returns the new name."""
    new = check_name(new)  # IdentityError: 422
    if not _exists(store, old):
        raise NotFoundError(f"no identity named {old!r}")
    if new == old:
        return new
    if _exists(store, new):
        raise IdentityConflictError(f"an identity named {new!r} exists already")
    store.rename(old, new, actor)  # IdentityError: a reserved or empty name (or a race)
    return new


def forget(store: IdentityStore, settings: Settings, name: str, actor: str) -> dict[str, int]:
    """Erase an identity everywhere (see `IdentityStore.forget`); the counts of what went."""
    if not _exists(store, name):
        raise NotFoundError(f"no identity named {name!r}")
    emb = settings.recognition.embedder
    return store.forget(name, actor, {emb.model: emb.cosine_threshold})


def unknown_clusters(store: IdentityStore) -> list[UnknownSummary]:
    return unknowns(store)


def name_cluster(store: IdentityStore, cluster: str, name: str, merge: bool, actor: str) -> review.Done:
    """Name an unknown cluster; an existing identity's name only with ``merge``; refused when a face of
    it was not kept (blur: nobody saw it). What was done (segments relabelled, the audit entry)."""
    name = check_name(name)  # IdentityError: 422
    cid = parse_label(cluster)
    if cid not in {parse_label(u.label) for u in unknowns(store)}:
        raise NotFoundError(f"no unknown face {cluster}")
    if not merge and _exists(store, name):
        raise IdentityConflictError(f"an identity named {name!r} exists already: send \"merge\": true to add "
                                    f"the faces of {cluster} to it")
    try:
        return review.name_cluster(store, cluster, name, actor, visible_only=True)
    except IdentityError as exc:  # named or forgotten meanwhile, or not seen
        if "not kept" in str(exc):
            raise IdentityConflictError(str(exc)) from None
        raise NotFoundError(str(exc)) from None


def reject_track(store: IdentityStore, run_id: str, track_id: int, identity: str | None, actor: str) -> str:
    """"Not this person" for a track of one identity segment, as the segment's own action does it (audited, with
    its undo); the identity whose negative it became. A track cut into several segments is a conflict naming
    them: a rejection acts on the face the operator saw, never on the whole track."""
    names = store.track_identities(run_id, track_id)
    if not names:
        raise NotFoundError(f"no track {track_id} in run {run_id}")
    if identity is not None and not _exists(store, identity):
        raise NotFoundError(f"no identity named {identity!r}")
    if identity is None and all(n is None for n in names):
        raise IdentityConflictError(f"track {track_id} of run {run_id} has no identity: say which in \"identity\"")
    try:
        segment = review.one_segment(store, run_id, track_id, None)
        done = review.reject_segment(store, run_id, track_id, segment, actor, identity)
    except IdentityError as exc:
        message = str(exc).replace("say which as RUN:TRACK:SEGMENT", "reject one with POST "
                                   f"/api/tracks/{run_id}/{track_id}/segments/{{segment}}/reject")
        if message.startswith("no identity named"):
            raise NotFoundError(message) from None
        raise IdentityConflictError(message) from None
    return done.identity or ""


def search_photo(store: IdentityStore, settings: Settings, upload: Upload, face_detector: Any, embedder: Any,
                 top: int, threshold: float | None, actor: str) -> list[SearchHit]:
    """The tracks of the photo's largest face (EnrollError: not an image, no face)."""
    label = upload.filename or "photo"
    image = decode_image(upload.data, label)
    faces = face_detector.detect(image)
    if not faces:
        raise EnrollError(f"{label}: no face found")
    vector = embedder.embed(image, faces[:1])[0]
    limit = threshold if threshold is not None else settings.recognition.embedder.cosine_threshold
    return search(store, vector, embedder.model_name, top, limit, actor, hashlib.sha256(upload.data).hexdigest())


def audit_page(store: IdentityStore, limit: int, offset: int,
               action: str | None = None) -> tuple[list[AuditRecord], int, set[int]]:
    """A page of the audit log, newest first (only ``action`` entries when given): (page, total, the
    page's entries that were undone)."""
    with store._read() as rows:
        page, total = rows.audit_page(limit, offset, action)
        undone = rows.undone_entries([r[5] for r in page])
    return [AuditRecord(*r) for r in page], total, undone


def public_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """An audit entry's detail as shown: without the bookkeeping an undo needs (keys of embeddings)."""
    return {k: v for k, v in detail.items() if k != "undo"}
