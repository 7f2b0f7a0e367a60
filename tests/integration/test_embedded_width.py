"""``cameras[].max_width`` in the embedded runner: the run reads the frames at that width, as the capture does
(``tests/integration/test_capture.py``), so every stage and every stored box is in that frame's pixels."""

from __future__ import annotations

from pathlib import Path

from genesis.adapters.db import Repository
from genesis.config import CameraConfig, Settings
from genesis.pipeline.embedded import run_embedded


def test_an_embedded_run_of_a_camera_with_max_width(settings: Settings, data_dir: Path) -> None:
    video = str(data_dir / "video" / "opencv4nodejs_people.mp4")  # 800 x 450
    out = run_embedded(settings, video, CameraConfig(id="small", max_width=400), stride=5, max_frames=6)
    assert (out.report["run"]["width"], out.report["run"]["height"]) == (400, 225)
    with Repository(settings.database_url) as repo:
        run = repo.run(out.run_id)
        assert run is not None and (run.meta["width"], run.meta["height"]) == (400, 225)
        points = repo.points(out.run_id)
    assert points, "nobody found in the shrunk frames"
    assert all(0 <= p.box[0] < p.box[2] <= 400 and 0 <= p.box[1] < p.box[3] <= 225 for p in points)
