"""Leave-one-sequence-out calibration (genesis.eval.calibrate): the choice of a threshold and the folds."""

from __future__ import annotations

from pathlib import Path

from genesis.eval.calibrate import choose, folds, main
from genesis.eval.detection import SequenceResult


def _r(name: str, tp: int, fp: int) -> SequenceResult:
    return SequenceResult(name=name, frames=1, gt=tp + 5, gt_visible=tp, tp=tp, tp_visible=tp, fp=fp, fn=5)


TABLE = {
    0.3: {"a": _r("a", 90, 20), "b": _r("b", 50, 3), "c": _r("c", 40, 10)},
    0.4: {"a": _r("a", 85, 8), "b": _r("b", 48, 2), "c": _r("c", 35, 6)},
    0.5: {"a": _r("a", 80, 4), "b": _r("b", 45, 0), "c": _r("c", 30, 2)},
}


def test_the_lowest_threshold_that_reaches_the_precision_on_the_training_sequences() -> None:
    assert choose(TABLE, ["b"], 0.9) == 0.3  # 50 / 53
    assert choose(TABLE, ["a", "b"], 0.9) == 0.4  # pooled: 140 / 163 at 0.3, 133 / 143 at 0.4
    assert choose(TABLE, ["c"], 0.99) == 0.5  # never reached: the highest of the grid


def test_every_sequence_is_held_out_once_and_measured_at_the_threshold_chosen_without_it() -> None:
    out = folds(TABLE, ["a", "b", "c"], 0.9)
    assert [(f.held_out, f.threshold) for f in out] == [("a", 0.4), ("b", 0.5), ("c", 0.4)]
    assert out[2].test == TABLE[0.4]["c"] and out[2].train.tp == 85 + 48


def test_on_the_mot17_excerpts(models_dir: Path, data_dir: Path, capsys: object) -> None:
    assert main([str(data_dir / "mot17"), "--models-dir", str(models_dir), "--preset", "crowd",
                 "--thresholds", "0.3,0.5"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    lines = out.splitlines()
    assert len([ln for ln in lines if ln.startswith("| MOT17-")]) == 3, out  # one fold per sequence
    assert len([ln for ln in lines if ln.startswith(("| 0.3 ", "| 0.5 "))]) == 2 * 3, out  # the grid
