"""Pure parts of ``python -m genesis.bench gpu --cameras N``: the detector batch histogram read from /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from genesis.bench.gpu_cameras import BATCH_METRIC, parse_batch_sizes
from genesis.ops.metrics import BATCH_BUCKETS


def test_batch_sizes_from_the_metrics_page() -> None:
    reg = CollectorRegistry()
    h = Histogram(BATCH_METRIC, "frames per detector call", buckets=BATCH_BUCKETS, registry=reg)
    for n in (1, 3, 8, 8, 20):
        h.observe(n)
    sizes = parse_batch_sizes(generate_latest(reg).decode())
    assert sizes is not None
    assert (sizes.calls, sizes.frames, sizes.mean) == (5, 40, 8)
    assert sizes.largest_bound() == 32
    assert sizes.describe() == "≤1: 1, ≤4: 1, ≤8: 2, ≤32: 1"
    assert parse_batch_sizes("genesis_tasks_total 3\n") is None
