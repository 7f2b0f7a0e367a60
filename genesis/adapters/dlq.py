"""Dead letters: tasks that failed for good, kept in Redis until an operator replays or purges them.

Redis (the broker) has no dead-letter queue of its own (``Reject(requeue=False)`` dead-letters
only on RabbitMQ), so Genesis writes one. A task lands here when it exhausts its retries on a
transient error, raises :class:`~genesis.tasks.base.PermanentError` (or any other non-transient
exception), dies with its worker more often than it may be retried, or when the worker cannot
even decode or validate its message (see :mod:`genesis.tasks.base` for what is covered).

The store lives in Redis, not in the database, on purpose: a store task that failed because
PostgreSQL was down must still be recorded, and Redis is the one service every worker already
needs to receive work at all.

Layout (all keys under ``genesis:dlq:``):

- ``genesis:dlq:letter:<id>``: a hash per letter, one field per :class:`DeadLetter` field, each
  value JSON-encoded (so types round-trip exactly);
- ``genesis:dlq:index``: a sorted set of letter ids scored by ``failed_at`` (epoch seconds), so
  listing is ordered and :meth:`DeadLetters.size` is O(1);
- ``genesis:dlq:first:<task_id>``: when a task that is being retried first failed (short-lived);
- ``genesis:dlq:replaying:<id>``: a short lock held while one letter is replayed.

A letter's id is the failed task's id, so recording the same failure twice (a redelivered
message failing again) overwrites one letter instead of adding a second.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import redis

from genesis.adapters.redis_keys import (
    DLQ_FIRST_FAILURE_PREFIX,
    DLQ_INDEX_KEY,
    DLQ_LETTER_PREFIX,
    DLQ_PREFIX,
    DLQ_REPLAY_LOCK_PREFIX,
    glob_escape,
)

if TYPE_CHECKING:

    from genesis.config import Settings

PREFIX = DLQ_PREFIX
INDEX_KEY = DLQ_INDEX_KEY
LETTER_PREFIX = DLQ_LETTER_PREFIX
FIRST_FAILURE_PREFIX = DLQ_FIRST_FAILURE_PREFIX
REPLAY_LOCK_PREFIX = DLQ_REPLAY_LOCK_PREFIX

#: Tracebacks longer than this are cut (the end is kept: it names the line that raised).
MAX_TRACEBACK_CHARS = 20_000
#: A raw message body kept for an undecodable message is cut to this many characters.
MAX_BODY_CHARS = 10_000
#: How long the first failure of a task being retried is remembered.
FIRST_FAILURE_TTL_S = 7 * 24 * 3600
#: How long one replay may hold its letter's lock (a crashed replayer frees it after this).
REPLAY_LOCK_TTL_S = 60


def utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class DeadLetter:
    """One task that failed for good, with everything needed to understand and replay it."""

    task_name: str
    task_id: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    exc_type: str = ""
    """Qualified name of the exception class, e.g. ``redis.exceptions.ConnectionError``."""
    exc_message: str = ""
    traceback: str = ""
    retries: int = 0
    """Retries done before giving up (0: failed on the first attempt)."""
    failed_at: datetime = field(default_factory=utcnow)
    first_failed_at: datetime | None = None
    """When the first attempt failed; ``failed_at`` when the task was not retried."""
    hostname: str | None = None
    """Worker that recorded the failure."""
    body: str | None = None
    """Raw message body (cut), only for a message the worker could not decode."""
    id: str = ""
    """Letter id: the task id when there is one (set by :meth:`DeadLetters.add` when empty)."""

    def __post_init__(self) -> None:
        self.failed_at = _as_utc(self.failed_at)
        self.first_failed_at = self.failed_at if self.first_failed_at is None else _as_utc(self.first_failed_at)
        if len(self.traceback) > MAX_TRACEBACK_CHARS:
            self.traceback = "...\n" + self.traceback[-MAX_TRACEBACK_CHARS:]
        if self.body is not None and len(self.body) > MAX_BODY_CHARS:
            self.body = self.body[:MAX_BODY_CHARS] + "..."

    @property
    def error(self) -> str:
        """``Type: message`` with the short class name, for tables and logs."""
        short = self.exc_type.rsplit(".", 1)[-1] or "Error"
        return f"{short}: {self.exc_message}" if self.exc_message else short

    @property
    def replayable(self) -> bool:
        """False for a message whose body could not be decoded: there is nothing to re-send."""
        return self.body is None and bool(self.task_name)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["failed_at"] = self.failed_at.isoformat()
        data["first_failed_at"] = self.first_failed_at.isoformat() if self.first_failed_at else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeadLetter:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown dead-letter fields: {', '.join(unknown)}")
        values = dict(data)
        for key in ("failed_at", "first_failed_at"):
            raw = values.get(key)
            if isinstance(raw, str):
                values[key] = datetime.fromisoformat(raw)
        try:
            letter = cls(**values)
        except TypeError as exc:
            raise ValueError(f"bad dead letter: {exc}") from exc
        if not isinstance(letter.args, list) or not isinstance(letter.kwargs, dict):
            raise ValueError("bad dead letter: args must be a list and kwargs an object")
        return letter

    def to_json(self) -> str:
        # default=repr: a value that is not JSON (only possible for a task called in process,
        # never for one that came through the broker) is kept as its repr rather than lost.
        return json.dumps(self.to_dict(), sort_keys=True, default=repr)

    @classmethod
    def from_json(cls, text: str | bytes) -> DeadLetter:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a dead letter must be a JSON object")
        return cls.from_dict(data)


class ReplayError(Exception):
    """A letter that cannot be replayed (gone, undecodable, or being replayed right now)."""


class DeadLetters:
    """The dead-letter store over Redis (see the module docstring for the layout)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @classmethod
    def from_url(cls, url: str) -> DeadLetters:
        return cls(redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5, socket_timeout=10))

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadLetters:
        return cls.from_url(settings.redis_url)

    @staticmethod
    def _key(letter_id: str) -> str:
        return LETTER_PREFIX + letter_id

    def add(self, letter: DeadLetter) -> str:
        """Record a letter (replacing one with the same id) and return its id."""
        if not letter.id:
            letter.id = letter.task_id or uuid.uuid4().hex
        mapping = {k: json.dumps(v, default=repr) for k, v in letter.to_dict().items()}
        key = self._key(letter.id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=cast("Mapping[Any, Any]", mapping))
            pipe.zadd(INDEX_KEY, {letter.id: letter.failed_at.timestamp()})
            pipe.execute()
        return letter.id

    @staticmethod
    def _decode(raw: Mapping[str, str]) -> DeadLetter:
        return DeadLetter.from_dict({k: json.loads(v) for k, v in raw.items()})

    def get(self, letter_id: str) -> DeadLetter | None:
        raw = cast("dict[str, str]", self.redis.hgetall(self._key(letter_id)))
        return self._decode(raw) if raw else None

    def ids(self, limit: int | None = None, offset: int = 0, newest_first: bool = False) -> list[str]:
        """Letter ids ordered by failure time (oldest first unless ``newest_first``)."""
        if limit is not None and limit <= 0:
            return []
        end = -1 if limit is None else offset + limit - 1
        return cast("list[str]", self.redis.zrange(INDEX_KEY, offset, end, desc=newest_first))

    def list(self, limit: int = 50, offset: int = 0, newest_first: bool = False) -> list[DeadLetter]:
        """Letters ordered by failure time (oldest first unless ``newest_first``)."""
        ids = self.ids(limit, offset, newest_first)
        if not ids:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for letter_id in ids:
                pipe.hgetall(self._key(letter_id))
            rows = cast("list[dict[str, str]]", pipe.execute())
        # A letter removed between the two reads is simply not listed.
        return [self._decode(row) for row in rows if row]

    def __iter__(self) -> Iterator[DeadLetter]:
        """Every letter, oldest first, read in pages."""
        offset = 0
        while True:
            page = self.list(limit=200, offset=offset)
            yield from page
            if len(page) < 200:
                return
            offset += len(page)

    def find(self, prefix: str, limit: int = 2) -> builtins.list[str]:
        """Ids that start with ``prefix`` (at most ``limit``), to accept short ids on the command line."""
        if self.redis.zscore(INDEX_KEY, prefix) is not None:
            return [prefix]
        found: builtins.list[str] = []
        for member, _ in self.redis.zscan_iter(INDEX_KEY, match=glob_escape(prefix) + "*", count=500):
            found.append(str(member))
            if len(found) >= limit:
                break
        return found

    def remove(self, letter_id: str) -> bool:
        """Delete one letter; False when it was not there."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(letter_id))
            pipe.zrem(INDEX_KEY, letter_id)
            deleted, removed = pipe.execute()
        return bool(deleted or removed)

    def purge(self) -> int:
        """Delete every letter; returns how many there were."""
        total = 0
        while True:
            ids = self.ids(limit=500)
            if not ids:
                return total
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(*(self._key(i) for i in ids))
                pipe.zrem(INDEX_KEY, *ids)
                _, removed = pipe.execute()
            total += int(removed)

    def size(self) -> int:
        return int(self.redis.zcard(INDEX_KEY))

    # The first failure of a task that is being retried (a retry keeps the task id).

    def note_first_failure(self, task_id: str, when: datetime | None = None) -> None:
        self.redis.set(FIRST_FAILURE_PREFIX + task_id, _as_utc(when or utcnow()).isoformat(), nx=True,
                       ex=FIRST_FAILURE_TTL_S)

    def pop_first_failure(self, task_id: str) -> datetime | None:
        raw = cast("str | None", self.redis.getdel(FIRST_FAILURE_PREFIX + task_id))
        return datetime.fromisoformat(raw) if raw else None

    # One replayer at a time per letter.

    def lock(self, letter_id: str) -> str | None:
        """Take the short replay lock of one letter: its token, or None when another replayer holds it."""
        token = uuid.uuid4().hex
        ok = self.redis.set(REPLAY_LOCK_PREFIX + letter_id, token, nx=True, ex=REPLAY_LOCK_TTL_S)
        return token if ok else None

    def unlock(self, letter_id: str, token: str) -> None:
        # Delete the lock only if it is still ours (it may have expired and been taken since).
        self.redis.eval(_UNLOCK_SCRIPT, 1, REPLAY_LOCK_PREFIX + letter_id, token)


_UNLOCK_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
