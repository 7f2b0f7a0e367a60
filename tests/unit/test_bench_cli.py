"""``python -m genesis.bench ...`` without the model weights: one line that says what to run, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_bench_without_its_weights_says_so_in_one_line(tmp_path: Path, data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env.update(GENESIS_MODELS_DIR=str(tmp_path / "empty"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "genesis.bench", "storage", "--backends", "sqlite", "--loops", "1",
                           "--source", str(data_dir / "video" / "opencv4nodejs_people.mp4")],
                          check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: weight file ") and "genesis models pull" in lines[0], \
        proc.stderr
    assert "Traceback" not in proc.stderr
