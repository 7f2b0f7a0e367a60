"""The ``mqtt`` and ``privacy`` settings: off by default, the shipped file says the defaults, bad
values are one-line errors naming the field, and the password stays text and is never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesis.config import CameraConfig, ConfigError, load_settings
from genesis.config.mqtt import MqttConfig
from genesis.config.privacy import PrivacyConfig
from genesis.services.mqtt_events import topic_level

ROOT = Path(__file__).resolve().parents[2]


def test_off_by_default_and_the_shipped_file_states_the_defaults() -> None:
    defaults = load_settings(environ={})
    assert not defaults.mqtt.enabled and not defaults.privacy.blur_unenrolled_faces
    assert defaults.blur_mode(CameraConfig(id="c")) == "off"
    shipped = load_settings(ROOT / "configs" / "settings.yaml", environ={})
    assert shipped.mqtt == MqttConfig() and shipped.privacy == PrivacyConfig()


@pytest.mark.parametrize("raw", ["on", "0123", "12345678", "yes", "p#ss: word"])
def test_password_from_the_environment_is_kept_as_written_and_masked(raw: str) -> None:
    s = load_settings(environ={"GENESIS_MQTT__USERNAME": "cam", "GENESIS_MQTT__PASSWORD": raw})
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == raw
    assert repr(s.mqtt.password) == "SecretStr('**********')" and str(s.mqtt.password) == "**********"
    assert '"password":"**********"' in s.model_dump_json()


@pytest.mark.parametrize(("env", "message"), [
    ({"GENESIS_MQTT__TOPIC_PREFIX": "home/#"}, "mqtt.topic_prefix"),
    ({"GENESIS_MQTT__TOPIC_PREFIX": "/genesis"}, "mqtt.topic_prefix"),
    ({"GENESIS_MQTT__QOS": "3"}, "mqtt.qos"),
    ({"GENESIS_MQTT__PASSWORD": "secret-word"}, "a password needs a username"),
    ({"GENESIS_MQTT__EVENTS": "[zone_enter, smoke]"}, "mqtt.events"),
    ({"GENESIS_MQTT__BUFFER_MESSAGES": "0"}, "mqtt.buffer_messages"),
    ({"GENESIS_MQTT__STATE_HOLD_S": "-1"}, "mqtt.state_hold_s"),
    ({"GENESIS_MQTT__SNAPSHOT__CROP": "body"}, "mqtt.snapshot.crop"),
    ({"GENESIS_MQTT__SNAPSHOT__MAX_SIDE": "8"}, "mqtt.snapshot.max_side"),
    ({"GENESIS_MQTT__TLS__CERT_FILE": "/etc/hostname"}, "cert_file and key_file go together"),
    ({"GENESIS_PRIVACY__METHOD": "smudge"}, "privacy.method"),
    ({"GENESIS_PRIVACY__BLOCKS": "1"}, "privacy.blocks"),
])
def test_bad_values_name_the_field(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert message in str(err.value)
    assert "secret-word" not in str(err.value)


def test_per_camera_blur_mode() -> None:
    s = load_settings(environ={"GENESIS_PRIVACY__BLUR_UNENROLLED_FACES": "true"})
    assert s.blur_mode(CameraConfig(id="a")) == "unenrolled"
    assert s.blur_mode(CameraConfig(id="b", blur_faces="everyone")) == "everyone"
    assert s.blur_mode(CameraConfig(id="c", blur_faces="off")) == "off"
    with pytest.raises(ValueError, match="blur_faces"):
        CameraConfig(id="d", blur_faces="some")  # type: ignore[arg-type]


def test_zone_names_become_safe_topic_levels() -> None:
    assert topic_level("front yard") == "front_yard"
    assert topic_level("a/b+#") == "a_b__"
    assert topic_level("lobby-2.east") == "lobby-2.east"
