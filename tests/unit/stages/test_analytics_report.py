"""A synthetic scene with known answers, from the zone and line logic through the stored rows
to ``report.json`` ``results``: entries, exits, occupancy, dwell, crossings by direction name,
and the per-identity breakdown (a track that leaves the frame and comes back, a track that
flickers on the line, an unknown passer-by)."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesis.adapters.db import IdentityPassages, Repository, TrackRecord
from genesis.config import CameraConfig
from genesis.domain import FrameRef, Sighting, TrackedFrame, TrackedPerson
from genesis.pipeline.report import build_results, entry_of, identity_entry
from genesis.stages.analytics import LineCounter, ZoneCounter
from tests.unit.adapters.test_repository import db_url  # noqa: F401  (the sqlite + postgresql fixture)

W = H = 100
FPS = 10.0


def positions() -> dict[int, dict[int, tuple[float, float]]]:
    """frame -> {track: foot point}."""
    alice: dict[int, tuple[float, float]] = {}
    alice.update({f: (10, 40) for f in range(0, 5)})  # outside the zone, north of the line
    alice.update({f: (50, 40) for f in range(5, 15)})  # in the zone (enters at 6: two frames inside)
    alice.update({f: (50, 60) for f in range(15, 25)})  # crosses the line southwards (counted at 16)
    alice.update({f: (90, 60) for f in range(25, 30)})  # leaves the zone (exit at 26)
    # frames 30-39: out of the picture; she comes back south of the line, inside the zone
    alice.update({f: (50, 60) for f in range(40, 50)})  # enters again at 41
    alice.update({f: (50, 40) for f in range(50, 60)})  # crosses northwards (counted at 51)
    alice.update({f: (10, 40) for f in range(60, 65)})  # leaves the zone (exit at 61)
    bob: dict[int, tuple[float, float]] = {f: (50, 30) for f in range(0, 30)}  # in the zone from frame 1
    bob.update({f: (50, 48.0 if f % 2 else 52.0) for f in range(30, 40)})  # flickers on the line
    bob.update({f: (50, 30) for f in range(40, 65)})  # still inside when the stream ends (exit at 64)
    stranger = {f: (90.0, 90.0) for f in range(0, 65)}
    frames: dict[int, dict[int, tuple[float, float]]] = {f: {} for f in range(65)}
    for tid, path in ((1, alice), (2, bob), (3, stranger)):
        for f, p in path.items():
            frames[f][tid] = p
    return frames


def camera_config() -> CameraConfig:
    return CameraConfig.model_validate({
        "id": "hall",
        "zones": [{"name": "floor", "points": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]}],
        "lines": [{"name": "middle", "start": [0.0, 0.5], "end": [1.0, 0.5], "in_name": "north",
                   "out_name": "south"}],
    })


def store_scene(repo: Repository, camera: CameraConfig, tracks: list[TrackRecord], run_id: str = "r1") -> None:
    """The scene's rows in ``repo`` as run ``r1``, with ``tracks`` as its track segments."""
    zone = ZoneCounter("hall", camera.zones[0], W, H, min_frames=2, lost_after_s=5.0)
    line = LineCounter("hall", camera.lines[0], W, H, min_frames=2)
    sightings, events, crossings = [], [], []
    for f, people in positions().items():
        persons = tuple(TrackedPerson(tid, (x - 5, y - 30, x + 5, y), 0.9) for tid, (x, y) in sorted(people.items()))
        tracked = TrackedFrame(FrameRef("hall", f, f / FPS, f"k{f}", W, H), persons)
        sightings += [Sighting("hall", p.track_id, f, f / FPS, p.box, p.score) for p in persons]
        events += zone.update(tracked)
        crossings += line.update(tracked)
    events += zone.expire(None)
    repo.start_run(run_id, "hall", "synthetic", {"width": W, "height": H, "fps": FPS})
    repo.save_outcome(run_id, sightings, [], events, crossings)
    repo.save_tracks(run_id, tracks)
    peak = max(len(people) for people in positions().values())  # counted live by the run loop
    repo.finish_run(run_id, "finished", 65, {"frames": 65, "first_ts": 0.0, "last_ts": 6.4,
                                           "frame_interval_s": 0.1, "peak_in_frame": peak})


@pytest.fixture()
def results(tmp_path: Path) -> dict[str, object]:
    camera = camera_config()
    with Repository(f"sqlite:///{tmp_path / 'g.db'}") as repo:
        store_scene(repo, camera, [
            TrackRecord("hall", 1, 0, 64, 0.0, 6.4, 55, "alice", 3, 3, 0.2),
            TrackRecord("hall", 2, 0, 64, 0.0, 6.4, 65, "bob", 3, 3, 0.3),
            TrackRecord("hall", 3, 0, 64, 0.0, 6.4, 65, None, 0, 3, None),
        ])
        run = repo.run("r1")
        assert run is not None
        return build_results(repo, run, camera)


def test_zone_counts_occupancy_and_dwell(results: dict[str, object]) -> None:
    (zone,) = results["zones"]  # type: ignore[misc]
    assert zone["entries"] == 3 and zone["exits"] == 3
    assert zone["peak_occupancy"] == 2
    dwell = [2.0, 2.0, 6.3]  # alice twice (0.6->2.6, 4.1->6.1), bob 0.1->6.4
    assert zone["dwell_s"] == {"visits": 3, "mean": round(sum(dwell) / 3, 3), "p95": 6.3, "max": 6.3}
    assert zone["mean_occupancy"] == round(sum(dwell) / 6.5, 3)  # 6.5 s of stream


def test_line_counts_each_way_with_direction_names(results: dict[str, object]) -> None:
    (line,) = results["lines"]  # type: ignore[misc]
    # bob's flicker on the line counts nothing; alice crossed once each way
    assert (line["in"], line["out"], line["in_name"], line["out_name"]) == (1, 1, "north", "south")
    assert line["by_identity"] == {"alice": {"in": 1, "out": 1}}


def test_identity_breakdown(results: dict[str, object]) -> None:
    alice, bob = results["identities"]  # type: ignore[misc]
    assert alice["name"] == "alice" and bob["name"] == "bob"
    assert alice["zones"] == {"floor": {"visits": 2, "dwell_s": 4.0, "mean_dwell_s": 2.0, "max_dwell_s": 2.0}}
    assert alice["lines"] == {"middle": {"in": 1, "out": 1}}
    assert (alice["visits"], alice["dwell_s"], alice["crossings"]) == (2, 4.0, {"in": 1, "out": 1})
    assert [(e["t"], e["event"], e.get("zone") or e["direction_name"]) for e in alice["timeline"]] == [
        (0.6, "enter", "floor"), (1.6, "cross", "south"), (2.6, "exit", "floor"),
        (4.1, "enter", "floor"), (5.1, "cross", "north"), (6.1, "exit", "floor"),
    ]
    assert bob["zones"] == {"floor": {"visits": 1, "dwell_s": 6.3, "mean_dwell_s": 6.3, "max_dwell_s": 6.3}}
    assert bob["lines"] == {} and bob["crossings"] == {"in": 0, "out": 0}
    assert results["people"] == {"tracks": 3, "segments": 3, "peak_in_frame": 3, "recognised_tracks": 2,  # type: ignore[comparison-overlap]
                                 "recognised_segments": 2, "identities": 2}


def test_an_identitys_entry_read_from_its_own_tracks_is_the_reports(tmp_path: Path) -> None:
    """What an identity's page reads (its own tracks and their events) gives the entry of the whole report, with
    tracks cut into segments of different people: alice's track is bob's after frame 35, the stranger's is
    alice's from frame 20."""
    camera = camera_config()
    with Repository(f"sqlite:///{tmp_path / 'g.db'}") as repo:
        store_scene(repo, camera, [
            TrackRecord("hall", 1, 0, 34, 0.0, 3.4, 30, "alice", 3, 3, 0.2),
            TrackRecord("hall", 1, 40, 64, 4.0, 6.4, 25, "bob", 3, 3, 0.3, segment=1),
            TrackRecord("hall", 2, 0, 64, 0.0, 6.4, 65, "bob", 3, 3, 0.3),
            TrackRecord("hall", 3, 0, 19, 0.0, 1.9, 20, None, 0, 3, None),
            TrackRecord("hall", 3, 20, 64, 2.0, 6.4, 45, "alice", 3, 3, 0.25, segment=1),
        ])
        run = repo.run("r1")
        assert run is not None
        report = build_results(repo, run, camera)
        assert [i["name"] for i in report["identities"]] == ["alice", "bob"]
        for want in report["identities"]:
            assert identity_entry(repo, run, camera, want["name"]) == want, want["name"]
        assert want["zones"] and want["lines"] and want["timeline"]  # bob's has something of each
        assert identity_entry(repo, run, camera, "carol") is None
        many = set(range(2, 2000))  # past MAX_IN_IDS the filter is applied in Python: the same rows
        assert repo.tracks("r1", many) == [t for t in repo.tracks("r1") if t.track_id != 1]
        assert repo.zone_events("r1", many) == [e for e in repo.zone_events("r1") if e.track_id != 1]
        assert repo.line_crossings("r1", {2}) == [c for c in repo.line_crossings("r1") if c.track_id == 2]


@pytest.mark.parametrize("lookup", ["by key", "by key, one track a read", "joined"])
def test_an_identitys_rows_of_many_runs_in_one_read_are_each_runs_own(db_url: str, lookup: str,  # noqa: F811
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``Repository.identity_rows`` (what an identity's page reads for all its runs at once) gives, for each run,
    what that run's own reads give for the tracks that carry the name, on SQLite and PostgreSQL; a run without
    the name, and a run that is gone, are not in it. The events and crossings are read the same whether looked up
    by key (zone or line, then track) a few tracks at a time or joined with many tracks."""
    from genesis.adapters.db import repository

    if lookup == "by key, one track a read":
        monkeypatch.setattr(repository, "MAX_IN_IDS", 1)
    if lookup == "joined":
        monkeypatch.setattr(repository, "KEYED_IDS", 0)
    camera = camera_config()
    layouts = {
        "r1": [TrackRecord("hall", 1, 0, 34, 0.0, 3.4, 30, "alice", 3, 3, 0.2),
               TrackRecord("hall", 1, 40, 64, 4.0, 6.4, 25, "bob", 3, 3, 0.3, segment=1),
               TrackRecord("hall", 2, 0, 64, 0.0, 6.4, 65, "bob", 3, 3, 0.3),
               TrackRecord("hall", 3, 0, 64, 0.0, 6.4, 65, None, 0, 3, None)],
        "r2": [TrackRecord("hall", 1, 0, 34, 0.0, 3.4, 30, None, 0, 3, None),
               TrackRecord("hall", 1, 40, 64, 4.0, 6.4, 25, "alice", 3, 3, 0.3, segment=1),
               TrackRecord("hall", 2, 0, 64, 0.0, 6.4, 65, "alice", 3, 3, 0.3),
               TrackRecord("hall", 3, 0, 64, 0.0, 6.4, 65, None, 0, 3, None)],
        "r3": [TrackRecord("hall", 1, 0, 64, 0.0, 6.4, 55, "bob", 3, 3, 0.2)],
    }
    with Repository(db_url) as repo:
        for run_id, tracks in layouts.items():
            store_scene(repo, camera, tracks, run_id)
        got = repo.identity_rows(["r3", "r1", "r2", "gone"], "alice")
        assert sorted(got) == ["r1", "r2"]
        for run_id in ("r1", "r2"):
            ids = {t.track_id for t in repo.tracks(run_id) if t.identity == "alice"}
            want = IdentityPassages(repo.tracks(run_id, ids), repo.zone_events(run_id, ids),
                                    repo.line_crossings(run_id, ids))
            assert got[run_id] == want, run_id
            assert got[run_id].zone_events and got[run_id].tracks
        assert got["r2"].crossings  # the path of r2's track 1 crosses the line
        assert repo.identity_rows([], "alice") == {}
        run = repo.run("r2")
        assert run is not None
        report = build_results(repo, run, camera)
        assert [entry_of(camera, "alice", got["r2"])] == [i for i in report["identities"] if i["name"] == "alice"]
        assert sorted(repo.runs_by_id(["r2", "gone", "r1"])) == ["r1", "r2"]
        assert repo.runs_by_id(["r2"])["r2"] == run
