"""API keys: creation, lookup and revocation (queries on ``api_keys``).

A key reads ``gk_<id>_<secret>``: ``id`` is 8 random hex characters stored in clear (it names
the key in listings and finds its row), ``secret`` is 32 random bytes (URL-safe base64). Only
the sha256 of the whole key is stored, and it is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import OperationalError

from genesis.adapters.db.tables import utcnow
from genesis.adapters.db.tables_api import API_ROLES, ApiKey, DashboardSession
from genesis.domain.names import check_label

KEY_PREFIX = "gk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is written at most once a minute per key (not on every request)."""


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: str
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_key(token: str) -> str | None:
    """The key id of a well-formed key, else None."""
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX):].partition("_")
    if not sep or len(key_id) != 8 or not secret or len(token) > 200:
        return None
    return key_id


def key_prefix(token: str) -> str | None:
    """What names a presented key without its secret: ``gk_<id>`` of a well-formed key, else None
    (the failed-authentication throttle counts per prefix as well as per address; a malformed key
    names no key, and is counted against its address only)."""
    key_id = parse_key(token)
    return f"{KEY_PREFIX}{key_id}" if key_id is not None else None


def _info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(row.id, row.name, row.role, row.created_at, row.last_used_at, row.revoked_at)


class ApiKeyStore:
    """The keys table over an engine (the `Repository`'s)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, role: str, name: str = "") -> tuple[str, ApiKeyInfo]:
        """A new key: (the key itself, shown once; its stored description)."""
        if role not in API_ROLES:
            raise ValueError(f"role must be one of {', '.join(API_ROLES)}, got {role!r}")
        name = check_label(name, "key name") if name.strip() else ""  # the one name rule (ValueError)
        key_id = secrets.token_hex(4)
        token = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        row = ApiKey(id=key_id, name=name or f"{role}-{key_id}", role=role, secret_sha256=_digest(token),
                     created_at=utcnow(), last_used_at=None, revoked_at=None)
        with self.engine.begin() as conn:
            conn.execute(insert(ApiKey).values(
                id=row.id, name=row.name, role=row.role, secret_sha256=row.secret_sha256,
                created_at=row.created_at, last_used_at=None, revoked_at=None,
            ))
        return token, _info(row)

    def list(self) -> list[ApiKeyInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(ApiKey.__table__)).all()
        keys = [ApiKeyInfo(r.id, r.name, r.role, r.created_at, r.last_used_at, r.revoked_at) for r in rows]
        return sorted(keys, key=lambda k: (k.created_at, k.id))

    def _row(self, key_id: str) -> ApiKeyInfo | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(ApiKey.__table__).where(ApiKey.id == key_id)).one_or_none()
        return None if r is None else ApiKeyInfo(r.id, r.name, r.role, r.created_at, r.last_used_at, r.revoked_at)

    def verify(self, token: str) -> ApiKeyInfo | None:
        """The active key this token is, else None (unknown, malformed, revoked or wrong secret)."""
        key_id = parse_key(token)
        if key_id is None:
            return None
        with self.engine.connect() as conn:
            r = conn.execute(
                select(ApiKey.id, ApiKey.secret_sha256, ApiKey.revoked_at, ApiKey.last_used_at)
                .where(ApiKey.id == key_id)
            ).one_or_none()
        if r is None or r.revoked_at is not None:
            # Hash anyway so that an unknown id costs the same as a wrong secret.
            hmac.compare_digest(_digest(token), "0" * 64)
            return None
        if not hmac.compare_digest(_digest(token), r.secret_sha256):
            return None
        now = utcnow()
        if r.last_used_at is None or now - r.last_used_at > LAST_USED_RESOLUTION:
            try:
                with self.engine.begin() as conn:
                    conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
            except OperationalError:
                pass  # best effort: a busy database (SQLite writer) must not refuse a valid key
        return self._row(key_id)

    def revoke(self, key_id: str) -> bool:
        """Revoke a key (kept for the record); False when there is no active key with this id."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
            conn.execute(delete(DashboardSession).where(DashboardSession.key_id == key_id))
            return bool(result.rowcount)


SESSION_PREFIX = "gs_"


def csrf_token(session: str) -> str:
    """The CSRF token of a dashboard session: derived from the session's secret, which the page's
    script never sees (HttpOnly cookie), so another site can neither read nor compute it."""
    return hmac.new(session.encode("utf-8"), b"genesis-csrf", hashlib.sha256).hexdigest()[:43]


class SessionStore:
    """Server-side dashboard sessions (``dashboard_sessions``): the cookie holds a random token,
    the table its sha256, the key it logs in as and its expiry."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, key_id: str, max_age_s: int) -> str:
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(delete(DashboardSession).where(DashboardSession.expires_at < now))
            conn.execute(insert(DashboardSession).values(id_sha256=_digest(token), key_id=key_id, created_at=now,
                                                         expires_at=now + timedelta(seconds=max_age_s)))
        return token

    def verify(self, token: str) -> ApiKeyInfo | None:
        """The active key of a live session, else None (unknown, expired, logged out, key revoked)."""
        if not token.startswith(SESSION_PREFIX) or len(token) > 100:
            return None
        with self.engine.connect() as conn:
            r = conn.execute(
                select(ApiKey.__table__).join(DashboardSession, DashboardSession.key_id == ApiKey.id)
                .where(DashboardSession.id_sha256 == _digest(token), DashboardSession.expires_at > utcnow(),
                       ApiKey.revoked_at.is_(None))
            ).one_or_none()
        return None if r is None else ApiKeyInfo(r.id, r.name, r.role, r.created_at, r.last_used_at, r.revoked_at)

    def end(self, token: str) -> bool:
        """Log out: the session's row is deleted (the cookie no longer works anywhere)."""
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(DashboardSession).where(
                DashboardSession.id_sha256 == _digest(token))).rowcount)
