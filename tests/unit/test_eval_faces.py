"""Face identification evaluation: the split rules on a made-up tree, and SFace on the real photos.

The real run is the command of docs/recognition.md (SFace, deepface's threshold 0.593, the pipeline's
margin 0.05), which measured top-1 26/26 and 8/8 strangers rejected; the floors below leave room
for a photo or two.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from genesis.eval.faces import _parse_named_paths, load_dataset, main


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_split_every_other_photo_and_extras(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    for i in range(5):
        _touch(root / "known" / "ann" / f"a{i}.jpg")
    _touch(root / "known" / "ann" / "notes.txt")
    for i in range(2):
        _touch(root / "known" / "bob" / f"b{i}.png")
    _touch(root / "unknown" / "x.jpg")
    _touch(root / "group" / "ann_and_bob.jpg")
    bob_extra = _touch(tmp_path / "elsewhere" / "bob_extra.jpg")
    cy = [_touch(tmp_path / "elsewhere" / "cy1.jpg"), _touch(tmp_path / "elsewhere" / "cy2.jpg")]

    ds = load_dataset(root, {"bob": [bob_extra], "cy": cy[:1]}, {"cy": cy[1:]})
    known = root / "known"
    assert ds.enroll["ann"] == [known / "ann" / f"a{i}.jpg" for i in (0, 2, 4)]
    assert ds.probes["ann"] == [known / "ann" / f"a{i}.jpg" for i in (1, 3)]
    # Extra enrollment photos replace the folder's share of enrollment: the whole folder is probed.
    assert ds.enroll["bob"] == [bob_extra]
    assert ds.probes["bob"] == [known / "bob" / "b0.png", known / "bob" / "b1.png"]
    assert ds.enroll["cy"] == cy[:1] and ds.probes["cy"] == cy[1:]
    assert ds.unknown == [root / "unknown" / "x.jpg"]
    assert ds.group == [root / "group" / "ann_and_bob.jpg"]


def test_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "nowhere")
    _touch(tmp_path / "known" / "ann" / "a0.jpg")
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg"):
        load_dataset(tmp_path, {"bob": [tmp_path / "missing.jpg"]})
    with pytest.raises(ValueError, match="no enrollment photo"):
        load_dataset(tmp_path, None, {"cy": [tmp_path / "known" / "ann" / "a0.jpg"]})
    with pytest.raises(ValueError, match="NAME=photo"):
        _parse_named_paths(["no-equals-sign"])
    assert _parse_named_paths(["a=x.jpg,y.jpg", "a=z.jpg"]) == {"a": [Path("x.jpg"), Path("y.jpg"), Path("z.jpg")]}


def test_group_labels_from_labels_csv(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    _touch(root / "known" / "ann" / "a0.jpg")
    (tmp_path / "labels.csv").write_text(
        "file,role,identity\n"
        "faces/group/couple.jpg,group (2 faces),ann + 1 unlabeled person\n"
        "faces/group/two.jpg,group (2 faces),ann + bob (file name)\n"
        "faces/known/ann/a0.jpg,known,ann\n",
        encoding="utf-8",
    )
    ds = load_dataset(root)
    assert {"ann"} <= ds.group_labels["couple.jpg"]
    assert {"ann", "bob"} <= ds.group_labels["two.jpg"]
    assert "a0.jpg" not in ds.group_labels


def test_missing_root_is_a_clean_error(tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nowhere"), "--models-dir", str(models_dir)]) == 2
    assert "error:" in capsys.readouterr().err


def run_eval(model: str, data_dir: Path, shared_dir: Path, models_dir: Path, out: Path) -> tuple[dict[str, Any], str]:
    faces = shared_dir / "models" / "faces"
    argv = [
        str(data_dir / "faces"),
        "--models-dir", str(models_dir),
        "--model", model,
        "--extra", f"obama={faces / 'obama.jpg'},{faces / 'obama2.jpg'},{faces / 'obama_small.jpg'},"
                   f"{faces / 'obama1.jpg'}",
        "--extra", f"biden={faces / 'biden.jpg'}",
        "--extra", f"kit={faces / 'kit_harington_john1.jpeg'}",
        "--extra", f"rose={faces / 'rose_leslie_img1.jpg'}",
        "--extra-probe", f"biden={faces / 'biden2.jpg'}",
        "--extra-probe", f"kit={faces / 'kit_harington_john2.jpeg'}",
        "--extra-probe", f"rose={faces / 'rose_leslie_img2.jpg'}",
        "--json", str(out),
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return json.loads(out.read_text(encoding="utf-8")), printed.getvalue()


@pytest.fixture(scope="module")
def sface_report(
    data_dir: Path, shared_dir: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], str]:
    return run_eval("SFace", data_dir, shared_dir, models_dir, tmp_path_factory.mktemp("eval-faces") / "sface.json")


def test_dlib_with_its_own_alignment_rejects_strangers(
    data_dir: Path, shared_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    """Dlib aligned on dlib's own chip template: deepface's 0.07 then names the enrolled and nobody else."""
    report, _ = run_eval("Dlib", data_dir, shared_dir, models_dir, tmp_path / "dlib.json")
    assert report["threshold"] == pytest.approx(0.07) and report["margin"] == pytest.approx(0.005)
    assert report["top1_accuracy"] >= 0.9
    assert report["unknown_rejection"] == 1.0
    assert report["group_false_names"] == 0


def test_sface_on_the_shared_photos(sface_report: tuple[dict[str, Any], str]) -> None:
    report, _ = sface_report
    assert {"top1_accuracy", "unknown_rejection"} <= set(report)
    assert report["model"] == "SFace"
    assert report["threshold"] == pytest.approx(0.593)  # deepface's default
    assert report["probes"] >= 25 and report["probes_no_face"] == 0
    assert report["unknown_faces"] >= 8
    assert report["top1_accuracy"] >= 0.9
    assert report["unknown_rejection"] == 1.0
    assert report["group_false_names"] == 0
    assert report["genuine_p95"] < report["threshold"]
    assert report["ms_per_face"] > 0
    roles = {f["role"] for f in report["faces"]}
    assert roles == {"probe", "unknown", "group"}


def test_the_table_is_printed(sface_report: tuple[dict[str, Any], str]) -> None:
    _, printed = sface_report
    assert "| model" in printed and "SFace" in printed
    assert "top-1" in printed and "unknown rejected" in printed
