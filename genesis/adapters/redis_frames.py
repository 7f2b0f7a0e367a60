"""Frame store on Redis: the JPEG bytes of captured frames, each under its key with a TTL.

The TTL is what keeps Redis memory bounded whatever happens downstream: a frame that no
worker ever reads (a crashed pool, a dropped message) expires on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from genesis.config import Settings


class RedisFrameStore:
    """The FrameStore protocol on Redis (``SET key data EX ttl``, ``GET``, ``DEL``)."""

    def __init__(self, client_or_url: redis.Redis | str, ttl_s: int) -> None:
        if ttl_s < 1:
            raise ValueError(f"frame TTL must be at least 1 s, got {ttl_s}")
        self.client: redis.Redis = (
            redis.Redis.from_url(client_or_url) if isinstance(client_or_url, str) else client_or_url
        )
        self.ttl_s = ttl_s

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisFrameStore:
        return cls(settings.redis_url, settings.distributed.frame_ttl_s)

    def put(self, key: str, data: bytes) -> None:
        self.client.set(key, data, ex=self.ttl_s)

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        if len(items) == 1:
            self.put(*items[0])
            return
        with self.client.pipeline(transaction=False) as pipe:
            for key, data in items:
                pipe.set(key, data, ex=self.ttl_s)
            pipe.execute()

    def get(self, key: str) -> bytes | None:
        return _frame_bytes(self.client.get(key))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return [_frame_bytes(v) for v in self.client.mget(keys)]

    def delete(self, key: str) -> None:
        self.client.delete(key)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Drop frames no stage will read again (UNLINK: Redis frees them in the background)."""
        if keys:
            self.client.unlink(*keys)

    def close(self) -> None:
        self.client.close()


def _frame_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    # A client made with decode_responses=True cannot carry JPEG bytes faithfully.
    raise TypeError("the Redis client of a frame store must not decode responses (decode_responses=False)")
