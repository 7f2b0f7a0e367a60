"""`genesis eval faces DIR --json FILE`: the real command on the shared photos (SFace), floors asserted,
and the one-folder-per-identity layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genesis.cli.main import app
from genesis.eval.faces import load_dataset, tar_at_far


def test_eval_faces_command_sface(data_dir: Path, models_dir: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESIS_MODELS_DIR", str(models_dir))
    monkeypatch.delenv("GENESIS_TEST_REDIS_PORT", raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["eval", "faces", str(data_dir / "faces"), "--json", str(out), "--model", "SFace"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["model"] == "SFace" and report["threshold"] == pytest.approx(0.593)
    assert report["probes"] >= 20 and report["identities"] == 9
    assert report["top1_accuracy"] >= 0.9
    assert report["unknown_rejection"] == 1.0 and report["unknown_faces"] >= 8
    assert report["tar_at_far_1pct"] >= 0.9
    assert report["impostor_pairs"] >= 8 * report["identities"]
    assert report["timings"]["ms_per_face"] > 0
    assert "TAR @ FAR 1%" in result.output


def test_eval_faces_bad_root_is_a_clean_error(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENESIS_MODELS_DIR", str(models_dir))
    monkeypatch.delenv("GENESIS_TEST_REDIS_PORT", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["eval", "faces", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "error:" in result.output
    result = CliRunner().invoke(app, ["eval", "faces", str(tmp_path), "--model", "VGG"])
    assert result.exit_code == 2


def test_one_folder_per_identity_layout(tmp_path: Path) -> None:
    for name, n in (("ann", 4), ("bob", 3)):
        for i in range(n):
            p = tmp_path / name / f"{i}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "x.jpg").write_bytes(b"")
    ds = load_dataset(tmp_path)
    assert sorted(ds.enroll) == ["ann", "bob"]
    assert [p.name for p in ds.enroll["ann"]] == ["0.jpg", "2.jpg"] and [p.name for p in ds.probes["bob"]] == ["1.jpg"]
    assert [p.name for p in ds.unknown] == ["x.jpg"]


def test_tar_at_far() -> None:
    impostor = [0.5 + 0.001 * i for i in range(200)]  # 1% of 200 = 2 accepted: threshold is the 3rd smallest
    tar, thr = tar_at_far([0.2, 0.4, 0.5015, 0.6], impostor)
    assert thr == pytest.approx(0.502)
    assert tar == pytest.approx(0.75)
    assert tar_at_far([], impostor) == (None, None)
