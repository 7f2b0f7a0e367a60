"""Alert rules and their delivery: per-camera rules (``cameras[].alerts``) and the global
delivery settings (``alerts``). See docs/alerts.md."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from genesis.config._base import StrictModel

AlertKindName = Literal["crowding", "loitering", "anomaly", "watchlist", "restricted"]
ALERT_KINDS: tuple[AlertKindName, ...] = ("crowding", "loitering", "anomaly", "watchlist", "restricted")


class WebhookConfig(StrictModel):
    """A receiver of alerts: each new alert is POSTed to ``url`` as JSON."""

    url: str = Field(description="http:// or https:// URL.")
    secret: str | None = Field(
        default=None, min_length=8,
        description="Signs the body: header X-Genesis-Signature: sha256=HMAC-SHA256(secret, body) in hex.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers (e.g. Authorization).")
    timeout_s: float = Field(default=5.0, gt=0.0, le=120.0, description="Connect + read timeout of one POST.")
    kinds: list[AlertKindName] | None = Field(default=None, description="Only these kinds (default: all).")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"webhook url must be an http:// or https:// URL, got {value!r}")
        return value


class AnomalyConfig(StrictModel):
    """Occupancy anomaly: a z-score against the rolling baseline of the same hour of the week."""

    enabled: bool = True
    z_threshold: float = Field(default=3.0, gt=0.0, description="Alert when (x - mean) / std reaches this.")
    min_samples: int = Field(
        default=8, ge=2, description="Samples of that hour of the week the baseline needs before it can alert."
    )
    sample_s: float = Field(
        default=60.0, gt=0.0, description="One baseline sample per zone every this many seconds of video "
        "(the mean occupancy over the window).",
    )
    min_std: float = Field(
        default=0.5, gt=0.0, description="Floor of the standard deviation (a constant baseline would make any "
        "change infinitely anomalous).",
    )
    baseline_days: int = Field(default=56, ge=1, description="Rolling baseline: samples of the last N days.")
    camera_wide: bool = Field(default=True, description="Also watch the number of people in the whole frame.")


class CameraAlertsConfig(StrictModel):
    """The alert rules of one camera (``cameras[].alerts``)."""

    enabled: bool = True
    rules: list[AlertKindName] = Field(default_factory=lambda: list(ALERT_KINDS), description="Rules that run.")
    loitering_s: float = Field(default=60.0, gt=0.0, description="Dwell in one zone that counts as loitering.")
    zone_loitering_s: dict[str, float] = Field(
        default_factory=dict, description="Per-zone loitering thresholds (zone name -> seconds).",
    )
    restricted_grace_s: float = Field(
        default=2.0, ge=0.0, description="Time an unknown person may spend in a restricted zone before the alert "
        "(recognition needs a few frames to name someone).",
    )
    clear_s: float = Field(
        default=2.0, ge=0.0, description="A condition must stay false this long before its episode ends.",
    )
    cooldown_s: dict[AlertKindName, float] = Field(
        default_factory=dict, description="Per rule: no new alert for the same subject within this many seconds "
        "of the last one (default: default_cooldown_s).",
    )
    default_cooldown_s: float = Field(default=300.0, ge=0.0)
    anomaly: AnomalyConfig = AnomalyConfig()
    watchlist: list[str] = Field(default_factory=list, description="Identities whose sighting raises an alert.")
    webhooks: list[WebhookConfig] = Field(default_factory=list, description="Receivers of this camera's alerts.")

    @field_validator("zone_loitering_s", "cooldown_s")
    @classmethod
    def _positive(cls, values: dict[str, float]) -> dict[str, float]:
        for key, value in values.items():
            if value < 0:
                raise ValueError(f"{key}: must be >= 0, got {value}")
        return values

    def cooldown(self, kind: str) -> float:
        return float(self.cooldown_s.get(kind, self.default_cooldown_s))  # type: ignore[call-overload]

    def loitering_threshold(self, zone: str) -> float:
        return float(self.zone_loitering_s.get(zone, self.loitering_s))

    def check_zones(self, zones: list[str]) -> None:
        unknown = sorted(set(self.zone_loitering_s) - set(zones))
        if unknown:
            raise ValueError(f"alerts.zone_loitering_s names unknown zones: {', '.join(unknown)}")


class DeliveryConfig(StrictModel):
    """Retries of one alert's delivery to one target (webhook or pub/sub)."""

    max_attempts: int = Field(default=6, ge=1, le=50, description="Attempts before a delivery is given up.")
    backoff_s: float = Field(default=1.0, gt=0.0, description="First wait; doubled after each failed attempt.")
    backoff_max_s: float = Field(default=60.0, gt=0.0, description="Upper bound of one wait (full jitter below).")
    drain_timeout_s: float = Field(
        default=120.0, ge=0.0, description="Embedded run: how long it waits at the end for deliveries in flight.",
    )


class AlertsConfig(StrictModel):
    """Global alert settings (``alerts``): delivery, pub/sub and the webhooks of every camera."""

    pubsub: Literal["auto", "on", "off"] = Field(
        default="auto", description="Publish alerts on Redis pub/sub: on, off, or auto (distributed: on; "
        "embedded: when Redis answers at start).",
    )
    channel: str = Field(
        default="genesis:alerts", min_length=1,
        description="Pub/sub channel of every alert; each is also published on CHANNEL:CAMERA_ID.",
    )
    timezone: str = Field(default="UTC", description="Time zone of the hour-of-week anomaly baseline.")
    watchlist: list[str] = Field(default_factory=list, description="Watch-list identities of every camera.")
    webhooks: list[WebhookConfig] = Field(default_factory=list, description="Receivers of every camera's alerts.")
    delivery: DeliveryConfig = DeliveryConfig()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Lisbon)") from None
        return value
