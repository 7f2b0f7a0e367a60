"""Trajectory sampling: which sightings of a track are stored as points of its path.

The database keeps passages, not frames (issue 21): a track segment's summary (``tracks``) and a
trajectory sampled by time and movement (``point_batches``, packed). A sighting becomes a point when it is

* the first sighting of its track, or the first after a new identity segment was opened;
* ``interval_s`` (1 s) or more of media time after the track's previous point;
* the frame of a zone event or a line crossing of that track;
* a change of direction: the foot point moved at least ``min_move_px`` from the previous point
  along a heading that differs from the previous leg's by more than ``turn_deg``.

Each point carries ``frames``: the sightings of its track it stands for (itself and the ones since
the previous point), so per-time-bucket sighting counts stay exact sums over the points.

The last sighting of a track is a point too (its exit), kept when the track has not been seen for
``FORGET_S`` or when the run ends (:meth:`PathSampler.tail`), so the points of a track stand for all
its sightings. The sampler is part of the ordered per-camera state (frames in ``seq`` order), so both
modes and any number of workers keep exactly the same points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from genesis.config.pipeline import PathConfig
from genesis.domain import PathPoint, Sighting
from genesis.domain.codec import SavedState

FORGET_S = 120.0
"""A track not seen for this long (media seconds) is dropped from the sampler's state."""


@dataclass(slots=True)
class TrackPath:
    """When a track's last point was, where its current step started, its reference heading, and what came
    since."""

    seq: int
    ts: float
    x: float
    y: float
    """Where the current step started (the foot point; a step ends once it is ``min_move_px`` long)."""
    segments: int
    seen_ts: float
    last: PathPoint
    """The track's latest sighting (its exit point when the track ends)."""
    pending: int = 0
    """Sightings since the last point (not yet stood for by a point)."""
    dx: float = 0.0
    dy: float = 0.0
    """The reference heading: the first step of the track, then the step of the last turn (0, 0: none yet).
    Every later step is compared with it, so a slow curve keeps a point once it has turned far enough."""


def foot(box: tuple[float, float, float, float]) -> tuple[float, float]:
    """The foot point of a box: bottom centre (the heatmap's and the zones' anchor)."""
    return (box[0] + box[2]) / 2.0, box[3]


def turned(dx0: float, dy0: float, dx1: float, dy1: float, tolerance_deg: float) -> bool:
    """Whether heading (dx1, dy1) differs from (dx0, dy0) by more than ``tolerance_deg``."""
    n0, n1 = math.hypot(dx0, dy0), math.hypot(dx1, dy1)
    if n0 == 0.0 or n1 == 0.0:
        return False
    cos = max(-1.0, min(1.0, (dx0 * dx1 + dy0 * dy1) / (n0 * n1)))
    return math.degrees(math.acos(cos)) > tolerance_deg


class PathSampler(SavedState):
    """Keeps the trajectory points of every track of one camera (pure; state saved with the camera's)."""

    tracks: dict[int, TrackPath]
    next_forget: float | None

    def __init__(self, config: PathConfig) -> None:
        self.config = config
        self.tracks = {}
        self.next_forget = None
        """When to look for tracks gone for ``FORGET_S`` next (None: at the next frame)."""

    STATE_REBUILT = frozenset({"config"})

    def sample(self, ts: float, sightings: list[Sighting], marked: set[int], segments: dict[int, int]
               ) -> list[PathPoint]:
        """The points of one frame (at ``ts``) from its sightings, and the exit points of tracks not seen
        for ``FORGET_S``. ``marked``: tracks with a zone event or a line crossing in this frame;
        ``segments``: track -> how many identity segments it has now."""
        c = self.config
        out: list[PathPoint] = []
        for s in sightings:
            tid = int(s.track_id)
            x, y = foot(s.box)
            nseg = segments.get(tid, 1)
            st = self.tracks.get(tid)
            point = PathPoint(s.camera_id, tid, s.seq, s.ts, s.box, s.score, 1)
            if st is None:
                self.tracks[tid] = TrackPath(s.seq, s.ts, x, y, nseg, s.ts, point)
                out.append(point)
                continue
            st.pending += 1
            st.seen_ts, st.last = s.ts, point
            dx, dy = x - st.x, y - st.y
            turn = False
            if math.hypot(dx, dy) >= max(c.min_move_px, 1e-9):  # a step: compare its heading with the reference
                if st.dx == 0.0 and st.dy == 0.0:
                    st.dx, st.dy = dx, dy
                elif turned(st.dx, st.dy, dx, dy, c.turn_deg):
                    turn = True
                    st.dx, st.dy = dx, dy
                st.x, st.y = x, y
            keep = turn or nseg != st.segments or s.ts - st.ts >= c.interval_s - 1e-9 or tid in marked
            if not keep:
                continue
            out.append(PathPoint(s.camera_id, tid, s.seq, s.ts, s.box, s.score, st.pending))
            st.seq, st.ts, st.segments, st.pending = s.seq, s.ts, nseg, 0
        if self.next_forget is None or ts >= self.next_forget:
            gone = sorted(k for k, v in self.tracks.items() if ts - v.seen_ts > FORGET_S)
            out += self._exits(gone)
            self.next_forget = ts + FORGET_S / 4
        return out

    def tail(self) -> list[PathPoint]:
        """End of the run: the exit point of every track whose last sightings no point stands for yet."""
        return self._exits(sorted(self.tracks))

    def _exits(self, track_ids: list[int]) -> list[PathPoint]:
        out = []
        for tid in track_ids:
            st = self.tracks.pop(tid)
            if st.pending:
                p = st.last
                out.append(PathPoint(p.camera_id, p.track_id, p.seq, p.ts, p.box, p.score, st.pending))
        return out


__all__ = ["FORGET_S", "PathSampler", "TrackPath", "foot", "turned"]
