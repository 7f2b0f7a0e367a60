"""What Genesis publishes over MQTT: the events and retained state of one camera (docs/mqtt.md).

``CameraEvents`` turns the ordered stage's outcome of each frame (in ``seq`` order) into
messages; it has no I/O. Its memory (which tracks were announced, the open passages, the last
state published and the changes waiting out ``mqtt.state_hold_s``) is a small JSON document, so
the distributed sequencer can keep it in Redis between passes and hand it from one worker to the
next. Every event carries an ``id`` that depends only on the run and the frame (a passage's on the
run, the track and the segment): a frame processed twice (a sequencer killed before saving its
state) publishes the same ids again, which subscribers can deduplicate on.

Three kinds of output, all derived in frame order from the same outcomes in both modes:

- events (``PREFIX/CAMERA/event/KIND``), one per thing that happened;
- the passage lifecycle (``PREFIX/events``): one id per passage (an identity segment of a track,
  the rows the tracks table stores), ``new`` / ``update`` / ``end`` with ``before`` and ``after``;
- retained state (``PREFIX/CAMERA/state``, ``people``, zone occupancy), published once a change
  has held for ``state_hold_s`` of stream time, and a snapshot JPEG on each recognition.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np

from genesis.config import CameraConfig, Settings
from genesis.config.mqtt import MqttConfig, MqttSnapshotConfig
from genesis.domain import FrameOutcome, TrackedPerson, ZoneEvent, ZoneEventKind
from genesis.domain.alerts import NO_TRACK, alert_key
from genesis.services.mqtt import OFFLINE, ONLINE, Message, MqttPublisher, availability_topic
from genesis.services.privacy import FrameView, Redactor, view_of
from genesis.stages.alerts import EPOCH_TS
from genesis.stages.camera import CameraState
from genesis.stages.recognize import TrackIdentity

log = logging.getLogger(__name__)

IdentityOf = Callable[[int], TrackIdentity]
"""The current identity of a track (``CameraState.recognizer.identity``)."""
IsStranger = Callable[[int], bool]
"""True once recognition has given up naming a track (its faces match nobody)."""

FORGET_AFTER_S = 600.0
"""A track unseen for this long (stream time) leaves the memory (tracker ids are not reused)."""

MQTT_MEMORY_TTL_S = 7 * 86400
"""The distributed mode's memory of a run lives in Redis this long after its last pass."""

END_LOST = "lost"
"""A passage's ``end_reason`` when its track was unseen for longer than the tracker keeps it."""
END_STREAM = "stream_end"
"""A passage's ``end_reason`` when the stream ended with it in view."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def topic_level(name: str) -> str:
    """A zone or line name as one topic level: only letters, digits, ``_ . -`` (others become ``_``)."""
    return _UNSAFE.sub("_", name) or "_"


def event_id(run_id: str, kind: str, subject: str, track_id: int, seq: int) -> str:
    raw = f"{run_id}|{kind}|{subject}|{int(track_id)}|{int(seq)}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def passage_id(run_id: str, track_id: int, segment: int) -> str:
    """A passage's id: its run, track and identity segment (the key of its row in the tracks table)."""
    return f"{run_id}-{int(track_id)}-{int(segment)}"


@dataclass(frozen=True, slots=True)
class PassageFacts:
    """One identity segment of a track, as recognition has it now (``Segment``)."""

    segment: int
    first_ts: float
    last_ts: float
    identity: str | None
    unknown: bool
    """Recognition gave up naming it: a stranger (or out of attempts without a name)."""
    end_reason: str | None = None
    """Set once the segment is closed (the track changed hands)."""
    votes: int = 0
    distance: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The picture published on a recognition, and what it shows."""

    jpeg: bytes
    seq: int
    ts: float
    box: tuple[float, float, float, float]
    crop: str
    """``person`` or ``face``."""


@dataclass(slots=True)
class Tracks:
    """What the events need to know about the tracks besides the frame (the camera state's view)."""

    identity: IdentityOf
    stranger: IsStranger
    segments: Callable[[int], list[PassageFacts]] | None = None
    """A track's identity segments, oldest first (None: the track is one passage)."""
    lost_after_s: float = 1.0
    """A track unseen this long is gone (the tracker's ``lost_track_buffer``)."""
    snapshot: Callable[[int], Snapshot | None] | None = None
    """The snapshot of a track just recognised (None: no snapshots)."""


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
    pending: dict[str, list[Any]] = field(default_factory=dict)
    """Per retained topic: a value that differs from the one published, and the ts it appeared at."""
    passages: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Per track: its open passage, as last seen (the ``before`` of its next message)."""
    ended: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Per track: the last segment whose passage ended and the zones it was in (a segment never
    starts twice; the track's next passage starts in those zones)."""
    discovered: bool = False
    last_seq: int = -1
    last_ts: float = 0.0

    def to_json(self) -> str:
        return json.dumps({
            "named": {str(k): v for k, v in self.named.items()},
            "strangers": sorted(self.strangers),
            "seen": {str(k): v for k, v in self.seen.items()},
            "state": self.state, "scalars": self.scalars, "pending": self.pending,
            "passages": {str(k): v for k, v in self.passages.items()},
            "ended": {str(k): v for k, v in self.ended.items()},
            "discovered": self.discovered, "last_seq": self.last_seq, "last_ts": self.last_ts,
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
            pending={str(k): [str(v[0]), float(v[1])] for k, v in d.get("pending", {}).items()},
            passages={int(k): v for k, v in d.get("passages", {}).items() if _passage_shape(v)},
            ended={int(k): {"segment": int(v["segment"]), "zones": [str(z) for z in v["zones"]]}
                   for k, v in d.get("ended", {}).items()},
            discovered=bool(d.get("discovered", False)),
            last_seq=int(d.get("last_seq", -1)),
            last_ts=float(d.get("last_ts", 0.0)),
        )


_PASSAGE_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str, "segment": int, "track_id": int, "current_zones": list, "entered_zones": list,
    "frame_time": (int, float), "start_time": (int, float), "_first_ts": (int, float), "_last_ts": (int, float),
}


def _passage_shape(doc: Any) -> bool:
    """A remembered passage read back from Redis has the fields the lifecycle relies on (one that
    does not, written by another version or tampered with, is dropped rather than trusted)."""
    return isinstance(doc, dict) and all(isinstance(doc.get(k), t) for k, t in _PASSAGE_TYPES.items())


_CHANGES = ("identity", "unknown", "current_zones", "entered_zones", "snapshot")
"""The passage fields whose change is an ``update`` (not the box or the time of every frame)."""


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

    def _epoch(self, ts: float) -> float:
        return ts if ts >= EPOCH_TS else self.time_origin + ts

    def _at(self, ts: float) -> str:
        return datetime.fromtimestamp(self._epoch(ts), UTC).isoformat()

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

    def frame(self, outcome: FrameOutcome, tracks: Tracks) -> list[Message]:
        """The messages of one processed frame (call in ``seq`` order)."""
        identity_of, is_stranger = tracks.identity, tracks.stranger
        frame = outcome.tracked.frame
        seq, ts = frame.seq, frame.ts
        out: list[Message | None] = []
        mem = self.memory
        if self.config.discovery and not mem.discovered:
            out.extend(self.discovery())
            mem.discovered = True
        names: dict[int, str | None] = {}
        snap: list[int] = []
        for p in outcome.tracked.persons:
            ident = identity_of(p.track_id)
            names[p.track_id] = ident.identity
            mem.seen[p.track_id] = ts
            if ident.identity is not None and mem.named.get(p.track_id) != ident.identity:
                previous = mem.named.get(p.track_id)
                mem.named[p.track_id] = ident.identity
                snap.append(p.track_id)
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
            snap.append(tid)
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
        shots: dict[int, Snapshot] = {}
        if self.config.snapshot.enabled and tracks.snapshot is not None:
            for tid in snap:
                shot = tracks.snapshot(tid)
                if shot is not None:
                    shots[tid] = shot
                    out.append(self._retained(f"{self.base}/person/snapshot", shot.jpeg))
        out.extend(self._lifecycle(outcome, tracks, shots) if self.config.lifecycle else [])
        out.extend(self._state(seq, ts, names, outcome.occupancy, active=True))
        mem.last_seq, mem.last_ts = seq, ts
        self._forget(ts)
        return [msg for msg in out if msg is not None]

    def end(self, closing: list[ZoneEvent], tracks: Tracks) -> list[Message]:
        """End of the stream: the visits closed at the end, the passages still open, an empty state."""
        seq, ts = self.memory.last_seq, self.memory.last_ts
        out: list[Message | None] = list(self._zone_events(closing, {z: 0 for z in self._zones}, tracks.identity))
        for tid in sorted(self.memory.passages):
            out.extend(self._end_passage(tid, END_STREAM, None))
        if not self.config.lifecycle:
            out = [m for m in out if m is None or not m.topic.endswith("/events")]
        out.extend(self._state(seq, ts, {}, {z: 0 for z in self._zones}, active=False, hold=0.0))
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

    # -- the passage lifecycle ------------------------------------------------------------------

    def _lifecycle(self, outcome: FrameOutcome, tracks: Tracks, shots: dict[int, Snapshot]) -> list[Message]:
        mem = self.memory
        ts = outcome.tracked.frame.ts
        out: list[Message] = []
        moves: dict[int, list[ZoneEvent]] = {}
        for e in outcome.zone_events:
            moves.setdefault(e.track_id, []).append(e)
        for p in sorted(outcome.tracked.persons, key=lambda q: q.track_id):
            tid = p.track_id
            segs = tracks.segments(tid) if tracks.segments is not None else []
            if not segs:  # no identity segments: the whole track is one passage
                ident = tracks.identity(tid)
                doc = mem.passages.get(tid)
                first = ts if doc is None else float(doc["_first_ts"])
                segs = [PassageFacts(0, first, ts, ident.identity, ident.identity is None and tracks.stranger(tid),
                                     None, ident.votes, ident.best_distance)]
            ended = mem.ended.get(tid)
            for i, seg in enumerate(segs):
                if ended is not None and seg.segment <= ended["segment"]:
                    continue  # its passage ended already (a track the tracker gave back late)
                current = i == len(segs) - 1
                doc = mem.passages.get(tid)
                if doc is not None and doc["segment"] < seg.segment:  # missed its close: end it now
                    out.extend(self._end_passage(tid, doc.get("end_reason") or END_LOST, None))
                    doc = None
                if doc is not None and doc["segment"] > seg.segment:
                    continue
                fresh = doc is None
                before = self._new_passage(tid, seg) if doc is None else doc
                after = dict(before)
                after.update(identity=seg.identity, sub_label=seg.identity, unknown=seg.unknown, votes=seg.votes,
                             distance=_round(seg.distance), start_time=round(self._epoch(seg.first_ts), 6))
                after["_first_ts"] = seg.first_ts
                if current:
                    after["_last_ts"] = ts
                    after.update(frame_time=round(self._epoch(ts), 6), last_seq=outcome.tracked.frame.seq,
                                 box=_box(p.box), score=round(float(p.score), 4),
                                 top_score=round(max(float(before.get("top_score") or 0.0), float(p.score)), 4))
                    zones = list(after["current_zones"])
                    entered = list(after["entered_zones"])
                    for e in moves.get(tid, []):
                        if e.kind == ZoneEventKind.ENTER:
                            zones = sorted({*zones, e.zone})
                            entered = entered if e.zone in entered else [*entered, e.zone]
                        else:
                            zones = [z for z in zones if z != e.zone]
                    after.update(current_zones=zones, entered_zones=entered)
                    shot = shots.get(tid)
                    if shot is not None:
                        after.update(has_snapshot=True, snapshot={
                            "frame_time": round(self._epoch(shot.ts), 6), "seq": shot.seq, "box": _box(shot.box),
                            "crop": shot.crop})
                else:
                    after["_last_ts"] = seg.last_ts
                    after.update(frame_time=round(self._epoch(seg.last_ts), 6))
                mem.passages[tid] = after
                if fresh:
                    out.append(self._passage_message("new", after, after))
                elif any(before.get(k) != after.get(k) for k in _CHANGES):
                    out.append(self._passage_message("update", before, after))
                if seg.end_reason is not None:
                    out.extend(self._end_passage(tid, seg.end_reason, round(self._epoch(seg.last_ts), 6)))
        seen = {p.track_id for p in outcome.tracked.persons}
        for tid in sorted(set(mem.passages) - seen):
            if ts - float(mem.passages[tid]["_last_ts"]) > tracks.lost_after_s + 1e-9:  # stream time
                out.extend(self._end_passage(tid, END_LOST, None))
        return out

    def _new_passage(self, tid: int, seg: PassageFacts) -> dict[str, Any]:
        # The next passage of a track starts where the last one was (a cut: the track changed hands).
        ended = self.memory.ended.get(tid)
        zones = list(ended["zones"]) if ended is not None and ended["segment"] == seg.segment - 1 else []
        return {
            "id": passage_id(self.run_id, tid, seg.segment), "camera": self.camera.id, "camera_id": self.camera.id,
            "run_id": self.run_id, "track_id": tid, "segment": seg.segment, "label": "person",
            "identity": None, "sub_label": None, "unknown": False, "votes": 0, "distance": None,
            "start_time": round(self._epoch(seg.first_ts), 6), "end_time": None,
            "frame_time": round(self._epoch(seg.first_ts), 6), "last_seq": None, "box": None, "score": None,
            "top_score": None, "current_zones": zones, "entered_zones": list(zones), "has_snapshot": False,
            "snapshot": None, "end_reason": None, "_first_ts": seg.first_ts, "_last_ts": seg.first_ts,
        }

    def _end_passage(self, tid: int, reason: str, end_time: float | None) -> list[Message]:
        mem = self.memory
        before = mem.passages.pop(tid, None)
        if before is None:
            return []
        after = dict(before)
        after.update(end_time=before["frame_time"] if end_time is None else end_time, end_reason=reason)
        mem.ended[tid] = {"segment": int(before["segment"]), "zones": list(before["current_zones"])}
        return [self._passage_message("end", before, after)]

    def _passage_message(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> Message:
        doc = {"type": kind, "before": _public(before), "after": _public(after)}
        return Message(f"{self.config.topic_prefix}/events", _dumps(doc))

    # -- retained state -------------------------------------------------------------------------

    def _settled(self, topic: str, value: str, published: str | None, ts: float, hold: float) -> bool:
        """Whether ``value`` is to be published now: it differs from the one published and has held
        ``hold`` seconds of stream time (a flicker shorter than that changes nothing)."""
        pending = self.memory.pending
        if value == published:
            pending.pop(topic, None)
            return False
        held = pending.get(topic)
        if held is None or held[0] != value:
            held = [value, ts]
            pending[topic] = held
        if ts - float(held[1]) + 1e-9 >= hold:
            pending.pop(topic, None)
            return True
        return False

    def _state(self, seq: int, ts: float, names: dict[int, str | None], occupancy: dict[str, int],
               active: bool, hold: float | None = None) -> list[Message]:
        hold = self.config.state_hold_s if hold is None else hold
        mem = self.memory
        identities = sorted({n for n in names.values() if n is not None})
        unknown = sum(1 for n in names.values() if n is None)
        zones = {z: int(occupancy.get(z, 0)) for z in self._zones}
        key = json.dumps([len(names), identities, unknown, zones, active])
        out: list[Message] = []
        state_topic = f"{self.base}/state"
        if self._settled(state_topic, key, mem.state or None, ts, hold):
            mem.state = key
            doc = {"camera_id": self.camera.id, "run_id": self.run_id, "active": active, "seq": seq,
                   "ts": round(ts, 6), "at": self._at(ts), "people": len(names), "identities": identities,
                   "unknown": unknown, "zones": zones,
                   "tracks": [{"track_id": t, "identity": names[t]} for t in sorted(names)]}
            out.append(self._retained(state_topic, _dumps(doc)))
        scalars = {f"{self.base}/people": str(len(names))}
        for z, n in zones.items():
            scalars[f"{self.base}/zone/{topic_level(z)}/occupancy"] = str(n)
        for topic, value in scalars.items():
            if self._settled(topic, value, mem.scalars.get(topic), ts, hold):
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
            mem.ended.pop(t, None)

    # -- Home Assistant -------------------------------------------------------------------------

    def discovery(self) -> list[Message]:
        """Home Assistant MQTT discovery: a sensor of the people in view, one per zone occupancy and
        (with snapshots) a camera entity of the last snapshot, all with the availability topic."""
        cam = self.camera.id
        device = {"identifiers": [f"genesis_{cam}"], "name": f"Genesis {self.camera.name or cam}",
                  "manufacturer": "Genesis", "model": "camera"}
        availability = {"availability_topic": availability_topic(self.config),
                        "payload_available": ONLINE.decode(), "payload_not_available": OFFLINE.decode()}
        sensors = [("people", "People", f"{self.base}/people")]
        sensors += [(f"zone_{topic_level(z)}", f"{z} occupancy", f"{self.base}/zone/{topic_level(z)}/occupancy")
                    for z in self._zones]
        out = []
        for key, label, topic in sensors:
            uid = f"genesis_{topic_level(cam)}_{key}"
            doc = {"name": label, "unique_id": uid, "object_id": uid, "state_topic": topic,
                   "unit_of_measurement": "people", "state_class": "measurement", "icon": "mdi:account-group",
                   "device": device, **availability}
            out.append(Message(f"{self.config.discovery_prefix}/sensor/{uid}/config", _dumps(doc), retain=True))
        if self.config.snapshot.enabled:
            uid = f"genesis_{topic_level(cam)}_person_snapshot"
            doc = {"name": "Last person", "unique_id": uid, "object_id": uid,
                   "topic": f"{self.base}/person/snapshot", "device": device, **availability}
            out.append(Message(f"{self.config.discovery_prefix}/camera/{uid}/config", _dumps(doc), retain=True))
        return out


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    """A passage as published (without what only the memory needs)."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


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


# -- snapshots ----------------------------------------------------------------------------------

SNAPSHOT_MARGIN = 0.05
"""The person crop is the box grown by this fraction of its size on every side."""


def encode_snapshot(image: np.ndarray, config: MqttSnapshotConfig) -> bytes:
    h, w = image.shape[:2]
    scale = config.max_side / max(h, w)
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, config.quality])
    if not ok:
        raise ValueError("cannot encode the snapshot")
    return bytes(buf)


def face_snapshot(crop: bytes, config: MqttSnapshotConfig) -> bytes:
    """The kept face crop (the review page's JPEG, `FACE_CROP_PX`) as it is, or made smaller where it
    is larger than ``max_side``."""
    image = cv2.imdecode(np.frombuffer(crop, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("the kept face crop is not a JPEG")
    return crop if max(image.shape[:2]) <= config.max_side else encode_snapshot(image, config)


def person_crop(image: np.ndarray, box: tuple[float, float, float, float], view: FrameView,
                redactor: Redactor | None) -> np.ndarray:
    """The person's box (a little grown) from the frame, with every face blurred that the camera's
    privacy mode blurs (the blur sees the other people in the crop and their names too)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * SNAPSHOT_MARGIN, (y2 - y1) * SNAPSHOT_MARGIN
    cx1, cy1 = max(0, int(np.floor(x1 - mx))), max(0, int(np.floor(y1 - my)))
    cx2, cy2 = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    if cx2 - cx1 < 2 or cy2 - cy1 < 2:
        raise ValueError("the person's box is outside the frame")
    crop = image[cy1:cy2, cx1:cx2].copy()
    if redactor is None:
        return crop
    persons = []
    for p in view.persons:  # the people in the crop, in its coordinates
        bx1, by1 = max(0.0, p.box[0] - cx1), max(0.0, p.box[1] - cy1)
        bx2, by2 = min(float(cx2 - cx1), p.box[2] - cx1), min(float(cy2 - cy1), p.box[3] - cy1)
        if bx2 > bx1 and by2 > by1:
            persons.append(TrackedPerson(p.track_id, (bx1, by1, bx2, by2), p.score))
    return redactor.image(crop, FrameView(tuple(persons), view.names))


def snapshot_function(config: MqttSnapshotConfig, outcome: FrameOutcome, state: CameraState,
                      image: np.ndarray | Callable[[], np.ndarray], redactor: Redactor | None,
                      ) -> Callable[[int], Snapshot | None]:
    """The snapshot of a track recognised in this frame: its best face (``crop: face``, where the
    privacy settings leave that face visible) or its person crop, blurred as the privacy settings say."""
    frame = outcome.tracked.frame
    persons = {p.track_id: p for p in outcome.tracked.persons}

    def snapshot(track_id: int) -> Snapshot | None:
        try:
            return make(track_id)
        except Exception:  # a snapshot is best effort: never fail the ordered stage for it
            log.warning("camera %s: no MQTT snapshot of track %d", frame.camera_id, track_id, exc_info=True)
            return None

    def make(track_id: int) -> Snapshot | None:
        person = persons.get(track_id)
        if person is None:
            return None
        name = state.recognizer.identity(track_id).identity
        if config.crop == "face":
            best = state.recognizer.best_face(track_id)
            hidden = redactor is not None and (redactor.mode == "everyone" or name is None)
            if best is not None and best.crop and not hidden:
                return Snapshot(face_snapshot(best.crop, config), best.seq, best.ts, person.box, "face")
        pixels = image() if callable(image) else image
        crop = person_crop(pixels, person.box, view_of(outcome, state), redactor)
        return Snapshot(encode_snapshot(crop, config), frame.seq, frame.ts, person.box, "person")

    return snapshot


def tracks_of(state: CameraState) -> Tracks:
    """What the events need to know of a camera state's tracks (no snapshots)."""
    rec = state.recognizer
    identity_of, is_stranger = identity_functions(state)

    def segments(track_id: int) -> list[PassageFacts]:
        out = []
        for seg in rec.segments(track_id):
            ident = rec.segment_identity(seg)
            unknown = ident.identity is None and (seg.stranger or ident.attempts >= rec.config.max_attempts)
            out.append(PassageFacts(seg.index, seg.first_ts, seg.last_ts, ident.identity, unknown, seg.end_reason,
                                    ident.votes, ident.best_distance))
        return out

    return Tracks(identity_of, is_stranger, segments, state.tracker.lost_after_s)


class MqttSink:
    """Publishes one camera run: ``observe`` every processed frame in order, ``end`` once."""

    def __init__(self, publisher: MqttPublisher, events: CameraEvents, redactor: Redactor | None = None) -> None:
        self.publisher = publisher
        self.events = events
        self.redactor = redactor
        """The camera's privacy blur (None: its images are not blurred), for the snapshots."""

    def observe(self, outcome: FrameOutcome, state: CameraState,
                image: np.ndarray | Callable[[], np.ndarray] | None = None) -> None:
        tracks = tracks_of(state)
        if image is not None and self.events.config.snapshot.enabled:
            tracks.snapshot = snapshot_function(self.events.config.snapshot, outcome, state, image, self.redactor)
        self.publisher.publish_all(self.events.frame(outcome, tracks))

    def end(self, closing: list[ZoneEvent], state: CameraState) -> None:
        self.publisher.publish_all(self.events.end(closing, tracks_of(state)))


def open_sink(settings: Settings, camera: CameraConfig, run_id: str, time_origin: float,
              publisher: MqttPublisher | None = None, memory: EventMemory | None = None,
              redactor: Redactor | None = None) -> MqttSink | None:
    """The MQTT sink of a run (None when ``mqtt.enabled`` is off). Without ``publisher``, a new
    connection (the embedded run's own; the caller closes ``sink.publisher``). ``redactor``: the
    camera's privacy blur, applied to the snapshots."""
    if not settings.mqtt.enabled:
        return None
    publisher = publisher or MqttPublisher(settings.mqtt)
    return MqttSink(publisher, CameraEvents(settings.mqtt, camera, run_id, time_origin, memory), redactor)
