"""Configuration errors name the field as the user wrote it."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from genesis.config import Settings, load_settings
from genesis.config.cameras import CameraConfig, check_camera_id
from genesis.config.inference import DETECTOR_TYPES, YoloDetectorConfig, YoloxDetectorConfig
from genesis.config.settings import ConfigError


def test_detector_types_are_the_union_tags() -> None:
    tags = {typing.get_args(c.model_fields["type"].annotation)[0] for c in (YoloDetectorConfig, YoloxDetectorConfig)}
    assert tags == DETECTOR_TYPES


@pytest.mark.parametrize("body", ["detector:\n  confidence: 2\n", "detector:\n  type: yolox\n  confidence: 2\n"])
def test_detector_error_names_the_written_path(tmp_path: Path, body: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, environ={})
    assert "detector.confidence:" in str(exc.value)
    assert "detector.yolo" not in str(exc.value)


@pytest.mark.parametrize("camera", ["cam/+/#", "a" * 65, "lobby 2", "", "cam\x1b[2J", "caméra"])
def test_the_camera_id_rule_is_one_line_everywhere(camera: str) -> None:
    """The rule of the configuration's camera ids, for a --camera option too (issue 23, item 6)."""
    with pytest.raises(ConfigError, match="invalid camera id") as err:
        Settings().camera(camera)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)
    with pytest.raises(ValidationError):
        CameraConfig(id=camera)
    assert check_camera_id("lobby-2.b_1") == "lobby-2.b_1" and Settings().camera("lobby-2.b_1").id == "lobby-2.b_1"
