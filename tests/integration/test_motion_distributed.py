"""Motion gating in the distributed mode: the capture sends still frames as markers (no pixels stored, no
detect task), the sequencer carries the tracks forward, and the results equal the embedded run's, on a
mostly-static clip."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy

from genesis.adapters.video import VideoSource
from genesis.bench.clips import make_corner_clip, make_static_clip
from genesis.config import MotionConfig
from genesis.stages.motion import MotionGate
from tests.integration.workers import genesis_cli, pipeline_env, workers
from tests.services import redis_url

BROKER = redis_url(12)
FRAMES = redis_url(13)
ARGS = ["--camera", "entrance", "--stride", "5"]  # about 5 fps from the 24 fps source


@pytest.fixture(scope="module")
def env(models_dir: Path, tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[dict[str, str]]:
    out = tmp_path_factory.mktemp("motion")
    with pipeline_env(out, models_dir, data_dir, BROKER, FRAMES, {"gap_timeout_s": 20}) as e:
        e["GENESIS_DETECTOR__MOTION__ENABLED"] = "true"
        e["GENESIS_RECOGNITION__ENABLED"] = "false"
        yield e


@pytest.fixture(scope="module")
def clip(env: dict[str, str], data_dir: Path) -> Path:
    """4 s still, 1 s walk, twice: 240 frames, 48 processed at stride 5."""
    path = Path(env["TEST_OUT_DIR"]) / "static.avi"
    layout = make_static_clip(str(data_dir / "video" / "opencv4nodejs_people.mp4"), path, width=640, still_s=4.0,
                              walk_s=1.0, cycles=2)
    assert layout["frames"] == 240
    return path


@pytest.fixture(scope="module")
def pool(env: dict[str, str]) -> Iterator[None]:
    """The workers, shared by the tests of this module (what differs between them is the capture's settings:
    which frames are still, which have a window, travels in the messages)."""
    specs = [("detect", "detect", 2, "prefork"), ("recognize", "recognize", 1, "solo"), ("store", "store", 1, "solo")]
    with workers(*specs, env=env, log_dir=Path(env["TEST_OUT_DIR"])):
        yield


def test_gated_distributed_run_equals_the_embedded_one(env: dict[str, str], clip: Path, pool: None) -> None:
    out = Path(env["TEST_OUT_DIR"])
    emb_env = dict(env, GENESIS_DATABASE_URL=f"sqlite:///{out}/embedded.db")
    genesis_cli(emb_env, "run", "--source", str(clip), *ARGS, "--out", str(out / "embedded"))
    embedded = json.loads((out / "embedded" / "report.json").read_text())
    static = embedded["run"]["static_frames"]
    frames = embedded["results"]["frames"]
    assert frames == 48 and static >= 30, (frames, static)  # at least 3x fewer detections
    assert embedded["results"]["people"]["peak_in_frame"] >= 5
    text = genesis_cli(env, "capture", "--source", str(clip), *ARGS)
    match = re.search(r"published (\d+), dropped (\d+).*run ([0-9a-f]{32})", text)
    assert match and (int(match[1]), int(match[2])) == (48, 0), text
    genesis_cli(env, "drain", "--timeout", "300")
    genesis_cli(env, "report", "--run", match[3], "--out", str(out / "distributed"))
    report: dict[str, Any] = json.loads((out / "distributed" / "report.json").read_text())
    assert report["run"]["status"] == "finished"
    assert report["results"] == embedded["results"]
    log = (out / "detect.log").read_text()
    assert "Traceback" not in log
    # The still frames travelled as markers: only the moving frames went to detection (the detect messages the
    # capture keeps for a re-send, frame_ttl_s), and once the run is processed the frame store holds none of the
    # run's pixels (the sequencer drops a frame's once the state that covers it is saved).
    still = still_seqs(clip, 5)
    assert len(still) == static, (still, static)
    frames_redis = redis.Redis.from_url(FRAMES)
    sent: set[int] = set()
    for key in frames_redis.scan_iter(match=f"genesis:run:{match[3]}:sent:*"):
        sent |= {int(f["seq"]) for f in json.loads(frames_redis.get(key) or b"{}")["frames"]}
    assert sent and not sent & still and len(sent) == frames - static, (sorted(sent), sorted(still))
    assert not list(frames_redis.scan_iter(match=f"genesis:frame:*:{match[3]}:*"))
    # A person standing still keeps their track through the markers: every track alive at the last detected frame
    # before a still frame (its stored segments span that frame) is alive on the still frame too (per-frame
    # sightings are not stored: a track's segments say from which frame to which it was seen).
    engine = sqlalchemy.create_engine(env["GENESIS_DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT track_id, first_seq, last_seq FROM tracks WHERE run_id = :r"),
                            {"r": match[3]}).all()
    engine.dispose()
    spans: dict[int, tuple[int, int]] = {}
    for track, first, last in rows:
        lo, hi = spans.get(int(track), (int(first), int(last)))
        spans[int(track)] = (min(lo, int(first)), max(hi, int(last)))

    def alive(seq: int) -> set[int]:
        return {t for t, (first, last) in spans.items() if first <= seq <= last}

    assert len(alive(min(still))) >= 3, spans
    for seq in sorted(still):
        detected = max(s for s in range(seq) if s % 5 == 0 and s not in still)
        assert alive(detected) <= alive(seq), (seq, detected, spans)


def still_seqs(clip: Path, stride: int) -> set[int]:
    """The seqs the capture's gate marks still (the same decisions: same pixels, same times)."""
    gate = MotionGate(MotionConfig(enabled=True))
    with VideoSource(str(clip)) as video:
        return {raw.seq for raw in video.frames(stride=stride) if gate.check(raw.image, raw.ts)}


def test_region_detection_distributed_equals_embedded(env: dict[str, str], data_dir: Path, pool: None) -> None:
    """People walk in one corner of an otherwise still 1280x720 camera: most frames are detected in a 640x640
    window around them; the distributed run (the window travels in the frame's message) equals the embedded
    one."""
    out = Path(env["TEST_OUT_DIR"])
    clip = out / "corner.avi"
    layout = make_corner_clip(str(data_dir / "video" / "opencv4nodejs_people.mp4"), clip, seconds=4.0)
    assert layout["frames"] == 96
    renv = dict(env, GENESIS_DETECTOR__MOTION__REGIONS="true")
    emb_env = dict(renv, GENESIS_DATABASE_URL=f"sqlite:///{out}/regions.db")
    genesis_cli(emb_env, "run", "--source", str(clip), *ARGS, "--out", str(out / "regions-embedded"))
    embedded = json.loads((out / "regions-embedded" / "report.json").read_text())
    assert embedded["results"]["frames"] == 20 and embedded["run"]["window_frames"] >= 10, embedded["run"]
    assert embedded["results"]["people"]["tracks"] >= 2
    text = genesis_cli(renv, "capture", "--source", str(clip), *ARGS)
    match = re.search(r"published (\d+), dropped (\d+).*run ([0-9a-f]{32})", text)
    assert match and (int(match[1]), int(match[2])) == (20, 0), text
    genesis_cli(renv, "drain", "--timeout", "300")
    genesis_cli(renv, "report", "--run", match[3], "--out", str(out / "regions-distributed"))
    report = json.loads((out / "regions-distributed" / "report.json").read_text())
    assert report["run"]["status"] == "finished"
    assert report["results"] == embedded["results"]
