"""A video file cut short still opens: `genesis run` must say that it ended before its declared
length (frames read vs declared) in the summary, the report and the run's meta; a whole file must not."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.e2e.conftest import CLI

CLIP = "seeed_people-walking_overhead.mp4"
"""Its index (moov) comes before the frames, so a copy cut short still opens and declares 341 frames."""


def _meta(tmp_path: Path, run_id: str) -> dict[str, object]:
    engine = create_engine(f"sqlite:///{tmp_path / 'genesis.db'}")
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT meta FROM runs WHERE id = :id"), {"id": run_id}).scalar_one()
    engine.dispose()
    meta: dict[str, object] = json.loads(raw) if isinstance(raw, str) else raw
    return meta


def test_a_truncated_file_is_reported_and_a_whole_one_is_not(cli: CLI, tmp_path: Path, data_dir: Path) -> None:
    whole = data_dir / "video" / CLIP
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 3])  # about the first 107 of 341 frames

    proc = cli("run", "--source", str(cut), "--stride", "4", "--out", str(tmp_path / "cut"))
    assert proc.returncode == 0
    assert "warning: the source ended early" in proc.stdout, proc.stdout
    run = json.loads((tmp_path / "cut" / "report.json").read_text())["run"]
    assert run["frames_declared"] == 86  # ceil(341 / 4)
    assert 20 <= run["frames_read"] == run["frames_processed"] < 40
    assert f"{run['frames_read']} of the 86 frames" in run["warning"]
    meta = _meta(tmp_path, run["run_id"])
    assert meta["frames_declared"] == 86 and meta["frames_read"] == run["frames_read"]

    # The whole file (its header says 341 frames, it holds 340): no warning.
    proc = cli("run", "--source", str(whole), "--stride", "4", "--out", str(tmp_path / "whole"))
    assert "warning" not in proc.stdout, proc.stdout
    run = json.loads((tmp_path / "whole" / "report.json").read_text())["run"]
    assert (run["frames_declared"], run["frames_read"]) == (86, 85) and "warning" not in run
