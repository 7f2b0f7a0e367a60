"""The identity breakdown on a real run: a recognised person who appears, goes away and comes
back is one identity with two visits of the zone, in the summary and in ``report.json``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import CLI
from tests.e2e.test_run_slideshow import SECONDS_PER_PHOTO, write_slideshow


def test_identity_breakdown_of_a_returning_person(cli: CLI, tmp_path: Path, data_dir: Path) -> None:
    known = data_dir / "faces" / "known" / "daryl"
    cli("enroll", "daryl", str(known / "daryl1.jpg"), str(known / "daryl3.jpg"))
    video = tmp_path / "visits.mp4"
    # daryl, a stranger, daryl again (other photos than the enrolled ones)
    write_slideshow(video, [known / "daryl2.jpg", data_dir / "faces" / "unknown" / "carell.jpg",
                            known / "daryl4.jpg"])
    out = tmp_path / "out"
    proc = cli("run", "--source", str(video), "--camera", "hall", "--out", str(out),
               "--zone", "frame:0,0,1,0,1,1,0,1")
    assert "Identity breakdown" in proc.stdout, proc.stdout
    res = json.loads((out / "report.json").read_text())["results"]
    (daryl,) = res["identities"]
    assert daryl["name"] == "daryl" and len(daryl["tracks"]) == 2, res["tracks"]
    zone = daryl["zones"]["frame"]
    assert zone["visits"] == 2 == daryl["visits"]
    # each visit lasts about as long as the photo is shown (less the frames the hysteresis needs)
    assert 2 * (SECONDS_PER_PHOTO - 0.6) <= zone["dwell_s"] <= 2 * SECONDS_PER_PHOTO
    assert zone["max_dwell_s"] <= SECONDS_PER_PHOTO and zone["mean_dwell_s"] == round(zone["dwell_s"] / 2, 3)
    events = [(e["event"], e["track"]) for e in daryl["timeline"]]
    first, second = daryl["tracks"]
    assert events == [("enter", first), ("exit", first), ("enter", second), ("exit", second)]
    (frame_zone,) = res["zones"]
    assert frame_zone["entries"] == 3  # the stranger visits too, but is nobody's in the breakdown
    assert set(frame_zone["by_identity"]) == {"daryl"}
