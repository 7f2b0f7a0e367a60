"""Storage of the identities area over the `Repository`'s engine: enrolled faces and embeddings
(encrypted), negatives, the gallery version, the audit log, rename / forget / key rotation.

Every change of what the gallery matches against (enroll, forget, rename, reject, re-embed) bumps
the ``gallery_version`` row in the same transaction, then — when a Redis client is given — the
Redis key :data:`VERSION_KEY`, which distributed workers read to know when to reload their cache.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.exceptions as redis_errors

from genesis.adapters.db import Repository
from genesis.adapters.db.identities import IdentityRows, NewEmbedding, read_transaction, write_transaction
from genesis.adapters.db.tables import utcnow
from genesis.adapters.redis_keys import GALLERY_VERSION_KEY, LIVE_FRAME_PATTERN
from genesis.domain.names import InvalidNameError, check_identity_name
from genesis.identities.crypto import ENCRYPTED_PREFIXES, KEY_ENV, BiometricCipher, BiometricKeyError

log = logging.getLogger("genesis.identities")

VERSION_KEY = GALLERY_VERSION_KEY
VERSION_TTL_S = 10
"""The Redis copy of the version expires: a writer that could not reach Redis delays a refresh by
at most this long (the workers then read the version from the database again)."""

_F32 = np.dtype("<f4")


class IdentityError(Exception):
    """A user error about identities (unknown name, name taken ...): the message says what."""


@dataclass(frozen=True, slots=True)
class NearFace:
    """An enrollment face within the match threshold of another identity's embedding."""

    photo: str
    identity_id: int
    identity: str
    distance: float
    threshold: float


class NearIdentityError(IdentityError):
    """Enrollment faces that look like another identity (refused unless forced)."""

    def __init__(self, near: list[NearFace]) -> None:
        first = near[0]
        others = sorted({n.identity for n in near})
        super().__init__(
            f"{first.photo} looks like {first.identity!r}, already enrolled (distance {first.distance:.3f}, within "
            f"the match threshold {first.threshold:.3f})"
            + (f"; also near {', '.join(repr(o) for o in others if o != first.identity)}" if len(others) > 1 else "")
            + ": the same person under two names stops matching either; rename or add to that identity, or "
            "force it (genesis enroll --force, force=true in the API; audited)")
        self.near = near


@dataclass(frozen=True, slots=True)
class EnrolledFace:
    """One accepted enrollment photo: its embedding and (optionally) its face crop."""

    photo_sha256: str
    photo_name: str
    detector: str
    model: str
    vector: npt.NDArray[np.float32]
    crop_jpeg: bytes | None
    face: dict[str, Any]
    quality: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredPhoto:
    identity: str
    photo_sha256: str
    photo_name: str
    detector: str
    crop_jpeg: bytes
    face: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]
    id: int = 0


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


FACE_VECTOR_DTYPE = np.dtype("<f2")
"""How the embedding of a track face (``track_faces.vector``) is stored: little-endian float16.

``track_faces`` is the largest table of a busy camera-day (about 2 kB a row on PostgreSQL, with its crop). A
128-d SFace vector is 512 bytes as float32 and 256 as float16: about 31 MB less per busy camera-day (0.28 faces a
frame in the storage bench, 432,000 frames a day). The vector only serves cosine distances (search by photo,
clustering, "not this person", forget), which float16 moves by about 1e-4 at most (9e-5 over the pairs of the
73 faces of the shared photos; its rounding is 2**-11 of a value), what half-precision vector stores (pgvector's
``halfvec``) accept. Only track faces are stored so: enrolled embeddings, negatives and unknown-cluster centroids
(re-read and summed at every clustering) stay float32 (:func:`vector_blob`), and a track face copied into one of
them (naming, assigning, rejecting a face) is written there as float32.

No migration: rows stored before this (float32) are read as they are — the reader (`IdentityStore._vec`) tells
the two apart by the length, ``dim`` * 2 or ``dim`` * 4 bytes — and key rotation re-encrypts the bytes it finds,
so each row keeps the precision it was written with."""


def _finite_vector(vector: npt.NDArray[Any]) -> npt.NDArray[Any]:
    v = np.asarray(vector)
    if v.ndim != 1 or v.shape[0] == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"an embedding must be a finite, non-empty 1-D vector, got shape {v.shape}")
    return v


def vector_blob(vector: npt.NDArray[Any]) -> tuple[int, bytes]:
    """(dim, float32 bytes) of an embedding, as enrolled embeddings, negatives and cluster centroids are stored."""
    v = _finite_vector(vector)
    return int(v.shape[0]), v.astype(_F32).tobytes()


def track_face_blob(vector: npt.NDArray[Any]) -> tuple[int, bytes]:
    """(dim, bytes) of a track face's embedding as stored: :data:`FACE_VECTOR_DTYPE` (float16). A vector that
    float16 cannot hold faithfully (a value beyond its range, or so small that it loses more than 1e-3 of the
    vector's norm) is stored as float32 instead: the reader takes both."""
    v = _finite_vector(vector).astype(_F32)
    if float(np.max(np.abs(v))) > float(np.finfo(FACE_VECTOR_DTYPE).max):
        return int(v.shape[0]), v.tobytes()
    half = v.astype(FACE_VECTOR_DTYPE)
    if float(np.linalg.norm(half.astype(_F32) - v)) > 1e-3 * float(np.linalg.norm(v)):
        return int(v.shape[0]), v.tobytes()
    return int(v.shape[0]), half.tobytes()


_WARNED: set[str] = set()
"""Warnings given once per process."""


def biometric_mode(rows: IdentityRows) -> tuple[bool, bool]:
    """(the database holds encrypted biometric rows, it holds clear ones)."""
    return rows.biometric_mode(ENCRYPTED_PREFIXES)


class IdentityStore:
    """Biometric data policy (docs/security.md): a database holds either encrypted or clear biometric
    rows, never both. Writing clear rows where encrypted ones are (no ``GENESIS_EMBEDDING_KEY``) or
    encrypted rows where clear ones are (a key set on a database started without one: run
    ``genesis identities rotate-key`` first) raises BiometricKeyError with one line that says so.
    Clear writes are allowed (a first try, a laptop) with one warning per process."""

    def __init__(self, repo: Repository, cipher: BiometricCipher | None = None, redis: Any = None) -> None:
        self.repo = repo
        self.cipher = cipher if cipher is not None else BiometricCipher.from_env()
        self.redis = redis
        self._policy_ok = False

    def _encrypt(self, data: bytes) -> bytes:
        """``data`` as stored (encrypted with a key), after the mixing check of the class docstring."""
        if not self._policy_ok:
            self.check_policy()
        return self.cipher.encrypt(data)

    def check_policy(self) -> None:
        """Refuse to mix clear and encrypted biometric rows (BiometricKeyError); warn once about clear ones."""
        with read_transaction(self.repo.engine) as rows:
            encrypted, clear = biometric_mode(rows)
        if self.cipher.enabled and clear:
            raise BiometricKeyError(
                f"this database holds biometric data in the clear and {KEY_ENV} is set: encrypt it first with "
                "`genesis identities rotate-key` (Genesis never mixes clear and encrypted rows)")
        if not self.cipher.enabled:
            if encrypted:
                raise BiometricKeyError(
                    f"this database holds encrypted biometric data: set {KEY_ENV} to its key (Genesis never "
                    "writes clear rows beside encrypted ones)")
            if "plaintext" not in _WARNED:
                _WARNED.add("plaintext")
                log.warning("%s is not set: embeddings and face crops are stored in the clear "
                            "(make a key with `genesis identities new-key`; see docs/security.md)", KEY_ENV)
        self._policy_ok = True

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[IdentityRows]:
        with write_transaction(self.repo.engine) as rows:
            yield rows

    @contextmanager
    def _read(self) -> Iterator[IdentityRows]:
        with read_transaction(self.repo.engine) as rows:
            yield rows

    def _vec(self, blob: bytes, dim: int) -> npt.NDArray[np.float32]:
        """A stored embedding (decrypted) as float32: ``dim`` * 4 bytes are float32 (enrolled embeddings,
        negatives, centroids, track faces stored before :data:`FACE_VECTOR_DTYPE`), ``dim`` * 2 float16 (track
        faces); any other length is a ValueError."""
        raw = self.cipher.decrypt(blob)
        dtype: np.dtype[Any]
        if dim > 0 and len(raw) == dim * _F32.itemsize:
            dtype = _F32
        elif dim > 0 and len(raw) == dim * FACE_VECTOR_DTYPE.itemsize:
            dtype = FACE_VECTOR_DTYPE
        else:
            raise ValueError(f"stored embedding has {len(raw)} bytes, expected {dim} values: {dim * _F32.itemsize} "
                             f"(float32) or {dim * FACE_VECTOR_DTYPE.itemsize} (float16)")
        out: npt.NDArray[np.float32] = np.frombuffer(raw, dtype=dtype).astype(np.float32)
        return out

    def _enc_vec(self, vector: npt.NDArray[Any]) -> tuple[int, bytes]:
        """(dim, blob as stored) of an enrolled embedding, a negative or a centroid: float32, then encrypted."""
        dim, raw = vector_blob(vector)
        return dim, self._encrypt(raw)

    def _enc_track_vec(self, vector: npt.NDArray[Any]) -> tuple[int, bytes]:
        """(dim, blob as stored) of a track face's embedding: :func:`track_face_blob` (float16), then encrypted."""
        dim, raw = track_face_blob(vector)
        return dim, self._encrypt(raw)

    @staticmethod
    def _bump(rows: IdentityRows) -> None:
        rows.bump_gallery_version()

    def _publish(self) -> None:
        if self.redis is None:
            return
        # Redis away: the workers' copy expires within VERSION_TTL_S anyway.
        with contextlib.suppress(Exception):
            self.redis.set(VERSION_KEY, self.db_version(), ex=VERSION_TTL_S)

    def db_version(self) -> int:
        with self._read() as rows:
            v = rows.gallery_version()
        return int(v or 0)

    def version(self) -> int:
        """The gallery version: from Redis when a client is given (set from the database when missing)."""
        if self.redis is not None:
            try:
                raw = self.redis.get(VERSION_KEY)
                if raw is not None:
                    return int(raw)
                v = self.db_version()
                self.redis.set(VERSION_KEY, v, ex=VERSION_TTL_S, nx=True)
                return v
            except redis_errors.RedisError:  # Redis away: the database has the truth
                pass
        return self.db_version()

    @staticmethod
    def _audit(rows: IdentityRows, actor: str, action: str, target: str | None, detail: dict[str, Any]) -> int:
        return rows.audit(actor, action, target, detail)

    def audit(self, actor: str, action: str, target: str | None, detail: dict[str, Any] | None = None) -> None:
        with self._write() as rows:
            self._audit(rows, actor, action, target, detail or {})

    def audit_log(self) -> list[AuditRecord]:
        with self._read() as rows:
            entries = rows.audit_entries()
        return [AuditRecord(*r) for r in entries]

    @staticmethod
    def _identity_id(rows: IdentityRows, name: str) -> int:
        ident = rows.identity_id(name)
        if ident is None:
            raise IdentityError(f"no identity named {name!r}")
        return ident

    def identity_name(self, identity_id: int) -> str | None:
        """The current name of the identity with this stable id."""
        with self._read() as rows:
            return rows.identity_name(identity_id)

    def exists(self, name: str) -> bool:
        with self._read() as rows:
            return rows.identity_id(name) is not None

    def track_identities(self, run_id: str, track_id: int) -> list[str | None]:
        """The identity of each segment of a track, in order (empty: no such track)."""
        with self._read() as rows:
            return [name for _, name in rows.track_segments(run_id, track_id)]

    # -- enrollment ---------------------------------------------------------------------------

    def enroll(self, name: str, faces: Sequence[EnrolledFace], actor: str, *,
               thresholds: dict[str, float] | None = None, force: bool = False) -> int:
        """Store the faces of ``name`` (creating the identity) in one transaction; returns the
        embeddings newly stored (a photo already enrolled for that identity and model is skipped).

        A face within the match threshold of *another* identity (``thresholds`` per model, default
        deepface's) is refused with NearIdentityError naming it: the same person under two names
        would make both stop matching (the margin rule). ``force`` enrolls it anyway, and the audit
        entry records the ids of the identities it is near."""
        from genesis.config.inference import DEFAULT_COSINE_THRESHOLDS

        name = check_name(name)  # every way a name enters goes through here (CLI, API, naming a cluster)
        if not faces:
            return 0
        limits = {**DEFAULT_COSINE_THRESHOLDS, **(thresholds or {})}
        models = {f.model for f in faces}
        now = utcnow()
        with self._write() as rows:
            near = self._near_others(rows, name, faces, limits)
            if near and not force:
                raise NearIdentityError(near)
            rows.add_identity(name, now)
            ident = self._identity_id(rows, name)
            for model in models:
                dims = {vector_blob(f.vector)[0] for f in faces if f.model == model}
                stored = rows.embedding_dims(model)
                if len(dims) != 1 or (stored[0] is not None and {stored[0], stored[1]} != dims):
                    raise IdentityError(f"embeddings of model {model!r} differ in dimension")
            added = 0
            for f in faces:
                dim, blob = self._enc_vec(f.vector)
                added += rows.add_embedding(NewEmbedding(ident, f.model, f.detector, dim, blob, f.photo_sha256,
                                                         f.photo_name, now))
                if f.crop_jpeg is not None:
                    rows.add_face_photo(ident, f.photo_sha256, f.photo_name, f.detector, self._encrypt(f.crop_jpeg),
                                        f.face, f.quality, now)
            self._bump(rows)
            # No file names in the audit log: they often name the person, and forget must not leave that behind.
            detail: dict[str, Any] = {"photos": len(faces), "models": sorted(models), "added": added}
            if near:  # ids, not names: forget scrubs names from the log, and ids stay meaningful
                detail["forced_near_identity_ids"] = sorted({n.identity_id for n in near})
            self._audit(rows, actor, "enroll", name, detail)
        self._publish()
        return added

    def _near_others(self, db: IdentityRows, name: str, faces: Sequence[EnrolledFace],
                     limits: dict[str, float]) -> list[NearFace]:
        """The faces within their model's threshold of an embedding of another identity (nearest first)."""
        out: list[NearFace] = []
        for model in sorted({f.model for f in faces}):
            rows = db.embeddings_of_others(model, name)
            if not rows or model not in limits:
                continue
            matrix = np.stack([self._vec(r[3], r[2]) for r in rows])
            matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
            for f in faces:
                if f.model != model or f.vector.shape[0] != matrix.shape[1]:
                    continue
                v = f.vector / max(float(np.linalg.norm(f.vector)), 1e-12)
                dist = 1.0 - matrix @ v
                best = int(np.argmin(dist))
                if float(dist[best]) <= limits[model]:
                    out.append(NearFace(f.photo_name, int(rows[best][0]), str(rows[best][1]), float(dist[best]),
                                        limits[model]))
        return sorted(out, key=lambda n: n.distance)

    def gallery(self, model: str) -> tuple[list[str], npt.NDArray[np.float32]]:
        """Names per row and the (N, dim) matrix of the enrolled embeddings of ``model`` only
        (embeddings of other models are never mixed in), sorted by name then enrollment order."""
        with self._read() as db:
            rows = db.gallery_rows(model)
        return self._matrix(model, rows)

    def negatives(self, model: str) -> tuple[list[str], npt.NDArray[np.float32]]:
        """Faces rejected for an identity ("not this person"), of ``model`` only."""
        with self._read() as db:
            rows = db.negative_rows(model)
        return self._matrix(model, rows)

    def _matrix(self, model: str, rows: list[tuple[str, int, bytes]]) -> tuple[list[str], npt.NDArray[np.float32]]:
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        rows.sort(key=lambda r: r[0])
        dims = {r[1] for r in rows}
        if len(dims) != 1:
            raise ValueError(f"model {model!r} has embeddings of several dimensions: {sorted(dims)}")
        dim = dims.pop()
        return [r[0] for r in rows], np.stack([self._vec(r[2], dim) for r in rows])

    def models(self) -> list[str]:
        with self._read() as rows:
            return rows.embedding_models()

    def photos(self) -> list[StoredPhoto]:
        """Every kept enrollment face (decrypted), by identity then enrollment order."""
        with self._read() as db:
            rows = db.photo_rows()
        return [StoredPhoto(r[0], r[1], r[2], r[3], self.cipher.decrypt(r[4]), dict(r[5])) for r in rows]

    def photoless(self) -> list[tuple[str, str]]:
        """(identity, photo) of embeddings with no kept face (enrolled before crops were kept)."""
        with self._read() as db:
            rows = db.photoless()
        return sorted(rows)

    def replace_model(self, model: str, faces: Sequence[tuple[str, EnrolledFace]], actor: str) -> int:
        """Re-embed: the embeddings of ``model`` become exactly ``faces`` ((identity, face) pairs)."""
        now = utcnow()
        with self._write() as rows:
            rows.delete_model(model)
            for name, f in faces:
                ident = self._identity_id(rows, name)
                dim, blob = self._enc_vec(f.vector)
                rows.insert_embedding(NewEmbedding(ident, model, f.detector, dim, blob, f.photo_sha256,
                                                   f.photo_name, now))
            self._bump(rows)
            self._audit(rows, actor, "re-embed", None, {"model": model, "embeddings": len(faces)})
        self._publish()
        return len(faces)

    # -- rename, forget -----------------------------------------------------------------------

    def rename(self, old: str, new: str, actor: str) -> None:
        new = check_name(new)
        with self._write() as rows:
            ident = self._identity_id(rows, old)
            if rows.identity_id(new) is not None:
                raise IdentityError(f"an identity named {new!r} exists already")
            rows.rename_identity(ident, old, new)
            self._bump(rows)
            self._audit(rows, actor, "rename", f"identity #{ident}", {})
        self._publish()

    def forget(self, name: str, actor: str, thresholds: dict[str, float] | None = None) -> dict[str, int]:
        """Erase an identity everywhere: embeddings, kept faces, negatives, its name on tracks and
        recognition attempts (kept as anonymous rows), the stored faces of its tracks, and every
        other stored face that matches it (unknown clusters and faces of unrecognised tracks within
        the model's threshold of one of its embeddings: ``thresholds``, default deepface's); audit
        entries name it ``identity #<id>`` from then on."""
        from genesis.config.inference import DEFAULT_COSINE_THRESHOLDS

        thresholds = {**DEFAULT_COSINE_THRESHOLDS, **(thresholds or {})}
        with self._write() as rows:
            ident = self._identity_id(rows, name)
            mine: dict[str, list[npt.NDArray[np.float32]]] = {}
            for model, dim, blob in rows.embeddings_of(ident):
                mine.setdefault(model, []).append(self._vec(blob, dim))
            counts = rows.delete_enrollment(ident)
            faces = 0
            for run_id, track_id, segment in rows.named_segments(ident, name):  # the segments that carried the name
                faces += rows.delete_track_face(run_id, track_id, segment)
            clusters = 0
            for model, vectors in mine.items():
                m = np.stack([v / max(float(np.linalg.norm(v)), 1e-12) for v in vectors])
                limit = thresholds.get(model, 0.0)
                for run_id, track_id, segment, dim, blob in rows.track_face_vectors(model):
                    if self._near(m, self._vec(blob, dim), limit):
                        faces += rows.delete_track_face(run_id, track_id, segment)
                for cid, dim, blob in rows.cluster_centroids(model):
                    if self._near(m, self._vec(blob, dim), limit):
                        gone_faces, gone_clusters = rows.delete_cluster_with_faces(cid)
                        faces += gone_faces
                        clusters += gone_clusters
            counts["track_faces"] = faces
            counts["unknown_clusters"] = clusters
            # The live view's latest frames may show the person with their name: gone too (the next
            # published frame replaces them).
            counts["tracks_unlinked"] = rows.erase_identity(ident, name)
            self._bump(rows)
            self._audit(rows, actor, "forget", f"identity #{ident}", dict(counts))
        self._publish()
        self._forget_live()
        return counts

    def _forget_live(self) -> None:
        """Delete the live view's frames in Redis (distributed mode; they expire within a minute anyway)."""
        if self.redis is None:
            return
        with contextlib.suppress(Exception):
            for key in self.redis.scan_iter(match=LIVE_FRAME_PATTERN, count=500):
                self.redis.delete(key)

    @staticmethod
    def _near(matrix: npt.NDArray[np.float32], vector: npt.NDArray[np.float32], limit: float) -> bool:
        v = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return bool(float(np.max(matrix @ v)) >= 1.0 - limit)

    # -- key rotation -------------------------------------------------------------------------

    def rotate_key(self, actor: str) -> int:
        """Re-encrypt every stored biometric blob with the first key of the cipher."""
        with self._write() as rows:
            n = rows.rotate_blobs(self.cipher.rotate)
            self._audit(rows, actor, "rotate-key", None, {"blobs": n})
        return n


RESERVED = ("unknown",)


def check_name(name: str) -> str:
    """The identity name (stripped) if it follows the one name rule (:mod:`genesis.domain.names`);
    IdentityError with the reason if not."""
    try:
        return check_identity_name(name)
    except InvalidNameError as exc:
        raise IdentityError(str(exc)) from None
