"""Alert types: what the alert rules raise, and the occupancy samples of the anomaly baseline.

Self-contained (``genesis.domain`` re-exports them): frozen dataclasses that travel as JSON
through ``genesis.domain.codec`` like every other domain type.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

CAMERA_WIDE = "*"
"""The ``zone`` of an occupancy sample or anomaly alert about the whole frame."""

NO_TRACK = -1
"""The ``track_id`` of an alert that is not about one track (crowding, anomaly)."""


class AlertKind(StrEnum):
    CROWDING = "crowding"
    LOITERING = "loitering"
    ANOMALY = "anomaly"
    WATCHLIST = "watchlist"
    RESTRICTED = "restricted"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: the first frame of an episode of a rule's condition.

    Natural key within a run: ``(kind, subject, track_id, seq)``. ``subject`` is the zone for
    crowding, loitering, restricted and anomaly (``*`` for the whole frame) and the identity
    for watchlist.
    """

    camera_id: str
    kind: AlertKind
    subject: str
    track_id: int
    seq: int
    ts: float
    value: float
    threshold: float
    zone: str | None = None
    identity: str | None = None
    message: str = ""


def alert_key(run_id: str, kind: str, subject: str, track_id: int, seq: int) -> str:
    """The stable id of an alert (the ``X-Genesis-Alert-Id`` receivers deduplicate on)."""
    raw = f"{run_id}|{kind}|{subject}|{int(track_id)}|{int(seq)}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class OccupancySample:
    """The mean occupancy of a zone (or the whole frame) over one anomaly window.

    ``window`` is ``floor(ts / sample_s)`` of the frames it covers (natural key with the run
    and the zone); ``at`` the absolute time (epoch seconds) of the window start and
    ``hour_of_week`` (0 = Monday 00h) its baseline bucket. ``anomalous`` samples are kept out
    of the baseline.
    """

    camera_id: str
    zone: str
    window: int
    value: float
    frames: int
    hour_of_week: int
    at: float
    anomalous: bool = False
