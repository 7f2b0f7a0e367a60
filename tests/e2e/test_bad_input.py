"""Bad input: a clear one-line error, a non-zero exit, and nothing half-written."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

from tests.e2e.conftest import CLI


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines, "no error message"
    err = [ln for ln in lines if ln.startswith("error:")]
    assert len(err) == 1, stderr
    return err[0]


def test_missing_video(cli: CLI, tmp_path: Path) -> None:
    proc = cli("run", "--source", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "out"), check=False)
    assert proc.returncode != 0
    assert "video file not found" in error_line(proc.stderr) and "nope.mp4" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "genesis.db").exists()


def test_corrupt_video(cli: CLI, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(50_000))
    proc = cli("run", "--source", str(bad), "--out", str(tmp_path / "out"), check=False)
    assert proc.returncode != 0
    assert "corrupt.mp4" in error_line(proc.stderr)
    assert not (tmp_path / "out" / "report.json").exists()
    assert not (tmp_path / "genesis.db").exists()


def test_photo_without_a_face_enrolls_nothing(cli: CLI, tmp_path: Path, shared_dir: Path) -> None:
    cat = tmp_path / "cat.png"
    cv2.imwrite(str(cat), cv2.cvtColor(data.cat(), cv2.COLOR_RGB2BGR))
    good = shared_dir / "models" / "faces" / "obama.jpg"
    proc = cli("enroll", "obama", str(good), str(cat), check=False)
    assert proc.returncode != 0
    line = error_line(proc.stderr)
    assert "cat.png" in line and "no face" in line
    listing = cli("identities")
    assert "no identities enrolled" in listing.stdout


def test_file_that_is_not_an_image(cli: CLI, tmp_path: Path) -> None:
    txt = tmp_path / "notes.jpg"
    txt.write_text("this is not a photo\n")
    proc = cli("enroll", "someone", str(txt), check=False)
    assert proc.returncode != 0
    assert "notes.jpg" in error_line(proc.stderr) and "not an image" in proc.stderr


def test_malformed_configuration_names_the_field(cli: CLI, tmp_path: Path, data_dir: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "detector:\n  confidence: 1.5\n"
        "cameras:\n  - id: a\n    zones:\n      - name: z\n        points: [[0, 0], [1, 0]]\n"
    )
    proc = cli("run", "--config", str(cfg), "--source", str(data_dir / "video" / "opencv4nodejs_people.mp4"),
               check=False)
    assert proc.returncode == 2
    line = error_line(proc.stderr)
    assert "detector.confidence" in line and "cameras.0.zones.0.points" in line
    assert not (tmp_path / "genesis.db").exists()


def test_unknown_key_in_configuration(cli: CLI, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("recognition:\n  max_attempt: 3\n")
    proc = cli("identities", "--config", str(cfg), check=False)
    assert proc.returncode == 2
    assert "recognition.max_attempt" in error_line(proc.stderr)


def test_invalid_yaml(cli: CLI, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("detector: [unclosed\n")
    proc = cli("models", "--config", str(cfg), check=False)
    assert proc.returncode == 2
    assert "invalid YAML" in error_line(proc.stderr)


def test_missing_model_is_named(cli: CLI, tmp_path: Path) -> None:
    cli.env["GENESIS_MODELS_DIR"] = str(tmp_path / "empty-models")
    proc = cli("enroll", "x", str(tmp_path / "whatever.jpg"), check=False)
    assert proc.returncode != 0
    line = error_line(proc.stderr)
    assert "face_detection_yunet_2023mar_int8bq.onnx" in line and "genesis models pull" in line
