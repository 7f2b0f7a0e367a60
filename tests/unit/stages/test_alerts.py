"""Alert rules on synthetic track and occupancy sequences: exact counts, episodes, cooldowns."""

from __future__ import annotations

import json
from typing import Any

import pytest

from genesis.config import CameraConfig, Settings
from genesis.config.alerts import AlertsConfig
from genesis.domain import FrameOutcome, FrameRef, TrackedFrame, TrackedPerson, ZoneEvent, ZoneEventKind
from genesis.domain.alerts import CAMERA_WIDE, NO_TRACK, Alert, AlertKind, OccupancySample
from genesis.stages.alerts import AlertStage, Welford, hour_of_week

CAM = "cam"
SQUARE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


def camera(**alerts: Any) -> CameraConfig:
    return CameraConfig.model_validate({
        "id": CAM,
        "zones": [
            {"name": "hall", "points": SQUARE, "max_occupancy": 2},
            {"name": "vault", "points": SQUARE, "restricted": True},
        ],
        "alerts": alerts,
    })


def frame(seq: int, ts: float, persons: list[int] | None = None, occupancy: dict[str, int] | None = None,
          events: list[tuple[str, int, str]] | None = None) -> FrameOutcome:
    ref = FrameRef(CAM, seq, ts, f"k{seq}", 640, 480)
    people = tuple(TrackedPerson(t, (10.0 * t, 10.0, 10.0 * t + 5, 50.0), 0.9) for t in (persons or []))
    out = FrameOutcome(tracked=TrackedFrame(ref, people))
    out.occupancy = {"hall": 0, "vault": 0, **(occupancy or {})}
    out.zone_events = [ZoneEvent(CAM, z, t, ZoneEventKind(k), seq, ts) for z, t, k in (events or [])]
    return out


def run(stage: AlertStage, frames: list[FrameOutcome], names: dict[int, str] | None = None) -> list[Alert]:
    names = names or {}
    alerts: list[Alert] = []
    for f in frames:
        a, _ = stage.update(f, names.get)
        alerts += a
    return alerts


def stage_for(global_: dict[str, Any] | None = None, **alerts: Any) -> AlertStage:
    return AlertStage(AlertsConfig.model_validate(global_ or {}), camera(**alerts))


def test_crowding_one_alert_per_episode_and_flicker_around_the_threshold_gives_one() -> None:
    stage = stage_for(rules=["crowding"], clear_s=1.0, default_cooldown_s=30.0)
    occ = [1, 2, 3, 2, 3, 2, 3, 3, 2, 1] + [3] * 5  # flicker at 3/2 every frame, then well over again
    frames = [frame(i, i * 0.2, occupancy={"hall": o}) for i, o in enumerate(occ)]
    alerts = run(stage, frames)
    assert [(a.kind, a.subject, a.seq, a.value, a.threshold) for a in alerts] == [
        (AlertKind.CROWDING, "hall", 2, 3.0, 2.0)
    ]
    # A second episode after the condition cleared and the cooldown passed alerts again.
    later = [frame(100 + i, 60.0 + i, occupancy={"hall": o}) for i, o in enumerate([1, 1, 4, 4, 1, 1])]
    again = run(stage, later)
    assert [(a.seq, a.value) for a in again] == [(102, 4.0)]


def test_crowding_cooldown_suppresses_a_new_episode_that_starts_too_soon() -> None:
    stage = stage_for(rules=["crowding"], clear_s=0.0, cooldown_s={"crowding": 10.0})
    seqs = [(0, 3), (1, 0), (2, 3), (3, 0), (11, 3)]  # ts = seq: episodes at 0, 2 (within 10 s), 11
    alerts = run(stage, [frame(s, float(s), occupancy={"hall": o}) for s, o in seqs])
    assert [a.seq for a in alerts] == [0, 11]


def test_loitering_alerts_once_per_visit_with_zone_override() -> None:
    stage = stage_for(rules=["loitering"], loitering_s=100.0, zone_loitering_s={"hall": 5.0})
    frames = [frame(0, 0.0, [1, 2], events=[("hall", 1, "enter"), ("vault", 2, "enter")])]
    frames += [frame(i, float(i), [1, 2]) for i in range(1, 12)]
    frames.append(frame(12, 12.0, [2], events=[("hall", 1, "exit")]))
    frames += [frame(13, 13.0, [1, 2], events=[("hall", 1, "enter")])]  # back: a new visit
    frames += [frame(i, float(i), [1, 2]) for i in range(14, 20)]
    alerts = run(stage, frames, {1: "ana"})
    assert [(a.kind, a.zone, a.track_id, a.seq, a.identity) for a in alerts] == [
        (AlertKind.LOITERING, "hall", 1, 5, "ana"),
    ]  # the new visit at 13 is within the default 300 s cooldown of the same track and zone
    stage2 = stage_for(rules=["loitering"], loitering_s=100.0, zone_loitering_s={"hall": 5.0},
                       cooldown_s={"loitering": 0.0})
    assert [a.seq for a in run(stage2, frames)] == [5, 18]


def test_restricted_zone_alerts_for_unknown_people_only_after_the_grace_period() -> None:
    stage = stage_for(rules=["restricted"], restricted_grace_s=1.0)
    frames = [frame(0, 0.0, [1, 2, 3], events=[("vault", t, "enter") for t in (1, 2, 3)] + [("hall", 4, "enter")])]
    frames += [frame(i, i * 0.5, [1, 2, 3]) for i in range(1, 8)]
    # Track 1 is named ana at once; 2 is never named; 3 is named after 3 s (after its alert).
    names = {1: "ana", 2: None}

    def identity_of(tid: int) -> str | None:
        return names.get(tid) if tid != 3 else None

    alerts: list[Alert] = []
    for f in frames:
        alerts += stage.update(f, identity_of)[0]
    assert [(a.kind, a.zone, a.track_id, a.seq) for a in alerts] == [
        (AlertKind.RESTRICTED, "vault", 2, 2), (AlertKind.RESTRICTED, "vault", 3, 2)
    ]


def test_watchlist_one_alert_per_identity_episode() -> None:
    stage = stage_for({"watchlist": ["bob"]}, rules=["watchlist"], watchlist=["eve"], clear_s=2.0,
                      cooldown_s={"watchlist": 5.0})
    names = {1: "bob", 2: "eve", 3: "ana", 4: "bob"}
    frames = [frame(0, 0.0, [3]), frame(1, 1.0, [1, 3]), frame(2, 2.0, [1, 4]), frame(3, 3.0, [2]),
              frame(4, 4.0, []), frame(5, 5.0, [4]),  # bob away 1 s then back (track 4): same episode
              frame(6, 6.0, []), frame(9, 9.0, []), frame(10, 10.0, [4])]  # away 4 s, cooldown over: new
    alerts = run(stage, frames, names)
    assert [(a.subject, a.track_id, a.seq) for a in alerts] == [("bob", 1, 1), ("eve", 2, 3), ("bob", 4, 10)]
    assert all(a.kind == AlertKind.WATCHLIST and a.identity == a.subject for a in alerts)


def _spike_run(stage: AlertStage, windows: list[float], start: int = 0, tail: bool = True,
               frames_per_window: int = 10, sample_s: float = 10.0) -> tuple[list[Alert], list[OccupancySample]]:
    """Frames at a steady occupancy level per window, from window ``start``; with ``tail``, one
    more window (empty) closes the last one."""
    alerts: list[Alert] = []
    samples: list[OccupancySample] = []
    seq = start * frames_per_window
    for w, level in enumerate([*windows, 0.0] if tail else windows, start=start):
        for k in range(frames_per_window):
            ts = w * sample_s + k * sample_s / frames_per_window
            people = list(range(int(level)))
            a, s = stage.update(frame(seq, ts, people, occupancy={"hall": int(level)}), {}.get)
            alerts += a
            samples += s
            seq += 1
    return alerts, samples


def test_an_injected_occupancy_spike_raises_exactly_one_anomaly_and_the_baseline_none() -> None:
    stage = stage_for(rules=["anomaly"], anomaly={"sample_s": 10.0, "min_samples": 6, "z_threshold": 3.0,
                                                   "camera_wide": False})
    stage.prime({}, time_origin=0.0)  # 1970-01-01 was a Thursday: every window is in hour 72
    baseline = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
    alerts, samples = _spike_run(stage, baseline, tail=False)
    assert alerts == []
    assert [s.value for s in samples if s.zone == "hall"] == baseline[:-1]  # the last window is still open
    assert {s.hour_of_week for s in samples} == {72}
    alerts, samples = _spike_run(stage, [9.0, 9.0, 1.0, 2.0], start=8)  # a spike of two windows, then normal
    hall = [a for a in alerts if a.subject == "hall"]
    assert len(hall) == 1 and hall[0].kind == AlertKind.ANOMALY and hall[0].value >= 3.0
    assert hall[0].seq == 90  # the first frame after the first spike window
    assert [s.anomalous for s in samples if s.zone == "hall"] == [False, True, True, False, False]
    base = stage.baseline[("hall", 72)]
    assert base.n == 10 and base.mean == pytest.approx(1.5)  # the spike never joined the baseline


def test_anomaly_needs_min_samples_and_a_primed_baseline_alerts_at_once() -> None:
    cfg = {"sample_s": 10.0, "min_samples": 4, "z_threshold": 2.0}
    fresh = stage_for(rules=["anomaly"], anomaly=cfg)
    assert _spike_run(fresh, [1.0, 8.0, 1.0])[0] == []  # too few samples to judge anything
    primed = stage_for(rules=["anomaly"], anomaly=cfg)
    w = Welford()
    for x in (1.0, 2.0, 1.0, 2.0):
        w.add(x)
    primed.prime({("hall", 72): w, (CAMERA_WIDE, 72): w}, time_origin=0.0)
    alerts, _ = _spike_run(primed, [8.0])
    got = sorted((a.subject, a.track_id, a.seq) for a in alerts)
    assert got == [(CAMERA_WIDE, NO_TRACK, 10), ("hall", NO_TRACK, 10)]


def test_welford_from_sums_matches_incremental() -> None:
    xs = [0.5, 1.25, 3.0, 2.0, 2.0]
    w = Welford()
    for x in xs:
        w.add(x)
    s = Welford.from_sums(len(xs), sum(xs), sum(x * x for x in xs))
    assert (s.n, s.mean) == (w.n, pytest.approx(w.mean)) and s.std == pytest.approx(w.std)


def test_hour_of_week_in_a_time_zone() -> None:
    monday_9h_utc = 1_700_470_800.0  # 2023-11-20 09:00 UTC, a Monday
    assert hour_of_week(monday_9h_utc) == 9
    assert hour_of_week(monday_9h_utc, "America/New_York") == 4
    assert hour_of_week(monday_9h_utc - 10 * 3600) == 6 * 24 + 23  # Sunday 23h


def test_stage_state_is_saved_mid_episode_and_resumes_identically() -> None:
    frames = [frame(i, i * 0.5, [1], occupancy={"hall": 3 if i % 7 < 4 else 0},
                    events=[("hall", 1, "enter")] if i == 0 else None) for i in range(60)]
    kw: dict[str, Any] = {"loitering_s": 3.0, "clear_s": 0.5, "default_cooldown_s": 2.0,
                          "anomaly": {"sample_s": 5.0, "min_samples": 2}}
    whole = stage_for(**kw)
    expected = run(whole, frames)
    split = stage_for(**kw)
    first = run(split, frames[:23])
    resumed = stage_for(**kw)  # the sequencer's way: JSON of the stage's own state, never pickle
    resumed.import_state(json.loads(json.dumps(split.export_state())))
    assert first + run(resumed, frames[23:]) == expected
    assert len([a for a in expected if a.kind == AlertKind.CROWDING]) > 1


def test_camera_state_with_alerts_is_saved_and_restored(settings: Settings) -> None:
    from genesis.stages.camera import CameraState

    state = CameraState(settings, camera(), 640, 480, 25.0, None)
    clone = CameraState(settings, camera(), 640, 480, 25.0, None)
    clone.import_state(json.loads(json.dumps(state.export_state())))
    assert isinstance(clone.alerts, AlertStage) and clone.alerts.restricted == {"vault"}


def test_configuration_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown zones: nowhere"):
        camera(zone_loitering_s={"nowhere": 3.0})
    with pytest.raises(ValueError, match="http"):
        camera(webhooks=[{"url": "ftp://x"}])
    with pytest.raises(ValueError, match="unknown time zone"):
        AlertsConfig(timezone="Mars/Olympus")
    with pytest.raises(ValueError):
        camera(rules=["teleport"])
