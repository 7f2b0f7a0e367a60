"""End to end: `genesis enroll` + `genesis run` on a video made of photos of enrolled people.

The slideshow shows held-out photos (not the enrollment ones) of three enrolled people and
one stranger; the run must recognise exactly the three, keep the stranger unknown, and a
second run must give identical ``results``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from tests.e2e.conftest import CLI

FPS = 10
SECONDS_PER_PHOTO = 2.0
W, H = 640, 480


def letterboxed(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, path
    scale = min(W / img.shape[1], H / img.shape[0])
    resized = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((H, W, 3), 40, dtype=np.uint8)
    y = (H - resized.shape[0]) // 2
    x = (W - resized.shape[1]) // 2
    canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return canvas


def write_slideshow(path: Path, photos: list[Path]) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (W, H))
    assert writer.isOpened()
    blank = np.full((H, W, 3), 40, dtype=np.uint8)
    for p in photos:
        frame = letterboxed(p)
        for _ in range(int(FPS * SECONDS_PER_PHOTO)):
            writer.write(frame)
        for _ in range(2 * FPS):  # a gap longer than the tracker keeps a lost track: one track per photo
            writer.write(blank)
    writer.release()


def test_enroll_then_run_recognises_exactly_the_enrolled(cli: CLI, tmp_path: Path, data_dir: Path,
                                                         shared_dir: Path) -> None:
    known = data_dir / "faces" / "known"
    faces = shared_dir / "models" / "faces"
    enrolment = {
        "daryl": [known / "daryl" / "daryl1.jpg", known / "daryl" / "daryl3.jpg"],
        "negan": [known / "negan" / "negan1.jpg", known / "negan" / "negan3.jpg"],
        "obama": [faces / "obama.jpg", faces / "obama2.jpg"],
        "biden": [faces / "biden.jpg"],  # enrolled but never shown
    }
    for name, photos in enrolment.items():
        proc = cli("enroll", name, *map(str, photos))
        assert f"enrolled {name}" in proc.stdout
    listing = cli("identities").stdout
    for name in enrolment:
        assert name in listing

    video = tmp_path / "slideshow.mp4"
    shown = [known / "daryl" / "daryl2.jpg", known / "negan" / "negan2.jpg", faces / "obama1.jpg",
             data_dir / "faces" / "unknown" / "carell.jpg"]
    write_slideshow(video, shown)

    reports = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        proc = cli("run", "--source", str(video), "--out", str(out), "--camera", "slides")
        assert "Identities" in proc.stdout
        reports.append(json.loads((out / "report.json").read_text()))
        assert (out / "heatmap_slides.png").is_file()

    results = reports[0]["results"]
    names = {i["name"] for i in results["identities"]}
    assert names == {"daryl", "negan", "obama"}, results["tracks"]
    assert results["people"]["tracks"] >= 4
    unknown_tracks = [t for t in results["tracks"] if t["identity"] == "unknown" and t["frames"] >= 10]
    assert unknown_tracks, "the stranger's track should be there and unknown"
    for ident in results["identities"]:
        assert ident["sightings"] >= 5
    assert reports[0]["results"] == reports[1]["results"]
    assert reports[0]["run"]["run_id"] != reports[1]["run"]["run_id"]

    # The stored rows alone give the same results (what the distributed mode relies on).
    cli("report", "--camera", "slides", "--out", str(tmp_path / "stored"))
    stored = json.loads((tmp_path / "stored" / "report.json").read_text())
    assert stored["results"] == reports[1]["results"]
    assert stored["run"]["run_id"] == reports[1]["run"]["run_id"]
