"""Small statistics shared by the stages, the report, the API and the benchmarks (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class Welford:
    """Running mean and variance (Welford's algorithm): the anomaly baseline of one subject and hour."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    @classmethod
    def from_sums(cls, n: int, total: float, total_sq: float) -> Welford:
        """From a count, a sum and a sum of squares (what the database aggregates)."""
        if n <= 0:
            return cls()
        mean = total / n
        return cls(n=n, mean=mean, m2=max(0.0, total_sq - total * mean))


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method: always one of the values (a dwell
    that happened), 0.0 for no values. What the report and the API show."""
    if not values:
        return 0.0
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = -(-q * len(ordered) // 100) if float(q).is_integer() else math.ceil(q * len(ordered) / 100.0)
    return ordered[max(0, int(rank) - 1)]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated linearly between the closest ranks (numpy's default
    ``linear`` method): for measurements (latencies, distances)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def pair_visits(events: Iterable[tuple[K, bool, float]]) -> tuple[list[tuple[K, float, float]], dict[K, float]]:
    """Pair the enters and exits of zone visits, in the order given: ``(key, is_enter, ts)`` in,
    ``([(key, enter_ts, exit_ts) ...], {key: enter_ts of a visit still open})`` out.

    A second enter of an open key restarts its visit; an exit without an enter is ignored. The
    report (one run, event order) and the rollups (many runs, ``seq`` order) both pair with this."""
    opened: dict[K, float] = {}
    closed: list[tuple[K, float, float]] = []
    for key, enter, ts in events:
        if enter:
            opened[key] = ts
        elif key in opened:
            closed.append((key, opened.pop(key), ts))
    return closed, opened
