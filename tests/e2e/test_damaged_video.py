"""A video file damaged in the middle: `genesis run` reads past the damage and says what it cost
(issue 23, item 7). The old reader stopped at the damage and read 34 of the 85 frames."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import CLI
from tests.e2e.test_truncated_video import _meta
from tests.unit.adapters.test_video_damage import damaged_copy


def test_a_damaged_file_is_read_past_the_damage_and_counted(cli: CLI, tmp_path: Path, data_dir: Path) -> None:
    source = damaged_copy(data_dir, tmp_path)
    proc = cli("run", "--source", str(source), "--stride", "4", "--out", str(tmp_path / "out"))
    assert "damaged in 1 place" in proc.stdout and "ended early" not in proc.stdout, proc.stdout
    run = json.loads((tmp_path / "out" / "report.json").read_text())["run"]
    assert run["frames_declared"] == 86
    assert 75 <= run["frames_read"] == run["frames_processed"]
    assert run["damaged_places"] == 1 and run["frames_damaged"] >= 2
    meta = _meta(tmp_path, run["run_id"])
    assert (meta["frames_damaged"], meta["damaged_places"]) == (run["frames_damaged"], 1)
    assert meta["last_ts"] > 13.0  # the end of the 13.6 s clip was read
