"""Fair admission between the live cameras of a site near its backlog cap: the share rule, and its ledger in a
real Redis shared by several cameras (genesis.pipeline.admission)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from genesis.pipeline.admission import Counts, FairShare, over_share
from tests.services import redis_url

REDIS_DB = 14


@pytest.fixture()
def client() -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url(REDIS_DB))
    c.flushdb()
    yield c
    c.flushdb()


def test_a_camera_over_its_share_waits_and_one_under_it_never_does() -> None:
    counts = {"a": Counts(40, 30), "b": Counts(40, 10), "c": Counts(40, 8)}
    assert over_share(counts, "a")  # 30 > 16 * 1.1 + 1
    assert not over_share(counts, "b") and not over_share(counts, "c")
    assert not over_share({"a": Counts(40, 30)}, "a")  # alone: all its own
    assert not over_share({"a": Counts(40, 30), "b": Counts(0, 0)}, "a")  # b does not try: not a share
    assert not over_share({"a": Counts(3, 2), "b": Counts(3, 1)}, "a")  # within one message of its share
    assert not over_share(counts, "d")  # a camera that has not tried yet


def test_cameras_that_always_come_in_the_same_order_get_even_shares(client: redis.Redis) -> None:
    """Four cameras ask in the same order every round and the site has room for two messages a round: first
    come, first served gives the first two everything; the ledger gives each about a quarter."""
    now = [1000.0]
    fair = FairShare(client, clock=lambda: now[0])
    got: Counter[str] = Counter()
    for _ in range(200):
        room = 2
        for camera in ("a", "b", "c", "d"):  # a camera that finds the site full still tries (and is dropped)
            if fair.admit(camera, room > 0):
                got[camera] += 1
                room -= 1
        now[0] += 0.5  # 200 rounds: 100 s, across several windows
    assert sum(got.values()) == 400  # every slot taken: nothing lost to fairness
    assert min(got.values()) >= 80 and max(got.values()) <= 120, got


def test_the_ledger_forgets_old_windows(client: redis.Redis) -> None:
    now = [1000.0]
    fair = FairShare(client, window_s=30.0, clock=lambda: now[0])
    for _ in range(30):
        assert fair.admit("a")
    fair.admit("b")
    assert not fair.admit("a")  # 31 admitted against b's 1
    now[0] += 61  # two windows later: what a had is forgotten
    assert fair.admit("a")
    assert all(0 < int(client.ttl(k)) <= 61 for k in client.keys("genesis:admission:*"))
