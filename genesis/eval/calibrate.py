"""Leave-one-sequence-out calibration of a preset's confidence threshold.

    python -m genesis.eval.calibrate ../shared/data/mot17 --models-dir MODELS [--preset crowd]
        [--target-precision 0.90] [--thresholds 0.25,0.3,...]

The preset's detector runs once on every frame at the lowest threshold of the grid; each threshold then keeps
the detections scoring at least that (greedy NMS by score gives the same boxes whether it runs before or after
such a cut). For each fold, one sequence is held out: the threshold is chosen on the others (the lowest, so the
highest recall, whose pooled precision reaches ``--target-precision``; the highest of the grid when none does),
and measured on the held-out sequence. Every fold is printed, then the per-sequence table of every threshold,
so a value that holds across folds can be picked by reading it (counting as in ``genesis.eval.detection``:
IoU >= 0.5, distractors ignored, gt clipped).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from genesis.domain import Detection
from genesis.eval.detection import (
    MotSequence,
    SequenceResult,
    _preset_config,
    _sum_results,
    evaluate_frame,
    load_mot_sequences,
    read_frame,
)
from genesis.eval.table import markdown_table

GRID = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


@dataclass(frozen=True, slots=True)
class Fold:
    held_out: str
    threshold: float
    train: SequenceResult
    test: SequenceResult


def score_sequences(detections: dict[str, list[list[Detection]]], sequences: Sequence[MotSequence],
                    thresholds: Sequence[float]) -> dict[float, dict[str, SequenceResult]]:
    """Counts per threshold and sequence, from the detections of every frame (at the lowest threshold)."""
    out: dict[float, dict[str, SequenceResult]] = {}
    for t in thresholds:
        per: dict[str, SequenceResult] = {}
        for seq in sequences:
            result = SequenceResult(name=seq.name)
            for i, dets in enumerate(detections[seq.name]):
                kept = [d for d in dets if d.score >= t]
                result = result.add(evaluate_frame(kept, seq.gt[i], seq.ignore[i]), 0.0)
            per[seq.name] = result
        out[t] = per
    return out


def choose(table: dict[float, dict[str, SequenceResult]], train: Sequence[str], target: float) -> float:
    """The lowest threshold whose pooled precision on ``train`` reaches ``target`` (else the highest)."""
    for t in sorted(table):
        if _sum_results("train", (table[t][n] for n in train)).precision >= target:
            return t
    return max(table)


def folds(table: dict[float, dict[str, SequenceResult]], names: Sequence[str], target: float) -> list[Fold]:
    out = []
    for held in names:
        train = [n for n in names if n != held]
        t = choose(table, train, target)
        out.append(Fold(held, t, _sum_results("train", (table[t][n] for n in train)), table[t][held]))
    return out


def run(data: Path, models_dir: Path, preset: str, thresholds: Sequence[float],
        threads: int = 1) -> tuple[dict[float, dict[str, SequenceResult]], list[MotSequence], str]:
    from genesis.backends.detectors import build_detector

    config = _preset_config(preset, threads, None).model_copy(update={"confidence": min(thresholds)})
    detector = build_detector(config, models_dir)
    sequences = load_mot_sequences(data)
    detections = {s.name: [detector.detect(read_frame(p)) for p in s.frame_paths] for s in sequences}
    return score_sequences(detections, sequences, thresholds), sequences, detector.name


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m genesis.eval.calibrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a folder of MOT sequences (../shared/data/mot17)")
    ap.add_argument("--models-dir", type=Path, required=True)
    ap.add_argument("--preset", default="crowd", help="default | crowd | overhead | doorway")
    ap.add_argument("--target-precision", type=float, default=0.90)
    ap.add_argument("--thresholds", default=",".join(str(t) for t in GRID))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    grid = sorted(float(t) for t in args.thresholds.split(","))
    table, sequences, name = run(args.data, args.models_dir, args.preset, grid, args.threads)
    names = [s.name for s in sequences]
    if len(names) < 2:
        print("leave-one-out needs at least two sequences", file=sys.stderr)
        return 2
    rows = [[f.held_out, f"{f.threshold:g}", f"{f.train.precision:.3f}", f"{f.train.recall_visible:.3f}",
             f"{f.test.precision:.3f}", f"{f.test.recall:.3f}", f"{f.test.recall_visible:.3f}", str(f.test.fp)]
            for f in folds(table, names, args.target_precision)]
    print(f"{args.preset} ({name}), target precision {args.target_precision:g}; leave one sequence out:")
    print(markdown_table(("held out", "threshold (chosen on the others)", "train precision", "train recall vis>=0.5",
                          "held-out precision", "held-out recall", "held-out recall vis>=0.5", "held-out fp"), rows))
    grid_rows = [[f"{t:g}", n, f"{table[t][n].precision:.3f}", f"{table[t][n].recall:.3f}",
                  f"{table[t][n].recall_visible:.3f}", str(table[t][n].tp), str(table[t][n].fp)]
                 for t in grid for n in names]
    print(markdown_table(("threshold", "sequence", "precision", "recall", "recall vis>=0.5", "tp", "fp"), grid_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
