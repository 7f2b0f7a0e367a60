"""The doorway reproduction of issue 11, end to end: `genesis enroll` + `genesis run` on a video.

Three people are enrolled from two photos each; five people then step in front of the camera at
the same spot, one after another (10 frames each at 5 fps, 0.6 s of empty background between
them): enrolled A, a stranger, enrolled B, a stranger, enrolled C (held-out photos). ByteTrack
keeps one track through the short gaps. With identity segments every person gets their own name
(or none) and the watch-list alert for B is raised; with the old per-track policy
(``recognition.segments.enabled: false``) the same checks fail: A is "seen" for the whole sequence,
the strangers are counted as A and B and C are never recognised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import pytest

from genesis.backends.faces import build_face_detector
from genesis.config import FaceDetectorConfig
from genesis.eval.video import Person, build_scenario, cut_out, read_background, render, write_video
from tests.e2e.conftest import CLI

FPS = 5.0
ENROLLED = {"daryl": ("daryl1.jpg", "daryl2.jpg", "daryl3.jpg"),
            "negan": ("negan1.jpg", "negan2.jpg", "negan3.jpg"),
            "rick": ("rick1.jpg", "rick2.jpg", "rick3.jpg")}
STRANGERS = ("adams.jpg", "carell.jpg")
ORDER = ["daryl", "stranger-1", "negan", "stranger-2", "rick"]


def make_doorway(path: Path, faces_root: Path, models_dir: Path, background: Path) -> float:
    """Writes the sequence; returns the time (s) between two people stepping in."""
    detector = build_face_detector(FaceDetectorConfig(), models_dir)
    people = []
    for name, (_, _, shown) in ENROLLED.items():
        sprite = cut_out(cv2.imread(str(faces_root / "known" / name / shown)), detector.detect, 56)
        assert sprite is not None
        people.append(Person(name, True, sprite))
    strangers = []
    for i, photo in enumerate(STRANGERS):
        sprite = cut_out(cv2.imread(str(faces_root / "unknown" / photo)), detector.detect, 56)
        assert sprite is not None
        strangers.append(Person(f"stranger-{i + 1}", False, sprite))
    scen = build_scenario("doorway", people, strangers, 640, 360, FPS)
    assert [a.person.label for a in scen.actors] == ORDER
    frames, _ = render(scen, read_background(background, 640, 360))
    write_video(path, frames, FPS)
    return (min(scen.actors[1].path) - min(scen.actors[0].path)) / FPS


def check_names(results: dict[str, Any], period: float) -> None:
    """Every named segment lies within the stay of the person it names; each enrolled person is named."""
    names = {i["name"]: i for i in results["identities"]}
    assert set(names) == {"daryl", "negan", "rick"}, results["tracks"]
    for t in results["tracks"]:
        if t["identity"] == "unknown":
            continue
        k = ORDER.index(t["identity"])
        lo, hi = k * period - 0.05, k * period + 2.0 + 0.05
        assert lo <= t["first_seen"] and t["last_seen"] <= hi, (t, lo, hi)
    for name, ident in names.items():
        assert ident["seen_s"] <= 2.0, (name, ident["seen_s"])


@pytest.mark.parametrize("segments", [True, False], ids=["segments", "old-policy"])
def test_doorway_gives_each_person_their_own_name(cli: CLI, tmp_path: Path, data_dir: Path, models_dir: Path,
                                                  segments: bool) -> None:
    faces = data_dir / "faces"
    for name, (a, b, _) in ENROLLED.items():
        cli("enroll", name, str(faces / "known" / name / a), str(faces / "known" / name / b))
    video = tmp_path / "doorway.mp4"
    period = make_doorway(video, faces, models_dir, data_dir / "video" / "seeed_people-walking_overhead.mp4")
    config = tmp_path / "settings.yaml"
    config.write_text(
        "alerts:\n  watchlist: [negan]\n"
        f"recognition:\n  segments:\n    enabled: {'true' if segments else 'false'}\n", encoding="utf-8")
    out = tmp_path / "out"
    cli("run", "--source", str(video), "--out", str(out), "--camera", "door", "--config", str(config))
    results = json.loads((out / "report.json").read_text())["results"]
    watch = [a for a in results["alerts"]["items"] if a["kind"] == "watchlist"]
    if segments:
        check_names(results, period)
        assert results["people"]["tracks"] < results["people"]["segments"]  # one track, cut into segments
        assert [a["identity"] for a in watch] == ["negan"]
    else:
        # Today's policy: the first name sticks to the track; the strangers are counted as daryl.
        with pytest.raises(AssertionError):
            check_names(results, period)
        daryl = next(i for i in results["identities"] if i["name"] == "daryl")
        assert daryl["seen_s"] > 2 * period
        assert watch == []
