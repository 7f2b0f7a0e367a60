"""The soak's verdicts (``genesis.bench.soak``): pure helpers on hand-made samples."""

from __future__ import annotations

from genesis.bench.soak import MB, CameraTotals, Sample, is_flat, steady_change, verdicts, warmup_s


def sample(t: float, rss: dict[str, int], redis_used: int = 10 * MB, expired: int = 0, dead: int = 0) -> Sample:
    return Sample(t, 100, 60, {"backpressure": 40}, 55, expired, 0, 0, dead, redis_used, 256 * MB, rss)


def totals(processed: int = 60, expired: int = 0, status: str = "finished") -> CameraTotals:
    return CameraTotals("cam1", "r1", status, 100, 60, {"backpressure": 40}, processed, 0, 0, expired)


def test_steady_change_compares_the_halves_after_the_warm_up() -> None:
    assert steady_change([], 300.0) == (0.0, 0.0)
    points = [(60.0 * i, v) for i, v in enumerate([10.0, 20.0, 40.0, 60.0, 80.0, 90.0, 91.0, 92.0, 92.0, 93.0], 1)]
    # after 330 s: 90, 91, 92, 92, 93 -> halves of 2 samples: 90.5 and 92.5 (the fill-up before is left out)
    assert steady_change(points, 330.0) == (90.5, 92.5)
    # a soak too short for a steady part: all of it
    assert steady_change(points[:3], 300.0) == (10.0, 40.0)
    assert warmup_s(600.0, 300) == 300.0 and warmup_s(3600.0, 300) == 900.0


def test_is_flat_allows_the_larger_of_percent_and_bytes() -> None:
    assert is_flat(100 * MB, 109 * MB, 10.0, 16 * MB)
    assert is_flat(10 * MB, 25 * MB, 10.0, 16 * MB)  # 16 MB is more than 10 % of 10 MB
    assert not is_flat(200 * MB, 240 * MB, 10.0, 16 * MB)
    assert is_flat(200 * MB, 100 * MB, 10.0, 16 * MB)  # shrinking is flat


def test_all_targets_met() -> None:
    samples = [sample(60.0 * i, {"capture": 200 * MB, "detect[1]": 300 * MB}) for i in range(1, 9)]
    result = verdicts([totals()], samples, 0, 10.0, 16.0)
    assert all(v.ok for v in result), result
    targets = [v.target for v in result]
    assert targets[:5] == ["processed + dropped == offered", "0 expired in a queue", "0 dead letters",
                           "Redis memory below maxmemory", "Redis memory flat"]
    assert targets[5:] == ["RSS flat: capture", "RSS flat: detect[1]"]
    assert result[0].value == "60 + 40 = 100 of 100"


def test_each_failure_is_named() -> None:
    growing = [sample(60.0 * i, {"capture": (200 + 20 * i) * MB}, redis_used=(10 + 30 * i) * MB, expired=i, dead=1)
               for i in range(1, 9)]
    result = {v.target: v for v in verdicts([totals(processed=50, expired=8)], growing, 1, 10.0, 16.0)}
    failed = {t for t, v in result.items() if not v.ok}
    assert failed == {"processed + dropped == offered", "0 expired in a queue", "0 dead letters", "Redis memory flat",
                      "RSS flat: capture"}, result
    assert "expired 8" in result["processed + dropped == offered"].detail
    assert result["0 expired in a queue"].detail == "most seen while running: 8"


def test_a_run_left_unfinished_or_redis_at_its_limit_fails() -> None:
    full = [sample(60.0 * i, {}, redis_used=256 * MB) for i in range(1, 5)]
    result = {v.target: v for v in verdicts([totals(status="running")], full, 0, 10.0, 16.0)}
    assert not result["processed + dropped == offered"].ok
    assert not result["Redis memory below maxmemory"].ok
    assert not verdicts([], full, 0, 10.0, 16.0)[0].ok  # no run at all is not a pass
