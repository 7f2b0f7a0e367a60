"""Fair admission between the live cameras of a site near its backlog cap.

Capture admits a detect message while fewer than ``distributed.max_backlog`` messages wait and the workers can
drain the queues within ``distributed.max_backlog_s`` (genesis.pipeline.capture). The backlog is one budget for
every camera of the site, so near the cap whichever camera's frame comes first after a slot frees takes it, and
cameras that tick at fixed phases keep their order: a 10-minute soak of 4 cameras admitted 1,209 / 953 / 627 /
402 frames. From :data:`FAIR_FROM` of either cap on, a live camera that was admitted more than its share of
what the cameras trying were admitted in the last one or two windows (:data:`WINDOW_S`) is dropped at the
source (counted as ``backpressure``), which leaves the freed slot to the cameras behind. Below that nothing is
held back, so a camera with little to send never throttles the others (the rule acts only while the queues
hold half a cap of work: no worker waits for it). A camera's tries are counted above the cap too, where every
camera is dropped: one that always came while the site was full is owed the next slots. A file is never
dropped (it waits), so this applies to live cameras only.

The counts live in the site's Redis (:func:`genesis.adapters.redis_keys.admission_key`), so the cameras of
several capture processes share them.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from genesis.adapters.redis_keys import admission_key

FAIR_FROM = 0.5
"""Fair shares apply from this fraction of either backlog cap (``distributed.max_backlog``, ``max_backlog_s``)."""
WINDOW_S = 30.0
"""The counts are kept per window of this many seconds; a decision reads the current and the previous one."""
SLACK = 0.1
"""A camera may be admitted this fraction above its share (and one message) before it is held back."""


@dataclass(frozen=True, slots=True)
class Counts:
    tried: int = 0
    admitted: int = 0


def over_share(counts: Mapping[str, Counts], camera: str, slack: float = SLACK) -> bool:
    """Whether ``camera`` was admitted more than its share: what the cameras that tried were admitted, divided
    evenly between them, ``slack`` above it and one message more. A camera alone is never over its share."""
    trying = {c: n for c, n in counts.items() if n.tried > 0}
    mine = trying.get(camera)
    if mine is None or len(trying) < 2:
        return False
    share = sum(n.admitted for n in trying.values()) / len(trying)
    return mine.admitted > share * (1.0 + slack) + 1


def _summed(*hashes: Mapping[Any, Any]) -> Counter[str]:
    """Per camera, the sum of its counts in ``hashes`` (Redis hashes: bytes keys and values)."""
    out: Counter[str] = Counter()
    for h in hashes:
        for k, v in h.items():
            out[k.decode() if isinstance(k, bytes) else str(k)] += int(v)
    return out


class FairShare:
    """The site's ledger of tries and admissions near the cap, in Redis (see the module)."""

    def __init__(self, client: Any, window_s: float = WINDOW_S, clock: Callable[[], float] = time.time) -> None:
        self.client, self.window_s, self.clock = client, window_s, clock

    def admit(self, camera: str, room: bool = True) -> bool:
        """Record a try of ``camera``; True (and recorded as admitted) when the site has ``room`` and the camera
        is not over its share. A try without room counts too: the camera is owed a share of the next slots."""
        window = int(self.clock() // self.window_s)
        ttl = math.ceil(2 * self.window_s) + 1
        now_t, now_a = admission_key(window, "tried"), admission_key(window, "admitted")
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hincrby(now_t, camera, 1)
            pipe.expire(now_t, ttl)
            pipe.hgetall(now_t)
            pipe.hgetall(now_a)
            pipe.hgetall(admission_key(window - 1, "tried"))
            pipe.hgetall(admission_key(window - 1, "admitted"))
            _, _, tried, admitted, tried_before, admitted_before = pipe.execute()
        t, a = _summed(tried, tried_before), _summed(admitted, admitted_before)
        counts = {c: Counts(t[c], a[c]) for c in {*t, *a}}
        if not room or over_share(counts, camera):
            return False
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hincrby(now_a, camera, 1)
            pipe.expire(now_a, ttl)
            pipe.execute()
        return True
