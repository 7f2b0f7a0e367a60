"""What ``CameraEvents`` derives from a stream of outcomes (no broker: the messages themselves):
announcements once, state only on change, the event filter, and a hand-off of its memory between
two workers in the middle of a stream that changes nothing."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from genesis.config import CameraConfig
from genesis.config.mqtt import MqttConfig
from genesis.domain import (
    Direction,
    FrameOutcome,
    FrameRef,
    LineCrossing,
    RecognitionAttempt,
    TrackedFrame,
    TrackedPerson,
    ZoneEvent,
    ZoneEventKind,
)
from genesis.services.mqtt import Message
from genesis.services.mqtt_events import FORGET_AFTER_S, CameraEvents, EventMemory, PassageFacts, Tracks
from genesis.stages.recognize import TrackIdentity

CAMERA = CameraConfig.model_validate({
    "id": "door",
    "zones": [{"name": "front yard", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
    "lines": [{"name": "gate", "start": [0.5, 1.0], "end": [0.5, 0.0], "in_name": "arriving"}],
})


def outcome(seq: int, tracks: list[int], **rows: Any) -> FrameOutcome:
    ref = FrameRef("door", seq, seq / 10, f"k{seq}", 640, 480)
    persons = tuple(TrackedPerson(t, (10.0 * t, 10.0, 10.0 * t + 50, 200.0), 0.9) for t in tracks)
    return FrameOutcome(TrackedFrame(ref, persons), occupancy={"front yard": len(tracks)}, **rows)


def attempt(seq: int, track: int, identity: str | None) -> RecognitionAttempt:
    return RecognitionAttempt("door", track, seq, seq / 10, (1.0, 2.0, 3.0, 4.0), 0.9, identity, 0.3)


class Script:
    """Names and strangers as recognition would decide them, frame by frame."""

    def __init__(self) -> None:
        self.names: dict[int, str | None] = {}
        self.strangers: set[int] = set()

    def identity(self, track: int) -> TrackIdentity:
        return TrackIdentity(self.names.get(track), 2, 3, 0.25)

    def stranger(self, track: int) -> bool:
        return track in self.strangers

    def tracks(self) -> Tracks:
        return Tracks(self.identity, self.stranger)


def stream() -> list[tuple[FrameOutcome, dict[int, str | None], set[int]]]:
    """Track 1 enters, is named alice, renamed bob; track 2 is a stranger; 1 crosses the line."""
    return [
        (outcome(1, [1], zone_events=[ZoneEvent("door", "front yard", 1, ZoneEventKind.ENTER, 1, 0.1)]), {}, set()),
        (outcome(2, [1], attempts=[attempt(2, 1, "alice")]), {1: "alice"}, set()),
        (outcome(3, [1, 2], attempts=[attempt(3, 2, None)]), {1: "alice"}, set()),
        (outcome(4, [1, 2], attempts=[attempt(4, 2, None)]), {1: "alice"}, {2}),
        (outcome(5, [1, 2], attempts=[attempt(5, 2, None), attempt(5, 1, "bob")]), {1: "bob"}, {2}),
        (outcome(6, [1, 2], crossings=[LineCrossing("door", "gate", 1, Direction.IN, 6, 0.6)]), {1: "bob"}, {2}),
        (outcome(7, [1, 2]), {1: "bob"}, {2}),
    ]


def run(config: MqttConfig, hand_off_at: int | None = None) -> list[Message]:
    script = Script()
    events = CameraEvents(config, CAMERA, "run1", 1_700_000_000.0)
    out: list[Message] = []
    for i, (o, names, strangers) in enumerate(stream()):
        if i == hand_off_at:  # another worker takes over with the memory kept in Redis
            events = CameraEvents(config, CAMERA, "run1", 1_700_000_000.0,
                                  EventMemory.from_json(events.memory.to_json()))
        script.names, script.strangers = dict(names), set(strangers)
        out += events.frame(o, script.tracks())
    out += events.end([ZoneEvent("door", "front yard", 1, ZoneEventKind.EXIT, 7, 0.7)], script.tracks())
    return out


def docs(messages: list[Message], suffix: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if m.topic.endswith(suffix)]


def test_announcements_once_and_state_only_on_change() -> None:
    msgs = run(MqttConfig(enabled=True, state_hold_s=0))
    recognised = docs(msgs, "/event/recognised")
    assert [(d["identity"], d["previous_identity"], d["seq"]) for d in recognised] == [
        ("alice", None, 2), ("bob", "alice", 5)]
    (stranger,) = docs(msgs, "/event/unknown_face")
    assert stranger["track_id"] == 2 and stranger["seq"] == 4 and stranger["identity"] is None
    (cross,) = docs(msgs, "/event/line_cross")
    assert (cross["direction"], cross["direction_name"], cross["identity"]) == ("in", "arriving", "bob")
    assert [d["type"] for d in docs(msgs, "/event/zone_enter") + docs(msgs, "/event/zone_exit")] == [
        "zone_enter", "zone_exit"]
    assert docs(msgs, "/event/zone_enter")[0]["at"] == "2023-11-14T22:13:20.100000+00:00"  # origin + ts
    states = docs(msgs, "/state")
    assert [(s["people"], s["identities"], s["unknown"]) for s in states] == [
        (1, [], 1), (1, ["alice"], 0), (2, ["alice"], 1), (2, ["bob"], 1), (0, [], 0)]
    assert states[-1]["active"] is False
    assert all(m.retain for m in msgs if m.topic.split("/")[-2] != "event" and m.topic != "genesis/events")
    assert not any(m.retain for m in msgs if m.topic == "genesis/events")
    assert [m.payload for m in msgs if m.topic == "genesis/door/zone/front_yard/occupancy"] == [b"1", b"2", b"0"]


def test_the_memory_handed_between_workers_changes_nothing() -> None:
    for config in (MqttConfig(enabled=True, state_hold_s=0), MqttConfig(enabled=True, state_hold_s=0.25)):
        whole = run(config)
        for i in range(1, len(stream())):
            assert run(config, hand_off_at=i) == whole, i


def test_event_filter_prefix_and_retain_flag() -> None:
    msgs = run(MqttConfig(enabled=True, events=["alert", "line_cross"], topic_prefix="home/cams",
                          retain_state=False))
    kinds = {m.topic.rsplit("/", 1)[1] for m in msgs if "/event/" in m.topic}
    assert kinds == {"line_cross"}
    assert all(m.topic.startswith("home/cams/door/") or m.topic == "home/cams/events" for m in msgs)
    assert not any(m.retain for m in msgs)


def test_tracks_unseen_for_long_are_forgotten() -> None:
    events = CameraEvents(MqttConfig(enabled=True), CAMERA, "run1", 0.0)
    script = Script()
    script.names = {1: "alice"}
    events.frame(outcome(1, [1]), script.tracks())
    assert events.memory.named == {1: "alice"}
    late = outcome(2, [])
    late.tracked = TrackedFrame(FrameRef("door", 2, FORGET_AFTER_S + 1.0, "k", 640, 480), ())
    events.frame(late, script.tracks())
    assert events.memory.named == {} and events.memory.seen == {}


# -- the passage lifecycle ----------------------------------------------------------------------


class Segments:
    """Identity segments as recognition would have them: track 1 is alice, then (a face says it
    changed hands at frame 5) someone else; track 2 a stranger, lost after frame 4."""

    def __init__(self) -> None:
        self.table: dict[int, list[PassageFacts]] = {}

    def of(self, track: int) -> list[PassageFacts]:
        return list(self.table.get(track, []))


def lifecycle_stream() -> list[tuple[FrameOutcome, dict[int, list[PassageFacts]]]]:
    a0 = PassageFacts(0, 0.1, 0.1, None, False)
    named = PassageFacts(0, 0.1, 0.3, "alice", False, votes=2, distance=0.3)
    cut = PassageFacts(0, 0.1, 0.4, "alice", False, end_reason="face", votes=2, distance=0.3)
    a1 = PassageFacts(1, 0.5, 0.5, None, False)
    s0 = PassageFacts(0, 0.2, 0.2, None, False)
    s0x = PassageFacts(0, 0.2, 0.4, None, True)
    enter = ZoneEvent("door", "front yard", 1, ZoneEventKind.ENTER, 2, 0.2)
    return [
        (outcome(1, [1]), {1: [a0]}),
        (outcome(2, [1, 2], zone_events=[enter]), {1: [a0], 2: [s0]}),
        (outcome(3, [1, 2]), {1: [named], 2: [s0]}),
        (outcome(4, [1, 2]), {1: [named], 2: [s0x]}),
        (outcome(5, [1]), {1: [cut, a1], 2: [s0x]}),
        (outcome(6, [1]), {1: [cut, a1], 2: [s0x]}),
        (outcome(7, [1]), {1: [cut, a1], 2: [s0x]}),
        (outcome(8, []), {1: [cut, a1], 2: [s0x]}),
    ]


def run_lifecycle(config: MqttConfig, hand_off_at: int | None = None) -> list[Message]:
    segments = Segments()
    events = CameraEvents(config, CAMERA, "run1", 1_700_000_000.0)
    out: list[Message] = []

    def identity(track: int) -> TrackIdentity:
        segs = segments.of(track)
        return TrackIdentity(segs[-1].identity if segs else None, 2, 3, 0.3)

    tracks = Tracks(identity, lambda t: bool(segments.of(t)) and segments.of(t)[-1].unknown, segments.of,
                    lost_after_s=0.25)
    for i, (o, table) in enumerate(lifecycle_stream()):
        if i == hand_off_at:
            events = CameraEvents(config, CAMERA, "run1", 1_700_000_000.0,
                                  EventMemory.from_json(events.memory.to_json()))
        segments.table = table
        out += events.frame(o, tracks)
    out += events.end([], tracks)
    return out


def test_one_id_per_passage_new_update_end_with_before_and_after() -> None:
    msgs = run_lifecycle(MqttConfig(enabled=True))
    life = [json.loads(m.payload) for m in msgs if m.topic == "genesis/events"]
    assert all(not m.retain for m in msgs if m.topic == "genesis/events")
    steps = [(d["type"], d["after"]["id"]) for d in life]
    assert steps == [
        ("new", "run1-1-0"),
        ("update", "run1-1-0"), ("new", "run1-2-0"),  # track 1 entered the zone; track 2 appears
        ("update", "run1-1-0"),  # named alice
        ("update", "run1-2-0"),  # a stranger
        ("end", "run1-1-0"), ("new", "run1-1-1"),  # a face said the track changed hands
        ("end", "run1-2-0"),  # unseen longer than the tracker keeps it
        ("end", "run1-1-1"),  # the stream ended
    ]
    for d in life:
        assert set(d) == {"type", "before", "after"} and d["before"]["id"] == d["after"]["id"]
        assert d["after"]["camera"] == "door" and d["after"]["label"] == "person"
        assert not any(k.startswith("_") for k in d["after"])
    new1 = life[0]
    assert new1["before"] == new1["after"] and new1["after"]["end_time"] is None
    assert new1["after"]["start_time"] == 1_700_000_000.1
    zone = life[1]
    assert (zone["before"]["current_zones"], zone["after"]["current_zones"]) == ([], ["front yard"])
    assert zone["after"]["entered_zones"] == ["front yard"]
    named = life[3]
    assert (named["before"]["identity"], named["after"]["identity"], named["after"]["sub_label"]) == (
        None, "alice", "alice")
    stranger = life[4]
    assert (stranger["before"]["unknown"], stranger["after"]["unknown"]) == (False, True)
    end1 = life[5]
    assert end1["after"]["end_reason"] == "face" and end1["after"]["end_time"] == 1_700_000_000.4
    assert end1["after"]["identity"] == "alice"
    new_seg = life[6]["after"]
    assert new_seg["identity"] is None and new_seg["start_time"] == 1_700_000_000.5
    assert new_seg["current_zones"] == ["front yard"]  # the track is where it was
    lost = life[7]
    assert lost["after"]["end_reason"] == "lost" and lost["after"]["end_time"] == 1_700_000_000.4
    assert life[8]["after"]["end_reason"] == "stream_end"
    # every passage: exactly one new and one end, new first
    ids = {i for _, i in steps}
    for pid in ids:
        kinds = [k for k, i in steps if i == pid]
        assert kinds[0] == "new" and kinds[-1] == "end" and kinds.count("new") == kinds.count("end") == 1


def test_the_lifecycle_survives_a_hand_off_and_can_be_turned_off() -> None:
    config = MqttConfig(enabled=True)
    whole = run_lifecycle(config)
    for i in range(1, len(lifecycle_stream())):
        assert run_lifecycle(config, hand_off_at=i) == whole, i
    off = run_lifecycle(MqttConfig(enabled=True, lifecycle=False))
    assert not any(m.topic.endswith("/events") for m in off)


# -- the debounced retained state ---------------------------------------------------------------


def flicker_run(hold: float) -> list[tuple[float, bytes]]:
    """One person in view for 6 s at 10 fps whose detection drops out for one frame in three
    during the first two seconds, then leaves; the people count as published, with the time."""
    events = CameraEvents(MqttConfig(enabled=True, state_hold_s=hold), CAMERA, "run1", 0.0)
    script = Script()
    out: list[tuple[float, bytes]] = []
    for seq in range(1, 81):
        in_view = seq <= 60 and not (seq <= 20 and seq % 3 == 0)
        o = outcome(seq, [1] if in_view else [])
        out += [(seq / 10, m.payload) for m in events.frame(o, script.tracks()) if m.topic == "genesis/door/people"]
    out += [(8.0, m.payload) for m in events.end([], script.tracks()) if m.topic == "genesis/door/people"]
    return out


def test_the_people_count_over_a_flickering_detection_changes_at_most_once_per_hold_time() -> None:
    raw = flicker_run(0.0)
    assert len(raw) > 10  # without a hold, every flicker is published
    assert MqttConfig().state_hold_s == 1.0
    held = flicker_run(1.0)
    assert [v for _, v in held] == [b"1", b"0"]
    times = [t for t, _ in held]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    assert times == [pytest.approx(2.9), pytest.approx(7.1)]  # 1 s after the last flicker (1.8), 1 s after leaving


def test_the_end_of_the_stream_publishes_at_once() -> None:
    events = CameraEvents(MqttConfig(enabled=True, state_hold_s=5.0), CAMERA, "run1", 0.0)
    script = Script()
    msgs = events.frame(outcome(1, [1]), script.tracks()) + events.end([], script.tracks())
    states = docs(msgs, "/state")
    assert [(s["people"], s["active"]) for s in states] == [(0, False)]
    assert [m.payload for m in msgs if m.topic == "genesis/door/people"] == [b"0"]


def test_discovery_says_where_availability_is() -> None:
    events = CameraEvents(MqttConfig(enabled=True, discovery=True, topic_prefix="home/g"), CAMERA, "run1", 0.0)
    configs = {m.topic: json.loads(m.payload) for m in events.discovery()}
    assert set(configs) == {"homeassistant/sensor/genesis_door_people/config",
                            "homeassistant/sensor/genesis_door_zone_front_yard/config",
                            "homeassistant/camera/genesis_door_person_snapshot/config"}
    for doc in configs.values():
        assert (doc["availability_topic"], doc["payload_available"], doc["payload_not_available"]) == (
            "home/g/available", "online", "offline")
    assert configs["homeassistant/camera/genesis_door_person_snapshot/config"]["topic"] == "home/g/door/person/snapshot"
    off = CameraEvents(MqttConfig(enabled=True, snapshot={"enabled": False}), CAMERA, "run1", 0.0)
    assert not any("/camera/" in m.topic for m in off.discovery())


def test_a_remembered_passage_of_the_wrong_shape_is_dropped_not_trusted() -> None:
    events = CameraEvents(MqttConfig(enabled=True), CAMERA, "run1", 0.0)
    script = Script()
    events.frame(outcome(1, [1]), script.tracks())
    raw = json.loads(events.memory.to_json())
    assert set(raw["passages"]) == {"1"}
    raw["passages"]["2"] = {"id": "x", "segment": "0"}  # tampered with, or another version's
    raw["passages"]["3"] = ["not", "a", "passage"]
    memory = EventMemory.from_json(json.dumps(raw))
    assert set(memory.passages) == {1}
    resumed = CameraEvents(MqttConfig(enabled=True), CAMERA, "run1", 0.0, memory)
    msgs = resumed.frame(outcome(2, [1]), script.tracks()) + resumed.end([], script.tracks())
    assert [json.loads(m.payload)["type"] for m in msgs if m.topic == "genesis/events"] == ["end"]


def test_a_face_snapshot_is_the_kept_crop_or_smaller_where_max_side_says() -> None:
    """`crop: face` publishes the kept face crop's bytes as they are; where `snapshot.max_side` is smaller
    than the crop, a smaller JPEG of it; a crop that is not a JPEG is an error (the snapshot is skipped)."""
    import cv2
    import numpy as np

    from genesis.config.mqtt import MqttSnapshotConfig
    from genesis.services.mqtt_events import face_snapshot

    image = np.random.default_rng(3).integers(0, 255, (160, 120, 3), dtype=np.uint8)
    crop = cv2.imencode(".jpg", image)[1].tobytes()
    assert face_snapshot(crop, MqttSnapshotConfig(crop="face")) == crop
    small = cv2.imdecode(np.frombuffer(face_snapshot(crop, MqttSnapshotConfig(crop="face", max_side=64)), np.uint8),
                         cv2.IMREAD_COLOR)
    assert small is not None and small.shape == (64, 48, 3)
    with pytest.raises(ValueError, match="not a JPEG"):
        face_snapshot(b"nonsense", MqttSnapshotConfig(crop="face"))
