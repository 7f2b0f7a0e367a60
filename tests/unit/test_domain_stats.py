"""The small statistics every layer shares (one definition each)."""

from __future__ import annotations

import numpy as np
import pytest

from genesis.domain.stats import Welford, nearest_rank, pair_visits, percentile


@pytest.mark.parametrize("n", [1, 2, 3, 19, 20, 21, 99, 100, 101, 1000])
def test_nearest_rank_is_a_value_at_the_rank(n: int) -> None:
    values = [float(v) for v in range(n, 0, -1)]
    p95 = nearest_rank(values, 95)
    assert p95 in values
    assert sum(v <= p95 for v in values) >= 0.95 * n > sum(v < p95 for v in values)
    assert nearest_rank([], 95) == 0.0


@pytest.mark.parametrize("q", [0, 5, 50, 95, 100])
def test_percentile_interpolates_like_numpy(q: float) -> None:
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    with pytest.raises(ValueError):
        percentile([], q)


def test_welford_matches_the_two_pass_figures() -> None:
    xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    w = Welford()
    for x in xs:
        w.add(x)
    assert w.mean == pytest.approx(np.mean(xs)) and w.std == pytest.approx(np.std(xs, ddof=1))
    s = Welford.from_sums(len(xs), sum(xs), sum(x * x for x in xs))
    assert (s.n, s.mean, s.std) == pytest.approx((w.n, w.mean, w.std))


def test_visits_pair_enters_and_exits_per_key() -> None:
    events = [("a", True, 1.0), ("b", True, 2.0), ("a", False, 3.0), ("b", False, 4.0), ("c", False, 5.0),
              ("a", True, 6.0), ("a", True, 7.0)]
    closed, still_open = pair_visits(events)
    assert closed == [("a", 1.0, 3.0), ("b", 2.0, 4.0)]  # an exit without an enter is ignored
    assert still_open == {"a": 7.0}  # a second enter restarts the open visit
