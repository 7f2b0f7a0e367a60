"""``python -m genesis.bench soak`` for a few seconds: live MJPEG cameras, a private Redis with maxmemory, real
workers and a real capture process; the sample lines and the verdict table have their shape, and every target holds
(2 cameras at 2 fps is within what one detect child takes here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

LINE = re.compile(
    r"^\[ *\d+:\d\d\] offered (\d+) published (\d+) dropped (\d+) \((.*?)\) processed (\d+) expired (\d+) "
    r"missing (\d+) dead letters (\d+) \| redis ([\d.]+)/(\d+) MB \| RSS MB (.*?) \| camera served (\d+) skipped (\d+)")


def test_bench_soak_short_run(models_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_") or k.startswith("GENESIS_TEST_")}
    env["GENESIS_MODELS_DIR"] = str(models_dir)
    cmd = [sys.executable, "-m", "genesis.bench", "soak", "--cameras", "2", "--fps", "2", "--minutes", "0.15",
           "--interval-s", "3", "--detect-workers", "1", "--redis-maxmemory-mb", "64", "--source",
           str(data_dir / "video" / "seeed_people-walking_overhead.mp4")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    samples = [m for m in map(LINE.match, out.splitlines()) if m]
    assert len(samples) >= 4, out  # three at 3 s intervals (the last at the end), and one after the drain
    for i, m in enumerate(samples):
        assert int(m[10]) == 64  # the private Redis's maxmemory
        names = {part.rsplit(" ", 1)[0] for part in re.findall(r"[\w\[\]]+ \d+", m[11])}
        expected = {"redis", "detect", "detect[1]", "recognize", "store"}
        if i < len(samples) - 1:  # the capture has stopped before the line after the drain
            expected.add("capture")
        assert expected <= names, m[0]
    offered = [int(m[1]) for m in samples]
    assert offered == sorted(offered) and offered[-1] > 0, offered
    after = samples[-1]
    assert int(after[1]) == int(after[2]) + int(after[3]), after[0]  # offered = published + dropped
    assert int(after[5]) == int(after[2]), after[0]  # everything published was processed once drained
    verdict = {c[0]: c for c in ([x.strip() for x in ln.strip("|").split("|")] for ln in out.splitlines()
                                 if ln.startswith("| ") and ln.count("|") == 5)}
    for target in ("drained after the stop", "processed + dropped == offered", "0 expired in a queue", "0 dead letters",
                   "Redis memory below maxmemory", "Redis memory flat", "RSS flat: capture", "RSS flat: detect[1]"):
        assert verdict[target][2] == "ok", verdict.get(target)
    total = re.fullmatch(r"(\d+) \+ (\d+) = (\d+) of (\d+)", verdict["processed + dropped == offered"][1])
    assert total is not None and total[3] == total[4] == after[1], verdict["processed + dropped == offered"]
    assert "VERDICT: all targets met" in out
