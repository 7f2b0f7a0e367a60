"""The pieces of a full Redis's handling (issue 23, item 2): what counts as OOM, when frames still
fit, which policies are warned about, and a frame gone from the frame store counted as expired."""

from __future__ import annotations

import kombu.exceptions
import pytest
import redis

from genesis.adapters.redis_memory import RedisMemory, frames_fit, is_out_of_memory, policy_problem
from genesis.domain import FrameRef
from genesis.pipeline.loop import RunProgress
from genesis.pipeline.sequencer import FrameResult


def test_out_of_memory_is_recognised_also_when_wrapped() -> None:
    oom = redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    assert is_out_of_memory(oom)
    assert is_out_of_memory(redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'"))
    try:
        try:
            raise oom
        except redis.exceptions.RedisError as exc:
            raise kombu.exceptions.OperationalError(str(exc)) from exc
    except kombu.exceptions.OperationalError as wrapped:
        assert is_out_of_memory(wrapped)
    assert not is_out_of_memory(redis.exceptions.ResponseError("WRONGTYPE Operation against a key"))
    assert not is_out_of_memory(redis.exceptions.ConnectionError("gone"))


def test_frames_fit_below_the_limit_only() -> None:
    assert frames_fit(None, 0.9) and frames_fit(RedisMemory(10**9, 0, "noeviction"), 0.9)
    assert frames_fit(RedisMemory(899, 1000, "noeviction"), 0.9)
    assert not frames_fit(RedisMemory(900, 1000, "noeviction"), 0.9)


@pytest.mark.parametrize(("policy", "warned"), [
    ("noeviction", False), (None, False), ("", False), ("allkeys-lru", True), ("allkeys-random", True),
    ("volatile-ttl", True), ("volatile-lfu", True),
])
def test_evicting_policies_are_a_problem(policy: str | None, warned: bool) -> None:
    problem = policy_problem(policy)
    assert (problem is not None) == warned
    if problem:
        assert policy in problem and "noeviction" in problem


def test_a_gone_frame_is_counted_expired_not_skipped() -> None:
    from genesis.pipeline.loop import RunLoop, RunState

    ref = FrameRef("cam", 3, 0.1, "k", 10, 10)
    result = FrameResult.from_json(FrameResult(ref, 2, error="gone", expired=True).to_json())
    assert result.expired
    progress = RunProgress()
    loop = RunLoop(RunState(None, progress), sink=None, batch_frames=1)  # type: ignore[arg-type]
    loop.skip(3, result.expired)
    loop.skip(4)
    meta = progress.run_meta()
    assert (meta["expired_frames"], meta["skipped_frames"], progress.last_seq) == (1, 1, 4)
