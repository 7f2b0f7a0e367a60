"""Leave-one-sequence-out calibration of a detector preset's thresholds and person priors (MOT17 layout).

For each fold, the values (confidence, NMS IoU, ``min_height_px``, ``max_aspect``) are chosen on all
sequences but one and measured on the one left out, so the figures say how the values do on a sequence
they were not tuned on. The model runs once per frame: its candidate boxes before any threshold (score >=
``FLOOR``, before NMS) are cached on disk, and every value searched is applied to them by the same
post-processing the detector runs (``YoloxDetector.postprocess``: threshold, NMS, person prior), so a
cached figure is the figure the pipeline gets (``tests/unit/test_calibrate.py`` checks it box for box).

The choice on the tuning sequences: the values with the largest worst-case margin to the target,
``min over tuning sequences of min(precision - P, recall(vis >= 0.5) - R)`` (ties: the lower confidence,
then the rest in grid order). Maximising the worst margin rather than the recall alone keeps a value that
only just passes on the tuning sequences from being picked.

A prior (minimum height, maximum aspect) is tried as a variant of the search: it is kept when the held-out
margin of every fold is at least that of the search without it, and better on one.

    python -m genesis.eval.calibrate ../shared/data/mot17 --preset crowd --models-dir MODELS [--stride 2]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genesis.backends.detectors.common import nms_detections, person_prior, sort_detections
from genesis.domain import Detection
from genesis.eval.detection import (
    VISIBLE,
    MotFormatError,
    MotSequence,
    SequenceResult,
    evaluate_frame,
    load_mot_sequences,
    read_frame,
)
from genesis.eval.table import markdown_table

FLOOR = 0.1
"""Candidates scoring below this are not cached (the lowest confidence searched must not be lower)."""

TARGET_PRECISION = 0.90
TARGET_RECALL = 0.85
"""The issue's target: precision >= 0.90 at recall (people at least half visible) >= 0.85, every fold."""

CONFIDENCES: tuple[float, ...] = tuple(round(0.25 + 0.05 * i, 2) for i in range(12))  # 0.25 .. 0.80
NMS_IOUS: tuple[float, ...] = (0.3, 0.45, 0.6)
MIN_HEIGHTS: tuple[float, ...] = (0.0, 24.0, 32.0, 40.0)
MAX_ASPECTS: tuple[float, ...] = (0.0, 1.25, 1.0, 0.8)

CALIBRATED_PRESETS = ("crowd", "overhead")
"""Presets of the yolox family, whose raw candidates this module can cache."""


@dataclass(frozen=True, slots=True, order=True)
class Params:
    """The values searched (the detector config fields of the same names)."""

    confidence: float
    iou: float
    min_height_px: float = 0.0
    max_aspect: float = 0.0

    def label(self) -> str:
        return (f"conf {self.confidence:g}, NMS {self.iou:g}, min h {self.min_height_px:g} px, "
                f"max w/h {self.max_aspect:g}")


@dataclass(frozen=True, slots=True)
class Candidates:
    """One frame's boxes before threshold and NMS: x1, y1, x2, y2 (image pixels), score, class."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    image_shape: tuple[int, int]


def postprocess(c: Candidates, p: Params) -> list[Detection]:
    """What ``YoloxDetector.postprocess`` does with these values: threshold, NMS per class, person prior.
    (Greedy NMS on the boxes above a threshold keeps what NMS on all of them keeps above it.)"""
    dets: list[Detection] = []
    for cls in sorted({int(v) for v in c.classes}):
        mask = (c.scores >= p.confidence) & (c.classes == cls)
        if np.any(mask):
            dets.extend(nms_detections(c.boxes[mask].copy(), c.scores[mask], cls, p.iou))
    return person_prior(sort_detections(dets), p.min_height_px, p.max_aspect)


@dataclass(frozen=True, slots=True)
class CachedSequence:
    seq: MotSequence
    frames: tuple[int, ...]
    """Indices into ``seq`` of the frames used (stride, limit)."""
    candidates: tuple[Candidates, ...]

    @property
    def name(self) -> str:
        return self.seq.name


def _yolox_candidates(detector: Any, image: np.ndarray) -> Candidates:
    from genesis.backends.detectors.yolox import yolox_boxes

    blob, ratio = detector.preprocess(image)
    out = np.asarray(detector.session.run(None, {detector.input_name: blob})[0], dtype=np.float32)
    shape = (int(image.shape[0]), int(image.shape[1]))
    boxes, scores, classes = [], [], []
    for cls in detector.config.classes:
        b, s = yolox_boxes(out, detector.grid, detector.steps, ratio, shape, cls, FLOOR)
        boxes.append(b)
        scores.append(s)
        classes.append(np.full(len(s), cls, dtype=np.int64))
    return Candidates(np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes), shape)


def _sha(path: Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def cache_candidates(
    sequences: Sequence[MotSequence],
    detector: Any,
    weights: Path,
    cache_dir: Path,
    *,
    stride: int = 1,
    max_frames: int = 0,
    on_model_run: Callable[[MotSequence, int], None] | None = None,
) -> list[CachedSequence]:
    """Every ``stride``-th frame (at most ``max_frames`` per sequence; 0 = all) through the model once: the
    candidates are read from ``cache_dir`` when there, else computed and written. The cache key holds the
    weights' and the image's content hashes and the model's input size and preprocessing."""
    if stride < 1 or max_frames < 0:
        raise ValueError(f"stride must be >= 1 and max_frames >= 0, got {stride} and {max_frames}")
    cfg = detector.config
    key = f"{_sha(weights)}-{detector.size_hw[0]}x{detector.size_hw[1]}-{cfg.preprocess}-floor{FLOOR:g}"
    folder = Path(cache_dir).expanduser() / key
    folder.mkdir(parents=True, exist_ok=True)
    out: list[CachedSequence] = []
    for seq in sequences:
        idx = list(range(0, len(seq), stride))
        if max_frames:
            idx = idx[:max_frames]
        cands: list[Candidates] = []
        for i in idx:
            path = seq.frame_paths[i]
            file = folder / f"{seq.name}-{seq.frame_numbers[i]:06d}-{_sha(path, 12)}.npz"
            if file.is_file():
                with np.load(file, allow_pickle=False) as z:
                    cands.append(Candidates(z["boxes"], z["scores"], z["classes"],
                                            (int(z["shape"][0]), int(z["shape"][1]))))
                continue
            c = _yolox_candidates(detector, read_frame(path))
            tmp = file.with_suffix(".tmp.npz")
            np.savez(tmp, boxes=c.boxes, scores=c.scores, classes=c.classes, shape=np.array(c.image_shape))
            os.replace(tmp, file)
            cands.append(c)
            if on_model_run is not None:
                on_model_run(seq, i)
        out.append(CachedSequence(seq, tuple(idx), tuple(cands)))
    return out


def evaluate_cached(cs: CachedSequence, p: Params) -> SequenceResult:
    result = SequenceResult(name=cs.name)
    for i, c in zip(cs.frames, cs.candidates, strict=True):
        result = result.add(evaluate_frame(postprocess(c, p), cs.seq.gt[i], cs.seq.ignore[i]), 0.0)
    return result


def margin(r: SequenceResult) -> float:
    """How far a sequence's figures are above the target (negative: below it)."""
    return min(r.precision - TARGET_PRECISION, r.recall_visible - TARGET_RECALL)


@dataclass(frozen=True, slots=True)
class Variant:
    """A search space: which priors may be switched on."""

    name: str
    min_heights: tuple[float, ...] = (0.0,)
    max_aspects: tuple[float, ...] = (0.0,)

    def grid(self) -> list[Params]:
        return [Params(c, i, h, a) for c, i, h, a in
                itertools.product(CONFIDENCES, NMS_IOUS, self.min_heights, self.max_aspects)]


VARIANTS: tuple[Variant, ...] = (
    Variant("thresholds"),
    Variant("+ min height", min_heights=MIN_HEIGHTS),
    Variant("+ max aspect", max_aspects=MAX_ASPECTS),
    Variant("+ both", min_heights=MIN_HEIGHTS, max_aspects=MAX_ASPECTS),
)


class Table:
    """Every sequence's result for every value searched (computed once)."""

    def __init__(self, data: Sequence[CachedSequence], grid: Sequence[Params]) -> None:
        self.names = [d.name for d in data]
        self.results: dict[Params, dict[str, SequenceResult]] = {}
        for p in grid:
            self.results[p] = {d.name: evaluate_cached(d, p) for d in data}

    def choose(self, grid: Sequence[Params], tune: Sequence[str]) -> Params:
        """The values with the largest worst margin over ``tune`` (ties: lower confidence first)."""
        def key(p: Params) -> tuple[float, float]:
            return (-min(margin(self.results[p][n]) for n in tune), p.confidence)
        return min(grid, key=key)


@dataclass(frozen=True, slots=True)
class Fold:
    held_out: str
    tuned_on: tuple[str, ...]
    chosen: Params
    tuning: tuple[SequenceResult, ...]
    result: SequenceResult

    @property
    def meets(self) -> bool:
        return margin(self.result) >= 0.0


def leave_one_out(table: Table, grid: Sequence[Params]) -> list[Fold]:
    folds = []
    for held in table.names:
        tune = tuple(n for n in table.names if n != held)
        p = table.choose(grid, tune)
        folds.append(Fold(held, tune, p, tuple(table.results[p][n] for n in tune), table.results[p][held]))
    return folds


@dataclass(frozen=True, slots=True)
class Calibration:
    preset: str
    frames: int
    current: Params
    before: tuple[SequenceResult, ...]
    variants: tuple[tuple[Variant, tuple[Fold, ...], bool], ...]
    """Each search space, its folds, and whether its priors were kept."""
    chosen_variant: Variant
    folds: tuple[Fold, ...]
    final: Params
    after: tuple[SequenceResult, ...]
    holding: tuple[Params, ...]
    """Every value of the chosen variant's grid that meets the target on every sequence."""


def calibrate(data: Sequence[CachedSequence], preset: str, current: Params) -> Calibration:
    if len(data) < 2:
        raise ValueError("leave-one-sequence-out needs at least two sequences")
    full = sorted({p for v in VARIANTS for p in v.grid()} | {current})
    table = Table(data, full)
    base = leave_one_out(table, VARIANTS[0].grid())
    runs: list[tuple[Variant, tuple[Fold, ...], bool]] = [(VARIANTS[0], tuple(base), True)]
    kept_h, kept_a = False, False
    for v in VARIANTS[1:3]:
        folds = leave_one_out(table, v.grid())
        gains = [margin(f.result) - margin(b.result) for f, b in zip(folds, base, strict=True)]
        keep = all(g >= -1e-12 for g in gains) and any(g > 1e-12 for g in gains)
        runs.append((v, tuple(folds), keep))
        kept_h = kept_h or (keep and v.min_heights != (0.0,))
        kept_a = kept_a or (keep and v.max_aspects != (0.0,))
    both = leave_one_out(table, VARIANTS[3].grid())
    runs.append((VARIANTS[3], tuple(both), kept_h and kept_a))
    chosen = Variant(
        "thresholds" + (" + min height" if kept_h else "") + (" + max aspect" if kept_a else ""),
        MIN_HEIGHTS if kept_h else (0.0,),
        MAX_ASPECTS if kept_a else (0.0,),
    )
    grid = chosen.grid()
    folds = leave_one_out(table, grid)
    final = table.choose(grid, table.names)
    holding = tuple(p for p in grid if all(margin(table.results[p][n]) >= 0.0 for n in table.names))
    return Calibration(
        preset=preset,
        frames=sum(len(d.frames) for d in data),
        current=current,
        before=tuple(table.results[current][n] for n in table.names),
        variants=tuple(runs),
        chosen_variant=chosen,
        folds=tuple(folds),
        final=final,
        after=tuple(table.results[final][n] for n in table.names),
        holding=holding,
    )


def _fig(r: SequenceResult) -> str:
    return f"{r.precision:.3f} / {r.recall_visible:.3f}"


def format_calibration(cal: Calibration) -> str:
    lines = [
        f"preset {cal.preset}: {cal.frames} frames; target precision >= {TARGET_PRECISION:g} at recall "
        f"(visibility >= {VISIBLE:g}) >= {TARGET_RECALL:g} on every held-out sequence",
        "",
        "Leave one sequence out, per search space (held-out precision / recall vis>=0.5):",
        "",
    ]
    names = [f.held_out for f in cal.folds]
    rows = []
    for v, folds, keep in cal.variants:
        rows.append([v.name, *(f"{_fig(f.result)} ({f.chosen.confidence:g}, {f.chosen.iou:g}, "
                               f"{f.chosen.min_height_px:g}, {f.chosen.max_aspect:g})" for f in folds),
                     "kept" if keep else "not kept"])
    lines.append(markdown_table(["search (chosen conf, NMS, min h, max w/h)", *names, "prior"], rows))
    lines += ["", f"Folds of the search kept ({cal.chosen_variant.name}):", ""]
    frows = []
    for f in cal.folds:
        r = f.result
        frows.append([f.held_out, " + ".join(f.tuned_on), f"{f.chosen.confidence:g}", f"{f.chosen.iou:g}",
                      f"{f.chosen.min_height_px:g}", f"{f.chosen.max_aspect:g}",
                      " ".join(f"{t.precision:.3f}/{t.recall_visible:.3f}" for t in f.tuning),
                      str(r.tp), str(r.fp), f"{r.precision:.3f}", f"{r.recall_visible:.3f}", f"{r.recall:.3f}",
                      "yes" if f.meets else "NO"])
    lines.append(markdown_table(
        ["held out", "tuned on", "conf", "NMS", "min h px", "max w/h", "tuning P/R vis", "tp", "fp",
         "precision", "recall vis>=0.5", "recall", "target"], frows))
    lines += ["", f"Preset before ({cal.current.label()}) and after ({cal.final.label()}):", ""]
    brows = [[b.name, _fig(b), _fig(a), f"{b.fp} -> {a.fp}"] for b, a in zip(cal.before, cal.after, strict=True)]
    lines.append(markdown_table(["sequence", "before P / R vis", "after P / R vis", "fp"], brows))
    lines.append("")
    if cal.holding:
        confs = sorted({p.confidence for p in cal.holding})
        lines.append(f"{len(cal.holding)} of {len(cal.chosen_variant.grid())} values meet the target on every "
                     f"sequence; confidences among them {confs[0]:g}..{confs[-1]:g}; chosen on all sequences: "
                     f"{cal.final.label()}")
    else:
        lines.append("No value searched meets the target on every sequence; chosen on all sequences (largest "
                     f"worst margin): {cal.final.label()}")
    met = sum(f.meets for f in cal.folds)
    lines.append(f"held-out folds meeting the target: {met} of {len(cal.folds)}")
    return "\n".join(lines)


def current_params(preset: str, models_dir: Path, threads: int) -> tuple[Any, Params, Path]:
    from genesis.backends.detectors import build_detector
    from genesis.backends.weights import resolve
    from genesis.config.inference import detector_config

    if preset not in CALIBRATED_PRESETS:
        raise ValueError(f"preset {preset} cannot be calibrated here: one of {', '.join(CALIBRATED_PRESETS)}")
    config = detector_config({"preset": preset, "threads": threads})
    raw = replace_config(config)
    detector = build_detector(raw, models_dir)
    p = Params(config.confidence, config.iou, config.min_height_px, config.max_aspect)
    return detector, p, resolve(config.weights, models_dir)


def replace_config(config: Any) -> Any:
    """The same detector with the searched fields at their most permissive (the cache holds raw candidates)."""
    return config.model_copy(update={"confidence": FLOOR, "min_height_px": 0.0, "max_aspect": 0.0})


def main(argv: Sequence[str] | None = None) -> int:
    from genesis.backends.weights import WeightsError
    from genesis.config import ModelsConfig

    parser = argparse.ArgumentParser(
        prog="python -m genesis.eval.calibrate",
        description="Leave-one-sequence-out calibration of a detector preset on MOTChallenge sequences.",
    )
    parser.add_argument("data", type=Path, help="a folder of MOT sequence folders (../shared/data/mot17)")
    parser.add_argument("--preset", default="crowd", choices=CALIBRATED_PRESETS)
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path(os.environ.get("GENESIS_MODELS_DIR", str(ModelsConfig().path))).expanduser(),
        help="folder with the weight files (default: $GENESIS_MODELS_DIR or %(default)s)",
    )
    parser.add_argument("--stride", type=int, default=1, help="every Nth frame (default: %(default)s)")
    parser.add_argument("--max-frames", type=int, default=0, help="at most this many frames per sequence (0 = all)")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/genesis/calibrate"),
                        help="where raw candidates are kept between runs (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = its default)")
    args = parser.parse_args(argv)
    try:
        detector, current, weights = current_params(args.preset, args.models_dir, args.threads)
        sequences = load_mot_sequences(args.data)
        data = cache_candidates(sequences, detector, weights, args.cache, stride=args.stride,
                                max_frames=args.max_frames)
        cal = calibrate(data, args.preset, current)
    except (MotFormatError, WeightsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_calibration(cal))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
