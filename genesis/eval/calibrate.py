"""Leave-one-sequence-out calibration of a detector preset's thresholds and person priors (MOT17 layout).

For each fold, the values (confidence, NMS IoU, ``min_height_px``, ``max_aspect``) are chosen on all
sequences but one and measured on the one left out, so the figures say how the values do on a sequence
they were not tuned on. The model runs once per frame: its candidate boxes before any threshold (score >=
``FLOOR``, before NMS) are cached on disk, and every value searched is applied to them by the same
post-processing the detector runs (``decode_yolox``'s threshold and NMS, then ``person_prior``), so a
cached figure is the figure the pipeline gets (``tests/unit/test_calibrate.py`` checks it box for box).

The choice on the tuning sequences: for each NMS and prior value, the confidences that meet the target on
every tuning sequence; the widest run of neighbouring ones wins, and its middle is chosen. A value at the
edge of what works on the tuning sequences (the lowest confidence that just keeps precision, as the preset
had) is what fails on a new sequence; the middle of the widest interval is the value least sensitive to a
shift in the scores. (Maximising the worst margin to the target instead was tried: it picks an edge, 0.7,
when MOT17-11 is held out, and fails that fold at stride 2.)

Generic priors (fixed values, not searched: a box at most 1.25 times as wide as it is tall, at least 24 px
tall) are then tried one after the other on top of each fold's values: a prior is kept when the held-out
margin is no worse on any fold and better on at least one.

    python -m genesis.eval.calibrate ../shared/data/mot17 --preset crowd --models-dir MODELS [--stride 2]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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

CONFIDENCES: tuple[float, ...] = tuple(round(0.25 + 0.05 * i, 2) for i in range(15))  # 0.25 .. 0.95
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
    """What the built detector does with these values: threshold, NMS per class (``decode_yolox``), then the
    person prior (``PriorDetector``).
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


def _read_cached(file: Path) -> Candidates | None:
    """A cached frame, or None when missing or unreadable (a damaged file is computed again)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            c = Candidates(np.asarray(z["boxes"], dtype=np.float64), np.asarray(z["scores"], dtype=np.float64),
                           np.asarray(z["classes"], dtype=np.int64), (int(z["shape"][0]), int(z["shape"][1])))
    except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile):
        return None
    n = len(c.scores)
    if c.boxes.shape != (n, 4) or c.classes.shape != (n,):
        return None
    return c


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
            cached = _read_cached(file)
            if cached is not None:
                cands.append(cached)
                continue
            c = _yolox_candidates(detector, read_frame(path))
            tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npz")  # another run may write the same frame
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


def thresholds_grid() -> list[Params]:
    return [Params(c, i) for c, i in itertools.product(CONFIDENCES, NMS_IOUS)]


class Table:
    """Each sequence's result for a value, computed when first asked for."""

    def __init__(self, data: Sequence[CachedSequence]) -> None:
        self.data = {d.name: d for d in data}
        self.names = [d.name for d in data]
        self._results: dict[tuple[Params, str], SequenceResult] = {}

    def result(self, p: Params, name: str) -> SequenceResult:
        key = (p, name)
        if key not in self._results:
            self._results[key] = evaluate_cached(self.data[name], p)
        return self._results[key]

    def worst(self, p: Params, names: Sequence[str]) -> float:
        return min(margin(self.result(p, n)) for n in names)

    def choose_thresholds(self, tune: Sequence[str], keep_iou: float | None = None) -> Params:
        """Confidence and NMS IoU (priors off): the middle of the widest run of neighbouring confidences that
        meet the target on every sequence of ``tune``, over the NMS values; ties: NMS ``keep_iou`` (the preset's
        own: change only what the data asks for), then the larger worst margin, then grid order. When nothing
        meets the target: the largest worst margin (ties: lower confidence)."""
        best: Params | None = None
        best_key = (0, False, -1.0)
        for iou in NMS_IOUS:
            run: list[Params] = []
            for p in [*(Params(c, iou) for c in CONFIDENCES), None]:
                if p is not None and self.worst(p, tune) >= 0.0:
                    run.append(p)
                    continue
                if run:
                    mids = sorted({run[(len(run) - 1) // 2], run[len(run) // 2]})
                    centre = max(mids, key=lambda q: self.worst(q, tune))
                    key = (len(run), iou == keep_iou, self.worst(centre, tune))
                    if key > best_key:
                        best, best_key = centre, key
                run = []
        if best is not None:
            return best
        return min(thresholds_grid(), key=lambda p: (-self.worst(p, tune), p.confidence))


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


@dataclass(frozen=True, slots=True)
class PriorTrial:
    """One generic prior (a fixed value, not searched) added to each fold's values (thresholds and the priors
    kept before it)."""

    name: str
    field: str
    value: float
    without: tuple[Fold, ...]
    with_prior: tuple[Fold, ...]

    @property
    def gains(self) -> list[float]:
        return [margin(w.result) - margin(b.result) for w, b in zip(self.with_prior, self.without, strict=True)]

    @property
    def kept(self) -> bool:
        """Held-out margin no worse on any fold and better on at least one."""
        return all(g >= -1e-12 for g in self.gains) and any(g > 1e-12 for g in self.gains)


PRIORS: tuple[tuple[str, str, float], ...] = (
    # A box wider than 1.25 times its height is no standing or walking person: the feet of someone beyond the
    # top of the frame, a bag, a bench. Scale-free, so it holds at any resolution.
    ("max aspect 1.25", "max_aspect", 1.25),
    # Shorter than 24 px: too small to count or track reliably at 1080p; in pixels, so it depends on the
    # camera's resolution (tried, not a default).
    ("min height 24 px", "min_height_px", 24.0),
)


def _fold_with(table: Table, fold: Fold, prior: dict[str, float]) -> Fold:
    """``fold``'s values with a prior added, measured again."""
    p = replace(fold.chosen, **prior)
    return Fold(fold.held_out, fold.tuned_on, p, tuple(table.result(p, n) for n in fold.tuned_on),
                table.result(p, fold.held_out))


def _fold(table: Table, held: str, choose: Callable[[tuple[str, ...]], Params]) -> Fold:
    tune = tuple(n for n in table.names if n != held)
    p = choose(tune)
    return Fold(held, tune, p, tuple(table.result(p, n) for n in tune), table.result(p, held))


@dataclass(frozen=True, slots=True)
class Calibration:
    preset: str
    frames: int
    current: Params
    before: tuple[SequenceResult, ...]
    thresholds_only: tuple[Fold, ...]
    priors: tuple[PriorTrial, ...]
    folds: tuple[Fold, ...]
    """The whole procedure (thresholds, then the kept priors) per held-out sequence."""
    final: Params
    after: tuple[SequenceResult, ...]
    holding: tuple[Params, ...]
    """Every confidence and NMS value (with the kept priors) that meets the target on every sequence."""


def calibrate(data: Sequence[CachedSequence], preset: str, current: Params) -> Calibration:
    """Leave one sequence out: thresholds chosen on the others, then each prior tried on top of them."""
    if len(data) < 2:
        raise ValueError("leave-one-sequence-out needs at least two sequences")
    table = Table(data)

    def thresholds(tune: Sequence[str]) -> Params:
        return table.choose_thresholds(tune, current.iou)

    base = tuple(_fold(table, held, thresholds) for held in table.names)
    trials = []
    kept: dict[str, float] = {}
    without = base
    for name, field, value in PRIORS:  # each on top of the ones kept before it
        with_prior = tuple(_fold_with(table, f, {field: value}) for f in without)
        trial = PriorTrial(name, field, value, without, with_prior)
        trials.append(trial)
        if trial.kept:
            kept[field] = value
            without = with_prior

    def procedure(tune: Sequence[str]) -> Params:
        return replace(thresholds(tune), **kept)

    folds = tuple(_fold(table, held, procedure) for held in table.names)
    final = procedure(table.names)
    holding = tuple(p for p in (replace(q, **kept) for q in thresholds_grid()) if table.worst(p, table.names) >= 0.0)
    return Calibration(
        preset=preset,
        frames=sum(len(d.frames) for d in data),
        current=current,
        before=tuple(table.result(current, n) for n in table.names),
        thresholds_only=base,
        priors=tuple(trials),
        folds=folds,
        final=final,
        after=tuple(table.result(final, n) for n in table.names),
        holding=holding,
    )


def _fig(r: SequenceResult) -> str:
    return f"{r.precision:.3f} / {r.recall_visible:.3f}"


def _values(p: Params) -> str:
    return f"{p.confidence:g}, {p.iou:g}, {p.min_height_px:g}, {p.max_aspect:g}"


def format_calibration(cal: Calibration) -> str:
    lines = [
        f"preset {cal.preset}: {cal.frames} frames; target precision >= {TARGET_PRECISION:g} at recall "
        f"(visibility >= {VISIBLE:g}) >= {TARGET_RECALL:g} on every held-out sequence",
        "",
        "Held-out precision / recall vis>=0.5 (values chosen on the other sequences: conf, NMS, min h px, max w/h):",
        "",
    ]
    names = [f.held_out for f in cal.folds]
    rows = [["thresholds only", *(f"{_fig(f.result)} ({_values(f.chosen)})" for f in cal.thresholds_only), ""]]
    for t in cal.priors:
        rows.append([f"+ {t.name}", *(f"{_fig(f.result)} (fp {b.result.fp} -> {f.result.fp})"
                                      for f, b in zip(t.with_prior, t.without, strict=True)),
                     "kept" if t.kept else "not kept"])
    lines.append(markdown_table(["search", *names, "prior"], rows))
    kept = [t.name for t in cal.priors if t.kept]
    lines += ["", f"Folds of the whole procedure (thresholds{''.join(' + ' + k for k in kept)}):", ""]
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
    lines += ["", f"The preset as configured ({cal.current.label()}) and as chosen on all sequences "
              f"({cal.final.label()}):", ""]
    brows = [[b.name, _fig(b), _fig(a), f"{b.fp} -> {a.fp}"] for b, a in zip(cal.before, cal.after, strict=True)]
    lines.append(markdown_table(["sequence", "configured P / R vis", "chosen P / R vis", "fp"], brows))
    lines.append("")
    if cal.holding:
        by_iou: dict[float, list[float]] = {}
        for p in cal.holding:
            by_iou.setdefault(p.iou, []).append(p.confidence)
        spans = "; ".join(f"NMS {i:g}: conf {', '.join(f'{c:g}' for c in cs)}" for i, cs in sorted(by_iou.items()))
        lines.append(f"values that meet the target on every sequence (with the kept priors): {spans}")
    else:
        lines.append("no confidence and NMS value searched meets the target on every sequence")
    lines.append(f"chosen on all sequences: {cal.final.label()}")
    met = sum(f.meets for f in cal.folds)
    lines.append(f"held-out folds meeting the target: {met} of {len(cal.folds)}")
    return "\n".join(lines)


def current_params(
    preset: str, models_dir: Path, threads: int, input_size: tuple[int, int] | None = None,
) -> tuple[Any, Params, Path]:
    from genesis.backends.detectors import YoloxDetector, build_detector
    from genesis.backends.weights import resolve
    from genesis.config.inference import detector_config

    if preset not in CALIBRATED_PRESETS:
        raise ValueError(f"preset {preset} cannot be calibrated here: one of {', '.join(CALIBRATED_PRESETS)}")
    fields: dict[str, Any] = {"preset": preset, "threads": threads}
    if input_size is not None:
        fields["input_size"] = list(input_size)
    config = detector_config(fields)
    # the network and its decoding only: thresholds and priors are what is searched
    detector = build_detector(config.model_copy(update={"min_height_px": 0.0, "max_aspect": 0.0}), models_dir)
    if not isinstance(detector, YoloxDetector):
        raise ValueError(f"preset {preset} is not a yolox detector: its candidates cannot be cached here")
    p = Params(config.confidence, config.iou, config.min_height_px, config.max_aspect)
    return detector, p, resolve(config.weights, models_dir)


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
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="network input height and width (default: the preset's)")
    args = parser.parse_args(argv)
    try:
        size = (args.input_size[0], args.input_size[1]) if args.input_size else None
        detector, current, weights = current_params(args.preset, args.models_dir, args.threads, size)
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
