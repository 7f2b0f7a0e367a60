"""MQTT event publishing (``mqtt``). See docs/mqtt.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from genesis.config._base import StrictModel

MqttEventName = Literal["zone_enter", "zone_exit", "line_cross", "recognised", "unknown_face", "alert"]
MQTT_EVENTS: tuple[MqttEventName, ...] = ("zone_enter", "zone_exit", "line_cross", "recognised", "unknown_face",
                                          "alert")


def _check_topic_prefix(value: str, what: str) -> str:
    if not value or value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValueError(f"{what} must be non-empty topic levels without a leading or trailing '/', got {value!r}")
    if any(c in value for c in "+#\x00") or value.startswith("$"):
        raise ValueError(f"{what} must not contain '+', '#' or NUL nor start with '$', got {value!r}")
    return value


class MqttTlsConfig(StrictModel):
    """TLS to the broker (``mqtts``; usually port 8883)."""

    enabled: bool = Field(default=False, description="Connect with TLS.")
    ca_file: Path | None = Field(default=None, description="CA bundle that signs the broker's certificate "
                                 "(default: the system's trust store).")
    cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(default=None, description="Private key of the client certificate.")
    insecure: bool = Field(default=False, description="Skip the broker host name check (testing only).")

    @model_validator(mode="after")
    def _files(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if self.enabled and path is not None and not Path(path).expanduser().is_file():
                raise ValueError(f"{name}: file not found: {path}")
        return self


class MqttSnapshotConfig(StrictModel):
    """A picture of the person on each recognition (``PREFIX/CAMERA/person/snapshot``, JPEG)."""

    enabled: bool = Field(default=True, description="Publish a snapshot when a person is recognised or found "
                          "to be a stranger (blurred as the privacy settings say).")
    crop: Literal["person", "face"] = Field(
        default="person", description="person: the person's box from the frame of the recognition; face: the "
        "best face of the passage (where the privacy settings blur that face, the blurred person crop instead).",
    )
    max_side: int = Field(default=320, ge=32, le=1920, description="Longest side of the JPEG, in pixels.")
    quality: int = Field(default=80, ge=10, le=100, description="JPEG quality.")


class MqttConfig(StrictModel):
    """Publish events and retained per-camera state to an MQTT broker (Home Assistant, NVRs).

    The pipeline never waits for the broker: messages go through a bounded buffer that a
    background thread hands to the client; what does not fit is dropped and counted.
    """

    enabled: bool = Field(default=False, description="Publish to the broker below.")
    host: str = Field(default="127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (1883 plain, 8883 usually for TLS).")
    client_id: str | None = Field(
        default=None, max_length=128,
        description="MQTT client id prefix; each process adds -HOST-PID (two clients may not share an id).",
    )
    username: str | None = Field(default=None, description="User name, if the broker wants one.")
    password: SecretStr | None = Field(
        default=None, description="Password: set it with GENESIS_MQTT__PASSWORD rather than in the file; "
        "it is never printed or logged.",
    )
    topic_prefix: str = Field(default="genesis", description="First topic levels of every message.")
    qos: Literal[0, 1, 2] = Field(default=1, description="QoS of every message (1: at least once).")
    retain_state: bool = Field(default=True, description="Publish the per-camera state as retained messages.")
    events: list[MqttEventName] = Field(
        default_factory=lambda: list(MQTT_EVENTS), description="Event kinds published (default: all).",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive interval.")
    buffer_messages: int = Field(
        default=1000, ge=10, le=1_000_000,
        description="Messages kept while the broker is slow or away; beyond this the oldest event is dropped "
        "(counted in genesis_mqtt_dropped_total). Retained state keeps only its latest value per topic.",
    )
    reconnect_min_s: float = Field(default=1.0, gt=0.0, le=60.0, description="First wait before a reconnect.")
    reconnect_max_s: float = Field(default=30.0, gt=0.0, le=3600.0, description="Longest wait between reconnects.")
    flush_timeout_s: float = Field(
        default=2.0, ge=0.0, le=60.0,
        description="At the end of an embedded run: how long to wait for buffered messages while connected "
        "(never waits for a broker that is away).",
    )
    state_hold_s: float = Field(
        default=1.0, ge=0.0, le=300.0,
        description="A change of the retained state (people in view, names, zone occupancy) is published once it "
        "has held this long (stream time), so a detection that flickers does not flicker the sensors; "
        "0 publishes every change.",
    )
    lifecycle: bool = Field(
        default=True, description="Publish the passage lifecycle on PREFIX/events (new, update, end with "
        "before/after, one id per passage).",
    )
    snapshot: MqttSnapshotConfig = MqttSnapshotConfig()
    discovery: bool = Field(default=False, description="Publish Home Assistant MQTT discovery configs (retained).")
    discovery_prefix: str = Field(default="homeassistant", description="Home Assistant's discovery prefix.")
    tls: MqttTlsConfig = MqttTlsConfig()

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _check_topic_prefix(value, "topic_prefix")

    @field_validator("discovery_prefix")
    @classmethod
    def _discovery_prefix(cls, value: str) -> str:
        return _check_topic_prefix(value, "discovery_prefix")

    @field_validator("password", mode="before")
    @classmethod
    def _password_text(cls, value: Any) -> Any:
        # GENESIS_MQTT__PASSWORD=12345678 is read as YAML: keep a number as the text it was.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _reconnect(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self
