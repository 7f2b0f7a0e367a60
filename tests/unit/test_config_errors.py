"""Configuration errors name the field as the user wrote it."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from genesis.config import load_settings
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
