"""Smoke test of the distributed benchmark's pure helpers (the benchmark itself takes minutes:
``python -m genesis.bench.distributed --source VIDEO``, see docs/benchmarks.md)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from rich.console import Console

from genesis.bench.distributed import (
    DistRun,
    NoopDetector,
    Row,
    delayed_sequence_run,
    fmt_breakdown,
    latencies_ms,
    markdown_table,
    median_breakdown,
    percentile,
    ratio_pct,
    summarize,
    summary_table,
)
from genesis.tasks.routing import DETECT, SEQUENCE


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 95, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # order does not matter
        (list(range(1, 21)), 95, 19.05),
    ],
)
def test_percentile_interpolates_like_numpy(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_rejects_no_values_and_bad_q() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)


def test_latencies_pair_frames_by_seq_and_summarize() -> None:
    start = {0: 10.0, 1: 10.2, 2: 10.4, 3: 10.6}
    end = {1: 10.3, 0: 10.1, 3: 10.9}  # frame 2 had no sighting; order of arrival is irrelevant
    ms = latencies_ms(start, end)
    assert ms == pytest.approx([100.0, 100.0, 300.0])
    s = summarize(ms)
    assert s is not None
    assert (s.n, s.p50_ms, s.max_ms) == (3, pytest.approx(100.0), pytest.approx(300.0))
    assert s.p95_ms == pytest.approx(280.0)
    assert "p50 100 ms" in s.describe() and "n=3" in s.describe()
    assert summarize([]) is None


def test_tables_render_every_row_and_escape_markdown() -> None:
    rows = [
        Row("1. throughput", "embedded", "12.00 f/s", "runs 12.00"),
        Row("1. throughput", "distributed", "10.00 f/s", "a | b"),
        Row("2. no-op", "chain", "110.0 f/s"),
    ]
    buf = io.StringIO()
    Console(file=buf, width=200).print(summary_table(rows, "title"))
    text = buf.getvalue()
    for r in rows:
        assert r.measure in text and r.value in text
    assert text.count("1. throughput") == 1  # a part is named once, on its first row
    md = markdown_table(rows).splitlines()
    assert md[0] == "| part | measure | value | detail |" and len(md) == 2 + len(rows)
    assert md[3].startswith("|  | distributed |") and "a \\| b" in md[3]
    assert md[4].startswith("| 2. no-op | chain | 110.0 f/s |")


def test_run_figures() -> None:
    a = DistRun("r1", 100, 0, 0.5, 10.0, {"capture": 0.5, "detect": 8.0}, other_cpu_s=2.0)
    b = DistRun("r2", 100, 0, 0.5, 5.0, {"capture": 0.7, "detect": 6.0})
    assert a.fps == pytest.approx(10.0) and a.capture_fps == pytest.approx(200.0)
    assert a.cpu_ms_per_frame == pytest.approx(85.0)
    assert a.cpu_breakdown() == pytest.approx({"capture": 5.0, "detect": 80.0})
    assert median_breakdown([a, b]) == pytest.approx({"capture": 6.0, "detect": 70.0})
    assert fmt_breakdown({"capture": 5.0, "detect": 80.04}) == "capture 5.0, detect 80.0"
    assert 0.0 < a.other_share <= 0.2
    assert ratio_pct(8.0, 10.0) == "80 %" and ratio_pct(1.0, 0.0) == "n/a"


def _unacked(task: str, args: list[object], eta: str | None) -> str:
    body = base64.b64encode(json.dumps([args, {}, {}]).encode()).decode()
    message = {"body": body, "headers": {"task": task, "eta": eta, "id": "x"}, "properties": {}}
    return json.dumps([message, "recognize", "recognize"])


def test_delayed_sequence_recheck_is_recognised() -> None:
    assert delayed_sequence_run(_unacked(SEQUENCE, ["cam", "run1"], "2030-01-01T00:00:00")) == "run1"
    assert delayed_sequence_run(_unacked(SEQUENCE, ["cam", "run1"], None)) is None  # not delayed
    assert delayed_sequence_run(_unacked(DETECT, [{}, "run1", -1], "2030-01-01T00:00:00")) is None
    assert delayed_sequence_run("not json") is None


def test_noop_detector_finds_nobody() -> None:
    assert NoopDetector().detect(np.zeros((8, 8, 3), dtype=np.uint8)) == []
