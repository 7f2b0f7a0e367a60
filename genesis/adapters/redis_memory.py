"""What a Redis does when its memory is full, read from ``INFO memory``.

Genesis needs ``maxmemory-policy noeviction`` (docs/operations.md): with an ``allkeys-*`` or
``volatile-*`` policy a full Redis deletes keys silently — frames not yet detected (every Genesis
frame has a TTL, so ``volatile-*`` takes them first), queued task messages, a run's results or its
sequencer state — and nothing can count what it deleted. With ``noeviction`` a full Redis refuses
writes (``OOM command not allowed``): the capture stops storing frames a little before that
(:func:`frames_fit`) and counts them as dropped, and what it could not store is a counted drop too.

``INFO`` is used rather than ``CONFIG GET``: it gives the policy, the limit and the usage in one
round trip, and it is allowed where ``CONFIG`` is disabled or renamed (managed Redis services).
Where ``INFO`` is refused too, nothing is known and nothing is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from genesis.config import Settings

EVICTING_PREFIXES = ("allkeys-", "volatile-")


@dataclass(frozen=True, slots=True)
class RedisMemory:
    used: int
    maxmemory: int
    """0: no limit."""
    policy: str


def redis_memory(client: Any) -> RedisMemory | None:
    """``INFO memory`` of ``client``'s server; None when the server refuses it (renamed, ACL)."""
    try:
        info = client.info("memory")
    except redis.exceptions.ResponseError:
        return None
    try:
        return RedisMemory(int(info["used_memory"]), int(info.get("maxmemory", 0)),
                           str(info.get("maxmemory_policy", "")))
    except (KeyError, TypeError, ValueError):
        return None


def policy_problem(policy: str | None) -> str | None:
    """Why ``policy`` loses Genesis data silently, or None when it does not (or is unknown)."""
    if not policy or not policy.startswith(EVICTING_PREFIXES):
        return None
    return (f"Redis maxmemory-policy is {policy}: when its memory is full it deletes keys (frames not yet "
            "detected, queued tasks, run state) and nothing counts them; set maxmemory-policy noeviction "
            "(docs/operations.md, Redis memory)")


def eviction_warning(client: Any, what: str) -> str | None:
    """A one-line warning about ``client``'s eviction policy (``what``: which Redis), or None when
    it keeps every key, or cannot be read (unreachable, ``INFO`` refused)."""
    try:
        memory = redis_memory(client)
    except (redis.exceptions.RedisError, OSError):
        return None
    problem = policy_problem(memory.policy if memory is not None else None)
    return f"{what}: {problem}" if problem else None


def eviction_warnings(settings: Settings, timeout_s: float = 2.0) -> list[str]:
    """:func:`eviction_warning` for the broker's and the frame store's Redis (once when they are
    the same server); an unreachable one is not checked here (the health check says so)."""
    urls = {"broker Redis": settings.broker_url, "frame store Redis": settings.redis_url}
    out: list[str] = []
    seen: set[str] = set()
    for what, url in urls.items():
        server = url.rsplit("/", 1)[0] if url.count("/") >= 3 else url  # the server, whatever the db
        if not url.startswith(("redis://", "rediss://")) or server in seen:
            continue
        seen.add(server)
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            warning = eviction_warning(client, what)
        finally:
            client.close()
        if warning:
            out.append(warning)
    return out


def frames_fit(memory: RedisMemory | None, limit: float) -> bool:
    """Whether frames may still be stored: no limit, or used memory below ``limit`` (a fraction)
    of ``maxmemory`` — the rest is kept for queued tasks, results, run state and end markers."""
    return memory is None or memory.maxmemory <= 0 or memory.used < memory.maxmemory * limit


def is_out_of_memory(exc: BaseException) -> bool:
    """A write refused by a full Redis (``OOM command not allowed``), maybe wrapped by kombu."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, redis.exceptions.OutOfMemoryError) or (
                isinstance(seen, redis.exceptions.ResponseError) and str(seen).startswith("OOM ")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
