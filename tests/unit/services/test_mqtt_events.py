"""What ``CameraEvents`` derives from a stream of outcomes (no broker: the messages themselves):
announcements once, state only on change, the event filter, and a hand-off of its memory between
two workers in the middle of a stream that changes nothing."""

from __future__ import annotations

import json
from typing import Any

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
from genesis.services.mqtt_events import FORGET_AFTER_S, CameraEvents, EventMemory, Tracks
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
