"""Analytics on the ordered per-camera track stream: zones (entries, exits, occupancy, dwell),
lines (crossings by direction) and foot-point heatmaps.

Geometry comes from supervision (PolygonZone, LineZone); what is ours is the per-track
state: hysteresis against boxes flickering across a boundary (a change counts only after
``min_frames`` frames on the new side) and closing visits of tracks that are gone.

supervision is imported where it is used, not with the module: it brings scipy and its annotators
(about 0.6 s of CPU), and every Celery process imports the stages through the task modules while only
the ordered stage (the sequence task, the embedded run) counts zones and lines.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np

from genesis.config import LineConfig, ZoneConfig
from genesis.domain import (
    Direction,
    LineCrossing,
    Sighting,
    TrackedFrame,
    TrackedPerson,
    ZoneEvent,
    ZoneEventKind,
)
from genesis.domain.codec import SavedState, decode, encode
from genesis.domain.heat import count_feet

if TYPE_CHECKING:
    import supervision as sv


def _anchor() -> tuple[sv.Position]:
    import supervision as sv

    return (sv.Position.BOTTOM_CENTER,)


def to_sv(persons: tuple[TrackedPerson, ...] | list[TrackedPerson]) -> sv.Detections:
    import supervision as sv

    if not persons:
        d = sv.Detections.empty()
        d.tracker_id = np.zeros((0,), dtype=int)
        return d
    return sv.Detections(
        xyxy=np.array([p.box for p in persons], dtype=np.float64),
        confidence=np.array([p.score for p in persons], dtype=np.float64),
        class_id=np.zeros(len(persons), dtype=int),
        tracker_id=np.array([p.track_id for p in persons], dtype=int),
    )


@dataclass(slots=True)
class _ZoneTrack:
    inside: bool = False
    pending: int = 0
    last_seq: int = 0
    last_ts: float = 0.0


class ZoneCounter(SavedState):
    """Entries and exits of one polygon zone, per track, with hysteresis."""

    STATE_REBUILT: ClassVar[frozenset[str]] = frozenset(
        {"camera_id", "name", "config", "_zone", "polygon", "min_frames", "lost_after_s"})
    _tracks: dict[int, _ZoneTrack]

    def __init__(
        self, camera_id: str, zone: ZoneConfig, width: int, height: int, min_frames: int, lost_after_s: float
    ) -> None:
        self.camera_id = camera_id
        self.name = zone.name
        self.config = zone
        polygon = np.array(zone.pixel_points(width, height), dtype=np.float64).round().astype(np.int64)
        import supervision as sv

        self._zone = sv.PolygonZone(polygon=polygon, triggering_anchors=_anchor())
        self.polygon = polygon
        self.min_frames = min_frames
        self.lost_after_s = lost_after_s
        self._tracks: dict[int, _ZoneTrack] = {}

    @property
    def occupancy(self) -> int:
        return sum(1 for t in self._tracks.values() if t.inside)

    def update(self, tracked: TrackedFrame, dets: sv.Detections | None = None) -> list[ZoneEvent]:
        """One frame; ``dets`` is ``to_sv(tracked.persons)`` when the caller has it already (it is
        made once per frame for every zone and line)."""
        seq, ts = tracked.frame.seq, tracked.frame.ts
        events: list[ZoneEvent] = []
        if tracked.persons:
            mask = self._zone.trigger(to_sv(tracked.persons) if dets is None else dets)
            for person, inside in zip(tracked.persons, mask.tolist(), strict=True):
                st = self._tracks.setdefault(person.track_id, _ZoneTrack())
                st.last_seq, st.last_ts = seq, ts
                if bool(inside) == st.inside:
                    st.pending = 0
                    continue
                st.pending += 1
                if st.pending >= self.min_frames:
                    st.inside = bool(inside)
                    st.pending = 0
                    kind = ZoneEventKind.ENTER if st.inside else ZoneEventKind.EXIT
                    events.append(ZoneEvent(self.camera_id, self.name, person.track_id, kind, seq, ts))
        events.extend(self.expire(ts))
        return events

    def expire(self, now_ts: float | None = None) -> list[ZoneEvent]:
        """Close the visits of tracks not seen for ``lost_after_s`` (all of them when now_ts is None)."""
        events: list[ZoneEvent] = []
        for tid in sorted(self._tracks):
            st = self._tracks[tid]
            if now_ts is not None and now_ts - st.last_ts <= self.lost_after_s:
                continue
            if st.inside:
                events.append(ZoneEvent(self.camera_id, self.name, tid, ZoneEventKind.EXIT, st.last_seq, st.last_ts))
            del self._tracks[tid]
        return events


@dataclass(slots=True)
class LineZoneState:
    """What a supervision ``LineZone`` carries from one frame to the next (its geometry aside)."""

    history: dict[int, list[bool]] = field(default_factory=dict)
    confirmed_side: dict[int, bool] = field(default_factory=dict)
    frames_absent: dict[int, int] = field(default_factory=dict)
    in_per_class: dict[int | None, int] = field(default_factory=dict)
    out_per_class: dict[int | None, int] = field(default_factory=dict)
    class_names: dict[int, str] = field(default_factory=dict)


class LineCounter(SavedState):
    """Crossings of one line segment by direction (supervision LineZone on foot points).

    Direction (supervision's convention): looking from ``start`` towards ``end``, a track that
    crosses from the right-hand side to the left-hand side is ``in``, the other way ``out``.
    In image coordinates, for a line drawn left to right, walking up the image is ``in``.
    """

    def __init__(self, camera_id: str, line: LineConfig, width: int, height: int, min_frames: int) -> None:
        self.camera_id = camera_id
        self.name = line.name
        self.config = line
        (sx, sy), (ex, ey) = line.pixel_points(width, height)
        self.points = ((sx, sy), (ex, ey))
        import supervision as sv
        self._line = sv.LineZone(
            start=sv.Point(sx, sy), end=sv.Point(ex, ey), triggering_anchors=_anchor(),
            minimum_crossing_threshold=min_frames,
        )

    def export_state(self) -> dict[str, Any]:
        """The line's crossing state (read from the supervision ``LineZone``; its geometry is
        rebuilt from the settings)."""
        z = self._line
        state = LineZoneState(
            history={int(k): list(v) for k, v in z.crossing_state_history.items()},
            confirmed_side=dict(z._confirmed_crossing_side), frames_absent=dict(z._tracker_frames_absent),
            in_per_class=dict(z._in_count_per_class), out_per_class=dict(z._out_count_per_class),
            class_names=dict(z.class_id_to_name),
        )
        out: dict[str, Any] = encode(state)
        return out

    def import_state(self, data: Any) -> None:
        state = decode(LineZoneState, data)
        z = self._line
        maxlen = z.crossing_history_length
        z.crossing_state_history = defaultdict(
            lambda: deque(maxlen=maxlen), {k: deque(v, maxlen=maxlen) for k, v in state.history.items()})
        z._confirmed_crossing_side = dict(state.confirmed_side)
        z._tracker_frames_absent = dict(state.frames_absent)
        z._in_count_per_class = Counter(state.in_per_class)
        z._out_count_per_class = Counter(state.out_per_class)
        z.class_id_to_name = dict(state.class_names)

    def update(self, tracked: TrackedFrame, dets: sv.Detections | None = None) -> list[LineCrossing]:
        """One frame; ``dets`` as for :meth:`ZoneCounter.update`."""
        crossed_in, crossed_out = self._line.trigger(to_sv(tracked.persons) if dets is None else dets)
        out: list[LineCrossing] = []
        for person, cin, cout in zip(tracked.persons, crossed_in.tolist(), crossed_out.tolist(), strict=True):
            if cin:
                out.append(LineCrossing(self.camera_id, self.name, person.track_id, Direction.IN,
                                        tracked.frame.seq, tracked.frame.ts))
            if cout:
                out.append(LineCrossing(self.camera_id, self.name, person.track_id, Direction.OUT,
                                        tracked.frame.seq, tracked.frame.ts))
        return out


def heatmap_grid(sightings: list[Sighting], width: int, height: int, cell: int) -> np.ndarray:
    """Foot-point counts on a grid of ``cell`` pixel squares (commutative: order does not matter)."""
    return count_feet((s.box for s in sightings), width, height, cell)


def render_heatmap(grid: np.ndarray, background: np.ndarray | None, width: int, height: int) -> np.ndarray:
    """A colour overlay of the grid on a frame of the camera (or on black), BGR."""
    base = background if background is not None else np.zeros((height, width, 3), dtype=np.uint8)
    if base.shape[:2] != (height, width):
        base = cv2.resize(base, (width, height))
    heat: np.ndarray = grid.astype(np.float32)
    if heat.max() <= 0:
        return base.copy()
    heat = cv2.GaussianBlur(heat, (0, 0), sigmaX=1.5)
    heat = np.log1p(heat) / np.log1p(heat.max())
    heat_img = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((heat_img * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = (np.clip(heat_img * 1.5, 0, 1) * 0.6)[..., None]
    blended: np.ndarray = (base * (1 - alpha) + colour * alpha).astype(np.uint8)
    return blended
