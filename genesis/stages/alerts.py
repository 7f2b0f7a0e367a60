"""Alert rules on the ordered per-camera stream: crowding, loitering, occupancy anomaly,
watch-list identity, unknown person in a restricted zone.

A pure stage: it sees each frame's ``FrameOutcome`` (tracks, zone events, occupancy) in
``seq`` order, with the identities the recognition policy has decided so far, and returns
the alerts and baseline samples of that frame. Everything it keeps is plain data (it is
kept with ``CameraState`` by the distributed sequencer), and everything it decides
depends only on the frames, their ``ts`` and the baseline it was primed with, so the
embedded run and the distributed pipeline raise the same alerts.

Episodes: a rule's condition for one subject (a zone, a zone visit, an identity) starts an
episode when it becomes true; the episode raises one alert, unless the previous alert of that
subject is younger than the rule's cooldown; it ends once the condition has stayed false for
``clear_s`` seconds (a visit also ends with its exit). So a flickering condition raises one alert.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import ClassVar
from zoneinfo import ZoneInfo

from genesis.config import CameraConfig
from genesis.config.alerts import AlertsConfig
from genesis.domain import FrameOutcome, ZoneEventKind
from genesis.domain.alerts import CAMERA_WIDE, NO_TRACK, Alert, AlertKind, OccupancySample
from genesis.domain.codec import SavedState
from genesis.domain.stats import Welford

EPOCH_TS = 1e9
"""Frame times at or above this are absolute (live sources: capture time); below, positions in a
file, counted from the run's ``time_origin``."""

IdentityOf = Callable[[int], str | None]


@lru_cache(maxsize=16)
def _zone_info(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def hour_of_week(epoch_s: float, timezone: str = "UTC") -> int:
    """0 = Monday 00:00-00:59 ... 167 = Sunday 23h, in ``timezone``."""
    dt = datetime.fromtimestamp(epoch_s, _zone_info(timezone))
    return dt.weekday() * 24 + dt.hour


@dataclass(slots=True)
class _Episode:
    active: bool = False
    false_since: float | None = None
    last_alert_ts: float | None = None


@dataclass(slots=True)
class _Window:
    index: int
    first_ts: float
    last_ts: float
    frames: int = 0
    sums: dict[str, float] = field(default_factory=dict)


class AlertStage(SavedState):
    """The alert rules of one camera (see the module docstring)."""

    STATE_REBUILT: ClassVar[frozenset[str]] = frozenset({
        "camera_id", "config", "timezone", "rules", "max_occupancy", "restricted", "watchlist", "anomaly_on",
        "anomaly_subjects"})
    time_origin: float
    baseline: dict[tuple[str, int], Welford]
    _episodes: dict[tuple[str, str, int], _Episode]
    _visits: dict[tuple[str, int], float]
    _window: _Window | None
    _frames: int

    def __init__(self, alerts: AlertsConfig, camera: CameraConfig) -> None:
        self.camera_id = camera.id
        self.config = camera.alerts
        self.timezone = alerts.timezone
        self.rules = frozenset(self.config.rules) if self.config.enabled else frozenset()
        self.max_occupancy = {z.name: z.max_occupancy for z in camera.zones if z.max_occupancy is not None}
        self.restricted = frozenset(z.name for z in camera.zones if z.restricted)
        self.watchlist = frozenset(alerts.watchlist) | frozenset(self.config.watchlist)
        anomaly = self.config.anomaly
        self.anomaly_on = "anomaly" in self.rules and anomaly.enabled
        self.anomaly_subjects = [z.name for z in camera.zones] + ([CAMERA_WIDE] if anomaly.camera_wide else [])
        self.time_origin = 0.0
        self.baseline: dict[tuple[str, int], Welford] = {}
        self._episodes: dict[tuple[str, str, int], _Episode] = {}
        self._visits: dict[tuple[str, int], float] = {}
        """Open zone visits: (zone, track) -> enter ts."""
        self._window: _Window | None = None
        self._frames = 0

    def prime(self, baseline: Mapping[tuple[str, int], Welford], time_origin: float) -> None:
        """Set the baseline stored by earlier runs and the absolute time of frame ts 0 (files)."""
        self.baseline = {k: Welford(v.n, v.mean, v.m2) for k, v in baseline.items()}
        self.time_origin = float(time_origin)

    def absolute(self, ts: float) -> float:
        return ts if ts >= EPOCH_TS else self.time_origin + ts

    # -- episodes ------------------------------------------------------------------------------

    def _step(self, kind: AlertKind, subject: str, track: int, condition: bool, ts: float) -> bool:
        """Advance one subject's episode; True when this frame starts an episode that alerts."""
        key = (kind.value, subject, track)
        ep = self._episodes.get(key)
        if condition:
            if ep is None:
                ep = self._episodes[key] = _Episode()
            ep.false_since = None
            if ep.active:
                return False
            ep.active = True
            if ep.last_alert_ts is not None and ts - ep.last_alert_ts < self.config.cooldown(kind.value):
                return False  # within the cooldown: this episode is merged into the last one
            ep.last_alert_ts = ts
            return True
        if ep is not None and ep.active:
            if ep.false_since is None:
                ep.false_since = ts
            if ts - ep.false_since >= self.config.clear_s:
                ep.active, ep.false_since = False, None
        return False

    def _end(self, kind: AlertKind, subject: str, track: int) -> None:
        ep = self._episodes.get((kind.value, subject, track))
        if ep is not None:
            ep.active, ep.false_since = False, None

    def _prune(self, ts: float) -> None:
        """Forget finished episodes whose cooldown is over (bounded state on long streams)."""
        for key in [k for k, ep in self._episodes.items() if not ep.active and (
                ep.last_alert_ts is None or ts - ep.last_alert_ts >= self.config.cooldown(k[0]))]:
            del self._episodes[key]

    # -- the rules -----------------------------------------------------------------------------

    def update(self, outcome: FrameOutcome, identity_of: IdentityOf) -> tuple[list[Alert], list[OccupancySample]]:
        """One frame, in ``seq`` order: the alerts it raises and the baseline samples it closes."""
        if not self.rules:
            return [], []
        frame = outcome.tracked.frame
        seq, ts = frame.seq, frame.ts
        alerts: list[Alert] = []

        def raise_(kind: AlertKind, subject: str, track: int, value: float, threshold: float, zone: str | None,
                   identity: str | None, message: str) -> None:
            alerts.append(Alert(self.camera_id, kind, subject, track, seq, ts, round(float(value), 3),
                                round(float(threshold), 3), zone, identity, message))

        for ev in outcome.zone_events:
            key = (ev.zone, ev.track_id)
            if ev.kind == ZoneEventKind.ENTER:
                self._visits[key] = ev.ts
            else:
                self._visits.pop(key, None)
                self._end(AlertKind.LOITERING, ev.zone, ev.track_id)
                self._end(AlertKind.RESTRICTED, ev.zone, ev.track_id)

        if "crowding" in self.rules:
            for zone, limit in self.max_occupancy.items():
                occ = outcome.occupancy.get(zone, 0)
                if self._step(AlertKind.CROWDING, zone, NO_TRACK, occ > limit, ts):
                    raise_(AlertKind.CROWDING, zone, NO_TRACK, occ, limit, zone, None,
                           f"{occ} people in {zone} (max {limit})")

        for (zone, tid), entered in sorted(self._visits.items()):
            dwell = ts - entered
            if "loitering" in self.rules:
                limit_s = self.config.loitering_threshold(zone)
                if self._step(AlertKind.LOITERING, zone, tid, dwell >= limit_s, ts):
                    raise_(AlertKind.LOITERING, zone, tid, dwell, limit_s, zone, identity_of(tid),
                           f"track {tid} has been in {zone} for {dwell:.1f} s (limit {limit_s:g} s)")
            if "restricted" in self.rules and zone in self.restricted:
                unknown = identity_of(tid) is None
                grace = self.config.restricted_grace_s
                if self._step(AlertKind.RESTRICTED, zone, tid, unknown and dwell >= grace, ts):
                    raise_(AlertKind.RESTRICTED, zone, tid, dwell, grace, zone, None,
                           f"unknown person (track {tid}) in restricted zone {zone}")

        if "watchlist" in self.rules and self.watchlist:
            seen: dict[str, int] = {}
            for p in outcome.tracked.persons:
                name = identity_of(p.track_id)
                if name is not None and name in self.watchlist:
                    seen[name] = min(seen.get(name, p.track_id), p.track_id)
            for name in sorted(self.watchlist):
                if self._step(AlertKind.WATCHLIST, name, NO_TRACK, name in seen, ts):
                    raise_(AlertKind.WATCHLIST, name, seen[name], 1, 1, None, name,
                           f"watch-list identity {name} seen (track {seen[name]})")

        samples: list[OccupancySample] = []
        if self.anomaly_on:
            samples = self._anomaly(outcome, raise_)
        self._frames += 1
        if self._frames % 200 == 0:
            self._prune(ts)
        return alerts, samples

    def _anomaly(self, outcome: FrameOutcome, raise_: Callable[..., None]) -> list[OccupancySample]:
        cfg = self.config.anomaly
        ts = outcome.tracked.frame.ts
        index = math.floor(ts / cfg.sample_s)
        samples: list[OccupancySample] = []
        win = self._window
        if win is not None and index != win.index:
            samples = self._close_window(win, ts, raise_)
            win = None
        if win is None:
            win = self._window = _Window(index=index, first_ts=ts, last_ts=ts)
        win.last_ts = ts
        win.frames += 1
        for subject in self.anomaly_subjects:
            value = len(outcome.tracked.persons) if subject == CAMERA_WIDE else outcome.occupancy.get(subject, 0)
            win.sums[subject] = win.sums.get(subject, 0.0) + value
        return samples

    def _close_window(self, win: _Window, ts: float, raise_: Callable[..., None]) -> list[OccupancySample]:
        """Test each subject's window mean against its baseline, then (if normal) add it to it.

        A sample is tested before it joins the baseline, and an anomalous one never joins it,
        so neither the baseline period nor a spike can make the baseline alert on itself."""
        cfg = self.config.anomaly
        if win.last_ts - win.first_ts < 0.5 * cfg.sample_s:
            return []  # too little of the window was seen (start or end of a stream, a gap)
        at = self.absolute(win.index * cfg.sample_s)
        how = hour_of_week(at, self.timezone)
        samples = []
        for subject in self.anomaly_subjects:
            x = round(win.sums.get(subject, 0.0) / win.frames, 6)
            base = self.baseline.setdefault((subject, how), Welford())
            z = (x - base.mean) / max(base.std, cfg.min_std) if base.n >= cfg.min_samples else 0.0
            anomalous = base.n >= cfg.min_samples and z >= cfg.z_threshold
            if self._step(AlertKind.ANOMALY, subject, NO_TRACK, anomalous, ts):
                where = "the whole frame" if subject == CAMERA_WIDE else subject
                raise_(AlertKind.ANOMALY, subject, NO_TRACK, round(z, 3), cfg.z_threshold,
                       None if subject == CAMERA_WIDE else subject, None,
                       f"occupancy of {where} {x:.2f} against {base.mean:.2f} ± {base.std:.2f} usual at this hour "
                       f"(z {z:.1f})")
            if not anomalous:
                base.add(x)
            samples.append(OccupancySample(self.camera_id, subject, win.index, x, win.frames, how, at, anomalous))
        return samples
