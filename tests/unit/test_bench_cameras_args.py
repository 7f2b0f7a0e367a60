"""The cameras bench's ``--detector FIELD=VALUE``: the fields reach the workers' environment, and a bad field or
value stops the bench before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesis.bench.cameras import detector_env, main, preset_env
from genesis.config import load_settings


def test_fields_become_the_detector_variables_and_apply_to_every_preset() -> None:
    env = detector_env(["dequantize=false", " motion.min_changed = 0.001"])
    assert env == {"GENESIS_DETECTOR__DEQUANTIZE": "false", "GENESIS_DETECTOR__MOTION__MIN_CHANGED": "0.001"}
    default = load_settings(None, preset_env("default", 1, env)).detector
    assert default.dequantize is False and default.motion.min_changed == 0.001 and default.threads == 1
    crowd = load_settings(None, preset_env("crowd", 1, detector_env(["motion.min_changed=0.002"]))).detector
    assert crowd.type == "yolox" and crowd.motion.min_changed == 0.002
    assert preset_env("crowd", 0) == {"GENESIS_DETECTOR__PRESET": "crowd"}


@pytest.mark.parametrize("pair", ["dequantize", "=1", "motion..width=3"])
def test_not_a_field_and_value(pair: str) -> None:
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        detector_env([pair])


@pytest.mark.parametrize(("args", "says"), [
    (["--detector", "dequantize=maybe"], "detector.dequantize"),
    (["--detector", "nosuch=1"], "detector.nosuch"),
    (["--presets", "crowd", "--detector", "dequantize=false"], "detector.dequantize"),  # not a YOLOX field
    (["--max-width", "50"], "max_width"),
])
def test_a_bad_setting_stops_the_bench_before_it_starts(args: list[str], says: str, data_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--source", str(data_dir / "video" / "opencv4nodejs_people.mp4"), *args])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err
