"""Zones and lines on synthetic track sequences with known answers."""

from __future__ import annotations

import pytest

from genesis.config import LineConfig, ZoneConfig
from genesis.domain import Direction, FrameRef, TrackedFrame, TrackedPerson, ZoneEventKind
from genesis.stages.analytics import LineCounter, ZoneCounter, heatmap_grid, render_heatmap

W = H = 100


def frame(seq: int, *persons: tuple[int, float, float]) -> TrackedFrame:
    """Persons as (track id, foot x, foot y) in pixels."""
    return TrackedFrame(
        FrameRef("cam", seq, seq / 10.0, f"k{seq}", W, H),
        tuple(TrackedPerson(tid, (x - 5, y - 30, x + 5, y), 0.9) for tid, x, y in persons),
    )


def run_line(ys: list[float | None], min_frames: int = 2, tid: int = 1) -> list[Direction]:
    counter = LineCounter("cam", LineConfig(name="l", start=(0.0, 0.5), end=(1.0, 0.5)), W, H, min_frames)
    out = []
    for seq, y in enumerate(ys):
        persons = () if y is None else ((tid, 50.0, y),)
        out += [c.direction for c in counter.update(frame(seq, *persons))]
    return out


def test_walking_down_then_up_counts_out_then_in() -> None:
    assert run_line([20, 30, 40, 60, 70, 80, 90, 70, 60, 40, 30, 20]) == [Direction.OUT, Direction.IN]


def test_flicker_across_the_line_is_not_counted() -> None:
    # The foot point wobbles across the line one frame at a time: no crossing is real.
    assert run_line([40, 45, 52, 48, 53, 47, 51, 46, 44]) == []


def test_flicker_then_real_crossing_counts_once() -> None:
    assert run_line([40, 45, 52, 48, 53, 60, 65, 70, 75]) == [Direction.OUT]


def test_line_ignores_crossings_outside_the_segment() -> None:
    counter = LineCounter("cam", LineConfig(name="l", start=(0.0, 0.5), end=(0.3, 0.5)), W, H, 1)
    events = []
    for seq, y in enumerate([20, 40, 60, 80]):
        events += counter.update(frame(seq, (1, 80.0, y)))
    assert events == []


def zone_counter(min_frames: int = 2, lost_after_s: float = 1.0) -> ZoneCounter:
    zone = ZoneConfig(name="z", points=[(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)])
    return ZoneCounter("cam", zone, W, H, min_frames, lost_after_s)


def test_zone_entry_exit_and_return_gives_two_visits() -> None:
    z = zone_counter()
    path = [10, 30, 40, 50, 60, 90, 92, 95, 50, 50, 50, 95, 95]
    events = []
    for seq, x in enumerate(path):
        events += z.update(frame(seq, (7, x, 50.0)))
    events += z.expire(None)
    kinds = [(e.kind, e.seq) for e in events]
    assert kinds == [
        (ZoneEventKind.ENTER, 2),
        (ZoneEventKind.EXIT, 6),
        (ZoneEventKind.ENTER, 9),
        (ZoneEventKind.EXIT, 12),
    ]


def test_zone_flicker_on_the_edge_makes_no_visit() -> None:
    z = zone_counter()
    events = []
    for seq, x in enumerate([15, 25, 15, 25, 15, 25, 15]):
        events += z.update(frame(seq, (1, x, 50.0)))
    assert events == []


def test_zone_occupancy_and_lost_track_is_closed_at_its_last_sighting() -> None:
    z = zone_counter(min_frames=1, lost_after_s=0.5)
    z.update(frame(0, (1, 50, 50), (2, 60, 60), (3, 5, 5)))
    assert z.occupancy == 2
    z.update(frame(1, (1, 50, 50)))  # track 2 not seen: still inside until it expires
    assert z.occupancy == 2
    events = []
    for seq in range(2, 9):
        events += z.update(frame(seq, (1, 50, 50)))
    exits = [e for e in events if e.kind == ZoneEventKind.EXIT]
    assert [(e.track_id, e.seq) for e in exits] == [(2, 0)]
    assert z.occupancy == 1


@pytest.mark.parametrize("units", ["normalized", "pixels"])
def test_zone_units(units: str) -> None:
    pts = [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8)] if units == "normalized" else [(20, 20), (80, 20), (80, 80)]
    z = ZoneCounter("cam", ZoneConfig(name="t", points=pts, units=units), W, H, 1, 1.0)  # type: ignore[arg-type]
    assert [e.kind for e in z.update(frame(0, (1, 70, 30)))] == [ZoneEventKind.ENTER]


def test_heatmap_counts_foot_points_in_cells() -> None:
    from genesis.domain import Sighting

    s = [Sighting("cam", 1, i, i / 10, (40, 10, 50, 55), 0.9) for i in range(5)]
    grid = heatmap_grid(s, W, H, 10)
    assert grid.shape == (10, 10)
    assert grid[5, 4] == 5 and grid.sum() == 5
    img = render_heatmap(grid, None, W, H)
    assert img.shape == (H, W, 3) and img[55, 45].sum() > 0 and img[5, 95].sum() == 0
