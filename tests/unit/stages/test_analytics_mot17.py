"""MOT17 ground-truth tracks fed as TrackedFrames into the zone and line logic.

The expected counts are computed here from the gt boxes alone, with plain geometry on the
foot points (bottom centre of each box) and the documented hysteresis rules:

* line: a track's side is the sign of the cross product (end - start) x (foot - start);
  its first observed side is where it starts; a crossing counts when the track has been seen
  on the other side for ``min_frames`` consecutive frames (and at least ``min_frames + 1``
  times in all); the negative side is ``in``;
* zone: a track starts outside; it enters (exits) after ``min_frames`` consecutive frames
  inside (outside), where inside means the foot point's pixel (rounded) lies in the
  rectangle, borders included; a track still inside when the stream ends exits at its last
  frame.

The excerpts are short (4-8 frames, see ../shared/data/README.md), so many lines and zones
are swept over each frame to make the counts non-trivial.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from genesis.config import LineConfig, ZoneConfig
from genesis.domain import FrameRef, TrackedFrame, TrackedPerson
from genesis.stages.analytics import LineCounter, ZoneCounter

SEQUENCES = ["MOT17-04-FRCNN", "MOT17-09-FRCNN", "MOT17-11-FRCNN"]
W, H, FPS = 1920, 1080, 30.0
FAR = 100_000.0  # line segments reach far past the frame: every foot point is within their extent


def load_gt(path: Path) -> dict[int, list[tuple[int, tuple[float, float, float, float]]]]:
    """frame -> [(track id, (x1, y1, x2, y2))] of the pedestrians to consider (class 1, flag 1)."""
    frames: dict[int, list[tuple[int, tuple[float, float, float, float]]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        f, tid, x, y, w, h, consider, cls, _vis = (float(v) for v in line.split(",")[:9])
        if consider == 1 and cls == 1:
            frames[int(f)].append((int(tid), (x, y, x + w, y + h)))
    return dict(sorted(frames.items()))


def tracked_frames(gt: dict[int, list[tuple[int, tuple[float, float, float, float]]]]) -> list[TrackedFrame]:
    return [
        TrackedFrame(
            FrameRef("mot", f, f / FPS, f"mot/{f}", W, H),
            tuple(TrackedPerson(tid, box, 1.0) for tid, box in sorted(people)),
        )
        for f, people in gt.items()
    ]


def foot(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, box[3]


def expected_line(gt: dict[int, list[tuple[int, tuple[float, float, float, float]]]],
                  start: tuple[float, float], end: tuple[float, float], min_frames: int) -> Counter[tuple[int, str]]:
    sides: dict[int, list[bool]] = defaultdict(list)  # track -> negative side per frame
    out: Counter[tuple[int, str]] = Counter()
    confirmed: dict[int, bool] = {}
    for people in gt.values():
        for tid, box in people:
            fx, fy = foot(box)
            cross = (end[0] - start[0]) * (fy - start[1]) - (end[1] - start[1]) * (fx - start[0])
            assert cross != 0, "choose lines that no foot point lies on"
            seen = sides[tid]
            seen.append(cross < 0)
            side = seen[-1]
            confirmed.setdefault(tid, side)
            if len(seen) >= min_frames + 1 and side != confirmed[tid] and all(s == side for s in seen[-min_frames:]):
                confirmed[tid] = side
                out[(tid, "in" if side else "out")] += 1
    return out


def expected_zone(gt: dict[int, list[tuple[int, tuple[float, float, float, float]]]],
                  rect: tuple[int, int, int, int], min_frames: int) -> Counter[tuple[int, str, int]]:
    x1, y1, x2, y2 = rect
    inside: dict[int, bool] = {}
    pending: dict[int, int] = {}
    last: dict[int, int] = {}
    out: Counter[tuple[int, str, int]] = Counter()
    for f, people in gt.items():
        for tid, box in people:
            fx, fy = (int(np.rint(v)) for v in foot(box))
            now_in = x1 <= fx <= x2 and y1 <= fy <= y2
            last[tid] = f
            state = inside.setdefault(tid, False)
            if now_in == state:
                pending[tid] = 0
                continue
            pending[tid] = pending.get(tid, 0) + 1
            if pending[tid] >= min_frames:
                inside[tid], pending[tid] = now_in, 0
                out[(tid, "enter" if now_in else "exit", f)] += 1
    for tid, state in inside.items():
        if state:
            out[(tid, "exit", last[tid])] += 1  # the stream ends: open visits close at the last sighting
    return out


def lines_across(gt: dict[int, list[tuple[int, tuple[float, float, float, float]]]]) -> list[LineConfig]:
    """Horizontal and vertical lines through the feet's range, and two diagonals, never on a foot point
    (foot coordinates are multiples of 0.5; the lines sit at .25 offsets)."""
    feet = np.array([foot(b) for people in gt.values() for _, b in people])
    ys = np.arange(feet[:, 1].min() - 20, feet[:, 1].max() + 20, 4.0).round() + 0.25
    xs = np.arange(feet[:, 0].min() - 20, feet[:, 0].max() + 20, 4.0).round() + 0.25
    out = [LineConfig(name=f"h{i}", start=(-FAR, y), end=(FAR, y), units="pixels") for i, y in enumerate(ys)]
    out += [LineConfig(name=f"v{i}", start=(x, -FAR), end=(x, FAR), units="pixels") for i, x in enumerate(xs)]
    out += [LineConfig(name="d1", start=(0.25, 0.25), end=(1920.25, 1080.5), units="pixels"),
            LineConfig(name="d2", start=(1920.25, 0.25), end=(0.25, 1080.5), units="pixels")]
    return out


def zones_over(step: int) -> list[tuple[int, int, int, int]]:
    return [(x, y, x + step, y + step) for x in range(0, W, step // 2) for y in range(0, H, step // 2)]


@pytest.mark.parametrize("sequence", SEQUENCES)
@pytest.mark.parametrize("min_frames", [1, 2])
def test_line_crossings_equal_the_ground_truth(data_dir: Path, sequence: str, min_frames: int) -> None:
    gt = load_gt(data_dir / "mot17" / sequence / "gt" / "gt.txt")
    frames = tracked_frames(gt)
    total: Counter[str] = Counter()
    for cfg in lines_across(gt):
        counter = LineCounter("mot", cfg, W, H, min_frames)
        got = Counter((c.track_id, c.direction.value) for f in frames for c in counter.update(f))
        assert got == expected_line(gt, cfg.start, cfg.end, min_frames), cfg.name
        for (_, direction), n in got.items():
            total[direction] += n
    assert total["in"] > 0 and total["out"] > 0, f"the sweep must cross real motion both ways: {total}"


@pytest.mark.parametrize("sequence", SEQUENCES)
@pytest.mark.parametrize("min_frames", [1, 2])
def test_zone_entries_and_exits_equal_the_ground_truth(data_dir: Path, sequence: str, min_frames: int) -> None:
    gt = load_gt(data_dir / "mot17" / sequence / "gt" / "gt.txt")
    frames = tracked_frames(gt)
    entries = 0
    for rect in zones_over(160):
        x1, y1, x2, y2 = rect
        zone = ZoneConfig(name="z", points=[(x1, y1), (x2, y1), (x2, y2), (x1, y2)], units="pixels")
        counter = ZoneCounter("mot", zone, W, H, min_frames, lost_after_s=10.0)
        events = [e for f in frames for e in counter.update(f)] + counter.expire(None)
        got = Counter((e.track_id, e.kind.value, e.seq) for e in events)
        assert got == expected_zone(gt, rect, min_frames), rect
        entries += sum(n for (_, kind, _), n in got.items() if kind == "enter")
    people = {tid for p in gt.values() for tid, _ in p}
    assert entries >= len(people)  # every pedestrian stands in some zone
