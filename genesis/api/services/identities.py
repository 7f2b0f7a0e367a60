"""Identities: list, enroll from uploaded photos, rename, forget."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from genesis.adapters.db import Repository
from genesis.adapters.db.models import Identity, Track
from genesis.enroll import EnrollError, enroll


class IdentityConflictError(ValueError):
    """The new name is taken."""


@dataclass(frozen=True, slots=True)
class Enrolled:
    name: str
    photos: int
    added: int
    several_faces: list[str]
    """Uploaded file names whose photo had several faces (the largest was used)."""


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes


def list_identities(repo: Repository) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "photos": s.photos, "models": list(s.models), "created_at": s.created_at}
        for s in repo.identities()
    ]


def _safe_name(filename: str, index: int) -> str:
    base = Path(filename or "").name
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)[:80].lstrip(".")
    return f"{index:02d}_{base or 'photo'}"


def enroll_uploads(
    repo: Repository, name: str, uploads: list[Upload], face_detector: Any, embedder: Any, detector_label: str
) -> Enrolled:
    """Enroll from uploaded bytes (all photos or none); files live in a temporary folder meanwhile."""
    with tempfile.TemporaryDirectory(prefix="genesis-enroll-") as tmp:
        paths = []
        for i, up in enumerate(uploads):
            path = Path(tmp) / _safe_name(up.filename, i)
            path.write_bytes(up.data)
            paths.append(path)
        try:
            result = enroll(repo, name, paths, face_detector, embedder, detector_label)
        except EnrollError as exc:
            # Name the photo as the caller sent it, not by its temporary path.
            message = str(exc)
            for up, path in zip(uploads, paths, strict=True):
                message = message.replace(str(path), up.filename or path.name)
            raise EnrollError(message) from None
        several = [up.filename for up, path in zip(uploads, paths, strict=True)
                   if result.faces_found.get(str(path), 0) > 1]
    return Enrolled(result.name, result.photos, result.added, several)


def rename(repo: Repository, old: str, new: str) -> bool:
    """Rename an identity; its tracks follow. False when there is no such identity."""
    new = new.strip()
    if not new:
        raise ValueError("the new name is empty")
    if new.lower() == "unknown" or new.lower().startswith("unknown-"):
        raise ValueError(f"{new!r} is reserved for people who are not enrolled")
    with repo.engine.begin() as conn:
        ident = conn.execute(select(Identity.id).where(Identity.name == old)).scalar_one_or_none()
        if ident is None:
            return False
        if new != old and conn.execute(select(Identity.id).where(Identity.name == new)).first() is not None:
            raise IdentityConflictError(f"an identity named {new!r} already exists")
        conn.execute(update(Identity).where(Identity.id == ident).values(name=new))
        conn.execute(update(Track).where(Track.identity_id == ident).values(identity_name=new))
    return True


def forget(repo: Repository, name: str) -> bool:
    return repo.delete_identity(name)
