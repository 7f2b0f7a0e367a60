"""``python -m genesis.bench cameras`` on a short clip: real workers, both clips, gating off and on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from genesis.bench.cameras import WHERE
from tests.services import redis_url


def test_bench_cameras_short_run(models_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_") or k.startswith("GENESIS_TEST_")}
    env["GENESIS_MODELS_DIR"] = str(models_dir)
    cmd = [sys.executable, "-m", "genesis.bench", "cameras", "--source",
           str(data_dir / "video" / "opencv4nodejs_people.mp4"), "--frames", "8", "--still-s", "3", "--walk-s", "1",
           "--cycles", "1", "--presets", "default", "--detect-workers", "1", "--broker", redis_url(12),
           "--frames-redis", redis_url(13)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    rows = [ln for ln in out.splitlines() if ln.startswith("| default") and ("moving" in ln or "static" in ln)]
    split = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    cells = [c for c in split if len(c) == 11]
    where = [c[:-1] for c in split if len(c) == 3 + len(WHERE) + 2]  # less the bench's own drain polling
    assert len(cells) == 4 and len(where) == 4, out  # 2 clips x gating off/on, in both tables
    calls = {c[2]: int(c[4]) for c in cells if c[1] == "mostly static"}  # gating -> detector calls
    calls_on, calls_off = calls["on"], calls["off"]
    # 4 s at 5 fps, 3 s of it still: the first frame, a forced detection every 2 s and the walk are detected
    assert calls_off == 20 and calls_on * 2 <= calls_off, (calls_on, calls_off)
    assert re.search(r"default, mostly static: [\d.]+x fewer detector calls", out), out
    assert re.search(r"\| default \| +onnx:yolov8n_int8.onnx \| +[\d.]+ \|", out), out
    # Where the CPU of a frame goes: every step measured, adding up to the row's total.
    total = {(c[1], c[2]): float(c[6]) for c in cells}
    for c in where:
        step = dict(zip(WHERE, map(float, c[3:-1]), strict=True))
        assert all(v >= 0 for v in step.values()), c
        assert step["read+decode"] > 0 and step["inference"] > 0 and step["sequence"] > 0, c
        assert abs(sum(step.values()) - total[(c[1], c[2])]) <= 0.1 * total[(c[1], c[2])] + 2, (c, total)
        if c[2] == "off":
            assert step["encode"] > 0 and step["gate"] == 0, c  # every frame is encoded; no gate runs
    inference = {(c[1], c[2]): float(c[3 + WHERE.index("inference")]) for c in where}
    assert inference[("mostly static", "on")] < inference[("mostly static", "off")], inference
