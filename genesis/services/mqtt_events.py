"""What Genesis publishes over MQTT: the events and retained state of one camera (docs/mqtt.md).

``CameraEvents`` turns the ordered stage's outcome of each frame (in ``seq`` order) into
messages; it has no I/O. Its memory (which tracks were announced, the last state published) is
a small JSON document, so the distributed sequencer can keep it in Redis between passes and
hand it from one worker to the next. Every event carries an ``id`` that depends only on the run
and the frame: a frame processed twice (a sequencer killed before saving its state) publishes
the same ids again, which subscribers can deduplicate on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from genesis.config import CameraConfig, Settings
from genesis.config.mqtt import MqttConfig
from genesis.domain import FrameOutcome, ZoneEvent, ZoneEventKind
from genesis.domain.alerts import NO_TRACK, alert_key
from genesis.services.mqtt import Message, MqttPublisher
from genesis.stages.alerts import EPOCH_TS
from genesis.stages.camera import CameraState
from genesis.stages.recognize import TrackIdentity

IdentityOf = Callable[[int], TrackIdentity]
"""The current identity of a track (``CameraState.recognizer.identity``)."""
IsStranger = Callable[[int], bool]
"""True once recognition has given up naming a track (its faces match nobody)."""

FORGET_AFTER_S = 600.0
"""A track unseen for this long (stream time) leaves the memory (tracker ids are not reused)."""

MQTT_MEMORY_TTL_S = 7 * 86400
"""The distributed mode's memory of a run lives in Redis this long after its last pass."""




_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def topic_level(name: str) -> str:
    """A zone or line name as one topic level: only letters, digits, ``_ . -`` (others become ``_``)."""
    return _UNSAFE.sub("_", name) or "_"


def event_id(run_id: str, kind: str, subject: str, track_id: int, seq: int) -> str:
    raw = f"{run_id}|{kind}|{subject}|{int(track_id)}|{int(seq)}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(slots=True)
class EventMemory:
    """What ``CameraEvents`` remembers between frames (JSON: ``to_json``/``from_json``)."""

    named: dict[int, str] = field(default_factory=dict)
    """Per track: the identity last announced by a ``recognised`` event."""
    strangers: set[int] = field(default_factory=set)
    """Tracks announced by an ``unknown_face`` event."""
    seen: dict[int, float] = field(default_factory=dict)
    """Per remembered track: the last ts it was in view."""
    state: str = ""
    """The last state published (its change key)."""
    scalars: dict[str, str] = field(default_factory=dict)
    """The last value of each retained scalar topic."""
    discovered: bool = False
    last_seq: int = -1
    last_ts: float = 0.0

    def to_json(self) -> str:
        return json.dumps({
            "named": {str(k): v for k, v in self.named.items()},
            "strangers": sorted(self.strangers),
            "seen": {str(k): v for k, v in self.seen.items()},
            "state": self.state, "scalars": self.scalars, "discovered": self.discovered,
            "last_seq": self.last_seq, "last_ts": self.last_ts,
        }, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> EventMemory:
        if not raw:
            return cls()
        d = json.loads(raw)
        return cls(
            named={int(k): str(v) for k, v in d.get("named", {}).items()},
            strangers={int(t) for t in d.get("strangers", [])},
            seen={int(k): float(v) for k, v in d.get("seen", {}).items()},
            state=str(d.get("state", "")),
            scalars={str(k): str(v) for k, v in d.get("scalars", {}).items()},
            discovered=bool(d.get("discovered", False)),
            last_seq=int(d.get("last_seq", -1)),
            last_ts=float(d.get("last_ts", 0.0)),
        )


class CameraEvents:
    """The MQTT messages of one camera's run, frame by frame."""

    def __init__(self, config: MqttConfig, camera: CameraConfig, run_id: str, time_origin: float,
                 memory: EventMemory | None = None) -> None:
        self.config = config
        self.camera = camera
        self.run_id = run_id
        self.time_origin = time_origin
        self.memory = memory or EventMemory()
        self.base = f"{config.topic_prefix}/{camera.id}"
        self._kinds = set(config.events)
        self._zones = {z.name: z for z in camera.zones}
        self._lines = {ln.name: ln for ln in camera.lines}

    # -- helpers --------------------------------------------------------------------------------

    def _at(self, ts: float) -> str:
        epoch = ts if ts >= EPOCH_TS else self.time_origin + ts
        return datetime.fromtimestamp(epoch, UTC).isoformat()

    def _event(self, kind: str, subject: str, track_id: int, seq: int, ts: float,
               body: dict[str, Any], id_: str | None = None) -> Message | None:
        if kind not in self._kinds:
            return None
        doc = {"id": id_ or event_id(self.run_id, kind, subject, track_id, seq), "type": kind,
               "camera_id": self.camera.id, "run_id": self.run_id,
               "track_id": None if track_id == NO_TRACK else track_id, "seq": seq, "ts": round(ts, 6),
               "at": self._at(ts), **body}
        return Message(f"{self.base}/event/{kind}", _dumps(doc))

    def _retained(self, topic: str, payload: bytes) -> Message:
        return Message(topic, payload, retain=self.config.retain_state)

    # -- frames ---------------------------------------------------------------------------------

    def frame(self, outcome: FrameOutcome, identity_of: IdentityOf, is_stranger: IsStranger) -> list[Message]:
        """The messages of one processed frame (call in ``seq`` order)."""
        frame = outcome.tracked.frame
        seq, ts = frame.seq, frame.ts
        out: list[Message | None] = []
        mem = self.memory
        if self.config.discovery and not mem.discovered:
            out.extend(self.discovery())
            mem.discovered = True
        names: dict[int, str | None] = {}
        for p in outcome.tracked.persons:
            ident = identity_of(p.track_id)
            names[p.track_id] = ident.identity
            mem.seen[p.track_id] = ts
            if ident.identity is not None and mem.named.get(p.track_id) != ident.identity:
                previous = mem.named.get(p.track_id)
                mem.named[p.track_id] = ident.identity
                out.append(self._event("recognised", ident.identity, p.track_id, seq, ts, {
                    "identity": ident.identity, "previous_identity": previous, "votes": ident.votes,
                    "attempts": ident.attempts, "distance": _round(ident.best_distance),
                    "box": _box(p.box),
                }))
        attempted = {a.track_id: a for a in outcome.attempts}
        for tid, attempt in sorted(attempted.items()):
            if tid in mem.strangers or names.get(tid, attempt.identity) is not None or not is_stranger(tid):
                continue
            mem.strangers.add(tid)
            ident = identity_of(tid)
            out.append(self._event("unknown_face", "", tid, seq, ts, {
                "identity": None, "attempts": ident.attempts, "distance": _round(ident.best_distance),
                "face_box": _box(attempt.face_box), "face_score": attempt.face_score,
            }))
        out.extend(self._zone_events(outcome.zone_events, outcome.occupancy, identity_of))
        for c in outcome.crossings:
            line = self._lines.get(c.line)
            name = None if line is None else (line.in_name if c.direction.value == "in" else line.out_name)
            out.append(self._event("line_cross", c.line, c.track_id, c.seq, c.ts, {
                "line": c.line, "direction": c.direction.value, "direction_name": name,
                "identity": identity_of(c.track_id).identity,
            }))
        for a in outcome.alerts:
            # The same id as the alert's webhook and pub/sub document (X-Genesis-Alert-Id).
            key = alert_key(self.run_id, a.kind.value, a.subject, a.track_id, a.seq)
            out.append(self._event("alert", a.subject, a.track_id, a.seq, a.ts, {
                "kind": a.kind.value, "zone": a.zone, "identity": a.identity, "value": a.value,
                "threshold": a.threshold, "message": a.message}, id_=key))
        out.extend(self._state(seq, ts, names, outcome.occupancy, active=True))
        mem.last_seq, mem.last_ts = seq, ts
        self._forget(ts)
        return [msg for msg in out if msg is not None]

    def end(self, closing: list[ZoneEvent], identity_of: IdentityOf) -> list[Message]:
        """End of the stream: the visits closed at the end, and an empty state."""
        seq, ts = self.memory.last_seq, self.memory.last_ts
        out: list[Message | None] = list(self._zone_events(closing, {z: 0 for z in self._zones}, identity_of))
        out.extend(self._state(seq, ts, {}, {z: 0 for z in self._zones}, active=False))
        return [msg for msg in out if msg is not None]

    def _zone_events(self, events: list[ZoneEvent], occupancy: dict[str, int],
                     identity_of: IdentityOf) -> list[Message | None]:
        out: list[Message | None] = []
        for e in events:
            kind = "zone_enter" if e.kind == ZoneEventKind.ENTER else "zone_exit"
            zone = self._zones.get(e.zone)
            out.append(self._event(kind, e.zone, e.track_id, e.seq, e.ts, {
                "zone": e.zone, "restricted": bool(zone.restricted) if zone else False,
                "occupancy": occupancy.get(e.zone), "identity": identity_of(e.track_id).identity,
            }))
        return out

    def _state(self, seq: int, ts: float, names: dict[int, str | None], occupancy: dict[str, int],
               active: bool) -> list[Message]:
        mem = self.memory
        identities = sorted({n for n in names.values() if n is not None})
        unknown = sum(1 for n in names.values() if n is None)
        zones = {z: int(occupancy.get(z, 0)) for z in self._zones}
        key = json.dumps([len(names), identities, unknown, zones, active])
        out: list[Message] = []
        if key != mem.state:
            mem.state = key
            doc = {"camera_id": self.camera.id, "run_id": self.run_id, "active": active, "seq": seq,
                   "ts": round(ts, 6), "at": self._at(ts), "people": len(names), "identities": identities,
                   "unknown": unknown, "zones": zones,
                   "tracks": [{"track_id": t, "identity": names[t]} for t in sorted(names)]}
            out.append(self._retained(f"{self.base}/state", _dumps(doc)))
        scalars = {f"{self.base}/people": str(len(names))}
        for z, n in zones.items():
            scalars[f"{self.base}/zone/{topic_level(z)}/occupancy"] = str(n)
        for topic, value in scalars.items():
            if mem.scalars.get(topic) != value:
                mem.scalars[topic] = value
                out.append(self._retained(topic, value.encode()))
        return out

    def _forget(self, ts: float) -> None:
        mem = self.memory
        old = [t for t, seen in mem.seen.items() if ts - seen > FORGET_AFTER_S]
        for t in old:
            mem.seen.pop(t, None)
            mem.named.pop(t, None)
            mem.strangers.discard(t)

    # -- Home Assistant -------------------------------------------------------------------------

    def discovery(self) -> list[Message]:
        """Home Assistant MQTT discovery: a sensor of the people in view and one per zone occupancy."""
        cam = self.camera.id
        device = {"identifiers": [f"genesis_{cam}"], "name": f"Genesis {self.camera.name or cam}",
                  "manufacturer": "Genesis", "model": "camera"}
        sensors = [("people", "People", f"{self.base}/people")]
        sensors += [(f"zone_{topic_level(z)}", f"{z} occupancy", f"{self.base}/zone/{topic_level(z)}/occupancy")
                    for z in self._zones]
        out = []
        for key, label, topic in sensors:
            uid = f"genesis_{topic_level(cam)}_{key}"
            doc = {"name": label, "unique_id": uid, "object_id": uid, "state_topic": topic,
                   "unit_of_measurement": "people", "state_class": "measurement", "icon": "mdi:account-group",
                   "device": device}
            out.append(Message(f"{self.config.discovery_prefix}/sensor/{uid}/config", _dumps(doc), retain=True))
        return out


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 6)


def _box(box: tuple[float, ...]) -> list[float]:
    return [round(float(v), 2) for v in box]


def identity_functions(state: CameraState) -> tuple[IdentityOf, IsStranger]:
    """A camera state's current identity of a track, and whether recognition gave up on it."""
    rec = state.recognizer

    def is_stranger(track_id: int) -> bool:
        ident = rec.identity(track_id)
        return ident.identity is None and (rec.decided(track_id) or ident.attempts >= rec.config.max_attempts)

    return rec.identity, is_stranger


class MqttSink:
    """Publishes one camera run: ``observe`` every processed frame in order, ``end`` once."""

    def __init__(self, publisher: MqttPublisher, events: CameraEvents) -> None:
        self.publisher = publisher
        self.events = events

    def observe(self, outcome: FrameOutcome, state: CameraState) -> None:
        self.publisher.publish_all(self.events.frame(outcome, *identity_functions(state)))

    def end(self, closing: list[ZoneEvent], state: CameraState) -> None:
        self.publisher.publish_all(self.events.end(closing, identity_functions(state)[0]))


def open_sink(settings: Settings, camera: CameraConfig, run_id: str, time_origin: float,
              publisher: MqttPublisher | None = None, memory: EventMemory | None = None) -> MqttSink | None:
    """The MQTT sink of a run (None when ``mqtt.enabled`` is off). Without ``publisher``, a new
    connection (the embedded run's own; the caller closes ``sink.publisher``)."""
    if not settings.mqtt.enabled:
        return None
    publisher = publisher or MqttPublisher(settings.mqtt)
    return MqttSink(publisher, CameraEvents(settings.mqtt, camera, run_id, time_origin, memory))
