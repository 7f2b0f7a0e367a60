"""Analytics on the ordered per-camera track stream: zones (entries, exits, occupancy, dwell),
lines (crossings by direction) and foot-point heatmaps.

Geometry comes from supervision (PolygonZone, LineZone); what is ours is the per-track
state: hysteresis against boxes flickering across a boundary (a change counts only after
``min_frames`` frames on the new side) and closing visits of tracks that are gone.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import cv2
import numpy as np
import supervision as sv

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

_ANCHOR = (sv.Position.BOTTOM_CENTER,)


def to_sv(persons: tuple[TrackedPerson, ...] | list[TrackedPerson]) -> sv.Detections:
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


class ZoneCounter:
    """Entries and exits of one polygon zone, per track, with hysteresis."""

    def __init__(
        self, camera_id: str, zone: ZoneConfig, width: int, height: int, min_frames: int, lost_after_s: float
    ) -> None:
        self.camera_id = camera_id
        self.name = zone.name
        self.config = zone
        polygon = np.array(zone.pixel_points(width, height), dtype=np.float64).round().astype(np.int64)
        self._zone = sv.PolygonZone(polygon=polygon, triggering_anchors=_ANCHOR)
        self.polygon = polygon
        self.min_frames = min_frames
        self.lost_after_s = lost_after_s
        self._tracks: dict[int, _ZoneTrack] = {}

    @property
    def occupancy(self) -> int:
        return sum(1 for t in self._tracks.values() if t.inside)

    def update(self, tracked: TrackedFrame) -> list[ZoneEvent]:
        seq, ts = tracked.frame.seq, tracked.frame.ts
        events: list[ZoneEvent] = []
        if tracked.persons:
            mask = self._zone.trigger(to_sv(tracked.persons))
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


class LineCounter:
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
        self._line = sv.LineZone(
            start=sv.Point(sx, sy), end=sv.Point(ex, ey), triggering_anchors=_ANCHOR,
            minimum_crossing_threshold=min_frames,
        )

    def __getstate__(self) -> dict[str, object]:
        """Picklable, crossing history included: LineZone keeps it in a defaultdict built on a
        lambda, which pickle refuses; it travels as a plain dict and is rebuilt on load."""
        state = dict(self.__dict__)
        zone = dict(self._line.__dict__)
        zone["crossing_state_history"] = dict(zone["crossing_state_history"])
        state["_line"] = zone
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        zone_state = state.pop("_line")
        assert isinstance(zone_state, dict)
        line = sv.LineZone.__new__(sv.LineZone)
        history = zone_state.pop("crossing_state_history")
        line.__dict__.update(zone_state)
        maxlen = line.crossing_history_length
        line.crossing_state_history = defaultdict(lambda: deque(maxlen=maxlen), history)
        self.__dict__.update(state)
        self._line = line

    def update(self, tracked: TrackedFrame) -> list[LineCrossing]:
        dets = to_sv(tracked.persons)
        crossed_in, crossed_out = self._line.trigger(dets)
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
    grid = np.zeros((max(1, -(-height // cell)), max(1, -(-width // cell))), dtype=np.int64)
    for s in sightings:
        x = ((s.box[0] + s.box[2]) / 2.0) // cell
        y = min(s.box[3], height - 1) // cell
        xi = int(min(max(x, 0), grid.shape[1] - 1))
        yi = int(min(max(y, 0), grid.shape[0] - 1))
        grid[yi, xi] += 1
    return grid


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
