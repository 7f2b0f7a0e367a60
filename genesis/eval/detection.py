"""Person-detector evaluation on MOTChallenge sequences (MOT17 layout).

A sequence folder holds ``seqinfo.ini``, ``img1/000001.jpg ...`` and ``gt/gt.txt`` with rows
``frame, id, bb_left, bb_top, bb_width, bb_height, consider, class, visibility``.

What is counted, and why:

- Ground truth is the pedestrians: rows with ``class == 1`` and ``consider == 1``, clipped to
  the image (people walking out of the picture have boxes past its border).
- MOT17 also boxes people that are not pedestrians (2 person on vehicle, 7 static person,
  8 distractor, 12 reflection). A COCO detector rightly sees them as persons; like the
  MOTChallenge devkit, a detection that matches one of them is neither a true nor a false
  positive: it is dropped and counted as ``ignored_det`` (``ignore_distractors=False`` turns
  that off and counts them as false positives).
- MOT17 boxes heavily occluded people too (visibility down to 0). Every pedestrian counts for
  the plain recall; ``recall_visible`` is the recall on people with visibility >= 0.5, the
  number that says whether the detector finds people a camera can actually see. Matching
  is done once, against all counted ground truth, so a detection of an occluded person is
  never a false positive.
- ``min_visibility`` > 0 removes less visible pedestrians from the ground truth altogether
  (counted as ``gt_ignored``); detections on them are dropped like those on distractors.
- Matching is greedy by descending score and one-to-one, at IoU >= ``iou``.
- Time is the mean wall time of ``detector.detect`` per frame (image decoding excluded),
  after one untimed warm-up call.
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from genesis.backends.detectors import PersonDetector
from genesis.domain import BBox, Detection
from genesis.eval.table import markdown_table

PEDESTRIAN = 1
DISTRACTOR_CLASSES: frozenset[int] = frozenset({2, 7, 8, 12})
"""MOT17 classes that are people but not pedestrians: on vehicle, static, distractor, reflection."""

VISIBLE = 0.5
"""Visibility from which a pedestrian counts as clearly visible (``recall_visible``)."""


class MotFormatError(ValueError):
    """A MOTChallenge sequence folder is missing a file or has a malformed one."""


@dataclass(frozen=True, slots=True)
class GtBox:
    """One ground-truth pedestrian in one frame (0-based pixel box)."""

    box: BBox
    track_id: int
    visibility: float


@dataclass(frozen=True, slots=True)
class MotSequence:
    """The frames of one sequence that have an image, with their annotations.

    ``gt[i]`` and ``ignore[i]`` belong to ``frame_paths[i]``. Annotations of frames without an
    image (MOT17 excerpts keep only the first frames) are dropped.
    """

    name: str
    width: int
    height: int
    frame_rate: float
    frame_numbers: tuple[int, ...]
    frame_paths: tuple[Path, ...]
    gt: tuple[tuple[GtBox, ...], ...]
    ignore: tuple[tuple[BBox, ...], ...]
    """Person-like boxes that are not pedestrians (``DISTRACTOR_CLASSES``)."""

    @property
    def gt_boxes(self) -> list[list[BBox]]:
        """Pedestrian boxes per frame, x1, y1, x2, y2."""
        return [[g.box for g in frame] for frame in self.gt]

    def __len__(self) -> int:
        return len(self.frame_paths)


def _mot_box(left: float, top: float, width: float, height: float, clip: tuple[int, int] | None) -> BBox:
    # MOTChallenge pixel coordinates start at 1; detectors (and numpy) start at 0.
    x1, y1 = left - 1.0, top - 1.0
    x2, y2 = x1 + width, y1 + height
    if clip is not None:
        w, h = clip
        x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
        y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
    return (x1, y1, x2, y2)


def load_mot_sequence(seq_dir: Path, clip_to_image: bool = True) -> MotSequence:
    """Read one MOTChallenge sequence folder (``seqinfo.ini``, image folder, ``gt/gt.txt``).

    MOT17 boxes of people who walk out of the picture extend past its border (x1 = -349 ...);
    a detector can only box the part it sees, so by default the boxes are clipped to the image,
    and boxes left with no area are dropped. Without clipping such a person is hardly ever
    matched at IoU 0.5, and a correct detection of them becomes a false positive.
    """
    seq_dir = Path(seq_dir)
    info_path = seq_dir / "seqinfo.ini"
    if not info_path.is_file():
        raise MotFormatError(f"{seq_dir} is not a MOTChallenge sequence: {info_path.name} is missing")
    parser = configparser.ConfigParser()
    parser.read(info_path)
    if not parser.has_section("Sequence"):
        raise MotFormatError(f"{info_path} has no [Sequence] section")
    info = parser["Sequence"]
    try:
        width, height = int(info["imWidth"]), int(info["imHeight"])
        frame_rate = float(info["frameRate"])
    except (KeyError, ValueError) as exc:
        raise MotFormatError(f"{info_path}: imWidth, imHeight and frameRate must be numbers ({exc})") from exc
    name = info.get("name", seq_dir.name)
    im_dir = seq_dir / info.get("imDir", "img1")
    im_ext = info.get("imExt", ".jpg")

    frames: dict[int, Path] = {}
    for path in sorted(im_dir.glob(f"*{im_ext}")):
        try:
            frames[int(path.stem)] = path
        except ValueError:
            continue  # not a numbered frame
    if not frames:
        raise MotFormatError(f"{im_dir} holds no numbered {im_ext} frames")

    gt_path = seq_dir / "gt" / "gt.txt"
    if not gt_path.is_file():
        raise MotFormatError(f"{seq_dir} has no ground truth: {gt_path} is missing")
    gt: dict[int, list[GtBox]] = {n: [] for n in frames}
    ignore: dict[int, list[BBox]] = {n: [] for n in frames}
    for line_no, line in enumerate(gt_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split(",")
        if len(cols) < 9:
            raise MotFormatError(f"{gt_path}:{line_no}: expected 9 columns, got {len(cols)}")
        try:
            frame, track_id = int(cols[0]), int(cols[1])
            left, top, w, h = (float(c) for c in cols[2:6])
            consider, cls, visibility = int(cols[6]), int(cols[7]), float(cols[8])
        except ValueError as exc:
            raise MotFormatError(f"{gt_path}:{line_no}: {exc}") from exc
        if frame not in frames:
            continue
        box = _mot_box(left, top, w, h, (width, height) if clip_to_image else None)
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        if cls == PEDESTRIAN and consider == 1:
            gt[frame].append(GtBox(box=box, track_id=track_id, visibility=visibility))
        elif cls in DISTRACTOR_CLASSES:
            ignore[frame].append(box)

    numbers = tuple(sorted(frames))
    return MotSequence(
        name=name,
        width=width,
        height=height,
        frame_rate=frame_rate,
        frame_numbers=numbers,
        frame_paths=tuple(frames[n] for n in numbers),
        gt=tuple(tuple(gt[n]) for n in numbers),
        ignore=tuple(tuple(ignore[n]) for n in numbers),
    )


def load_mot_sequences(root: Path, clip_to_image: bool = True) -> list[MotSequence]:
    """One sequence folder, or every sequence folder directly under ``root`` (sorted by name)."""
    root = Path(root)
    if (root / "seqinfo.ini").is_file():
        return [load_mot_sequence(root, clip_to_image)]
    dirs = sorted(d for d in root.iterdir() if (d / "seqinfo.ini").is_file()) if root.is_dir() else []
    if not dirs:
        raise MotFormatError(f"no MOTChallenge sequence (a folder with seqinfo.ini) in {root}")
    return [load_mot_sequence(d, clip_to_image) for d in dirs]


def iou_matrix(a: Sequence[BBox], b: Sequence[BBox]) -> np.ndarray:
    """Pairwise IoU, len(a) x len(b), of x1, y1, x2, y2 boxes."""
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    aa = np.asarray(a, dtype=np.float64)[:, None, :]
    bb = np.asarray(b, dtype=np.float64)[None, :, :]
    iw = (np.minimum(aa[..., 2], bb[..., 2]) - np.maximum(aa[..., 0], bb[..., 0])).clip(0)
    ih = (np.minimum(aa[..., 3], bb[..., 3]) - np.maximum(aa[..., 1], bb[..., 1])).clip(0)
    inter = iw * ih
    area_a = (aa[..., 2] - aa[..., 0]).clip(0) * (aa[..., 3] - aa[..., 1]).clip(0)
    area_b = (bb[..., 2] - bb[..., 0]).clip(0) * (bb[..., 3] - bb[..., 1]).clip(0)
    union = area_a + area_b - inter
    out: np.ndarray = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    return out


def greedy_match(
    pred_boxes: Sequence[BBox], scores: Sequence[float], gt_boxes: Sequence[BBox], iou_threshold: float
) -> list[tuple[int, int]]:
    """(prediction index, gt index) pairs: predictions by descending score (ties: given order)
    each take the free gt box they overlap most, if that IoU is >= ``iou_threshold``."""
    if len(pred_boxes) != len(scores):
        raise ValueError(f"{len(pred_boxes)} boxes but {len(scores)} scores")
    ious = iou_matrix(pred_boxes, gt_boxes)
    free = np.ones(len(gt_boxes), dtype=bool)
    pairs: list[tuple[int, int]] = []
    for p in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        if not free.any():
            break
        row = np.where(free, ious[p], -1.0)
        g = int(np.argmax(row))
        if row[g] >= iou_threshold:
            free[g] = False
            pairs.append((int(p), g))
    return pairs


def match_detections(
    pred_boxes: Sequence[Detection], gt_boxes: Sequence[BBox], iou_threshold: float = 0.5
) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of one frame's detections."""
    pairs = greedy_match([d.box for d in pred_boxes], [d.score for d in pred_boxes], gt_boxes, iou_threshold)
    tp = len(pairs)
    return tp, len(pred_boxes) - tp, len(gt_boxes) - tp


@dataclass(frozen=True, slots=True)
class FrameCounts:
    gt: int = 0
    gt_visible: int = 0
    gt_ignored: int = 0
    tp: int = 0
    tp_visible: int = 0
    fp: int = 0
    fn: int = 0
    ignored_det: int = 0


def evaluate_frame(
    detections: Sequence[Detection],
    gt: Sequence[GtBox],
    ignore: Sequence[BBox] = (),
    *,
    iou: float = 0.5,
    min_visibility: float = 0.0,
    visible: float = VISIBLE,
) -> FrameCounts:
    """Counts for one frame (see the module docstring for what each one means)."""
    counted = [g for g in gt if g.visibility >= min_visibility]
    too_hidden = [g.box for g in gt if g.visibility < min_visibility]
    boxes = [d.box for d in detections]
    scores = [d.score for d in detections]
    pairs = greedy_match(boxes, scores, [g.box for g in counted], iou)
    matched = {p for p, _ in pairs}
    rest = [i for i in range(len(detections)) if i not in matched]
    dropped = greedy_match([boxes[i] for i in rest], [scores[i] for i in rest], [*too_hidden, *ignore], iou)
    gt_visible = sum(1 for g in counted if g.visibility >= visible)
    tp = len(pairs)
    return FrameCounts(
        gt=len(counted),
        gt_visible=gt_visible,
        gt_ignored=len(too_hidden),
        tp=tp,
        tp_visible=sum(1 for _, g in pairs if counted[g].visibility >= visible),
        fp=len(rest) - len(dropped),
        fn=len(counted) - tp,
        ignored_det=len(dropped),
    )


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


@dataclass(frozen=True, slots=True)
class SequenceResult:
    """Totals over the frames of one sequence (or over all sequences)."""

    name: str
    frames: int = 0
    gt: int = 0
    gt_visible: int = 0
    gt_ignored: int = 0
    tp: int = 0
    tp_visible: int = 0
    fp: int = 0
    fn: int = 0
    ignored_det: int = 0
    detect_ms: float = 0.0
    """Summed wall time of ``detect`` over the frames."""
    detect_cpu_ms: float = 0.0
    """Summed CPU time of this process (all its threads) during ``detect``: fairer than wall time on a
    shared machine."""

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.gt)

    @property
    def recall_visible(self) -> float:
        return _ratio(self.tp_visible, self.gt_visible)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def ms_per_frame(self) -> float:
        return self.detect_ms / self.frames if self.frames else 0.0

    @property
    def cpu_ms_per_frame(self) -> float:
        return self.detect_cpu_ms / self.frames if self.frames else 0.0

    def add(self, counts: FrameCounts, ms: float, cpu_ms: float = 0.0) -> SequenceResult:
        return SequenceResult(
            name=self.name,
            frames=self.frames + 1,
            gt=self.gt + counts.gt,
            gt_visible=self.gt_visible + counts.gt_visible,
            gt_ignored=self.gt_ignored + counts.gt_ignored,
            tp=self.tp + counts.tp,
            tp_visible=self.tp_visible + counts.tp_visible,
            fp=self.fp + counts.fp,
            fn=self.fn + counts.fn,
            ignored_det=self.ignored_det + counts.ignored_det,
            detect_ms=self.detect_ms + ms,
            detect_cpu_ms=self.detect_cpu_ms + cpu_ms,
        )


def _sum_results(name: str, results: Iterable[SequenceResult]) -> SequenceResult:
    rs = list(results)
    return SequenceResult(
        name=name,
        frames=sum(r.frames for r in rs),
        gt=sum(r.gt for r in rs),
        gt_visible=sum(r.gt_visible for r in rs),
        gt_ignored=sum(r.gt_ignored for r in rs),
        tp=sum(r.tp for r in rs),
        tp_visible=sum(r.tp_visible for r in rs),
        fp=sum(r.fp for r in rs),
        fn=sum(r.fn for r in rs),
        ignored_det=sum(r.ignored_det for r in rs),
        detect_ms=sum(r.detect_ms for r in rs),
        detect_cpu_ms=sum(r.detect_cpu_ms for r in rs),
    )


@dataclass(frozen=True, slots=True)
class DetectionReport:
    detector: str
    iou: float
    min_visibility: float
    ignore_distractors: bool
    sequences: tuple[SequenceResult, ...]
    total: SequenceResult = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", _sum_results("total", self.sequences))


def read_frame(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise MotFormatError(f"cannot decode the image {path}")
    return np.asarray(image)


def evaluate_detector(
    detector: PersonDetector,
    sequences: Sequence[MotSequence],
    iou: float = 0.5,
    min_visibility: float = 0.0,
    *,
    ignore_distractors: bool = True,
    warmup: int = 1,
    on_frame: Callable[[MotSequence, int], None] | None = None,
) -> DetectionReport:
    """Run ``detector`` (BGR images in, person detections out) on every frame and count.

    ``warmup`` untimed calls on the first frame come first (onnxruntime's first run is slow).
    ``on_frame(sequence, index)`` is called after each frame (progress display).
    """
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must be in (0, 1], got {iou}")
    results: list[SequenceResult] = []
    warm = warmup
    for seq in sequences:
        result = SequenceResult(name=seq.name)
        for i, path in enumerate(seq.frame_paths):
            image = read_frame(path)
            while warm > 0:
                detector.detect(image)
                warm -= 1
            t0, c0 = time.perf_counter(), time.process_time()
            dets = detector.detect(image)
            ms, cpu_ms = (time.perf_counter() - t0) * 1000.0, (time.process_time() - c0) * 1000.0
            counts = evaluate_frame(
                dets,
                seq.gt[i],
                seq.ignore[i] if ignore_distractors else (),
                iou=iou,
                min_visibility=min_visibility,
            )
            result = result.add(counts, ms, cpu_ms)
            if on_frame is not None:
                on_frame(seq, i)
        results.append(result)
    return DetectionReport(
        detector=detector.name,
        iou=iou,
        min_visibility=min_visibility,
        ignore_distractors=ignore_distractors,
        sequences=tuple(results),
    )


_COLUMNS = (
    "sequence", "frames", "gt", "gt vis>=0.5", "tp", "fp", "fn", "ignored det",
    "precision", "recall", "recall vis>=0.5", "ms/frame",
)


def _row(r: SequenceResult) -> list[str]:
    return [
        r.name, str(r.frames), str(r.gt), str(r.gt_visible), str(r.tp), str(r.fp), str(r.fn), str(r.ignored_det),
        f"{r.precision:.3f}", f"{r.recall:.3f}", f"{r.recall_visible:.3f}", f"{r.ms_per_frame:.1f}",
    ]


def format_report(report: DetectionReport) -> str:
    """A Markdown table (aligned, so it reads in a terminal too), one row per sequence and a total."""
    rows = [_row(r) for r in report.sequences] + [_row(report.total)]
    rows[-1][0] = f"**{rows[-1][0]}**"
    head = (
        f"detector {report.detector}, IoU >= {report.iou:g}, min visibility {report.min_visibility:g}, "
        f"distractors {'ignored' if report.ignore_distractors else 'counted as false positives'}"
    )
    extra = ""
    if report.total.gt_ignored:
        extra = f"\n{report.total.gt_ignored} pedestrian boxes below visibility {report.min_visibility:g} not counted"
    return "\n".join([head, "", markdown_table(_COLUMNS, rows)]) + extra


PRESET_CHOICES = ("default", "crowd", "overhead", "doorway")


def _preset_config(name: str, threads: int, tiles: str | None) -> Any:
    """The detector config of a preset name ('default': the shipped default), with optional tiling ``CxR``."""
    from genesis.config.inference import detector_config

    raw: dict[str, Any] = {"threads": threads}
    if name != "default":
        raw["preset"] = name
    if tiles:
        cols, rows = (int(v) for v in tiles.lower().split("x"))
        raw["tiling"] = {"enabled": True, "columns": cols, "rows": rows}
    return detector_config(raw)


def compare_presets(
    data: Path, models_dir: Path, names: Sequence[str], *, threads: int = 0, tiles: str | None = None,
    rounds: int = 1, min_visibility: float = 0.0,
) -> list[tuple[str, Any, DetectionReport]]:
    """Each preset on the same frames; with ``rounds`` > 1 the presets alternate and the fastest CPU time of
    each is kept (counts are the same every round)."""
    from genesis.backends.detectors import build_detector, tiled

    sequences = load_mot_sequences(data)
    built = []
    for name in names:
        config = _preset_config(name, threads, tiles)
        built.append((name, config, tiled(build_detector(config, models_dir), config.tiling, config.iou)))
    best: dict[str, DetectionReport] = {}
    for _ in range(rounds):
        for name, _config, detector in built:
            report = evaluate_detector(detector, sequences, min_visibility=min_visibility)
            prev = best.get(name)
            if prev is None or report.total.detect_cpu_ms < prev.total.detect_cpu_ms:
                best[name] = report
    return [(name, config, best[name]) for name, config, _ in built]


def format_comparison(rows: list[tuple[str, Any, DetectionReport]]) -> str:
    columns = ("preset", "detector", "confidence", "precision", "recall", "recall vis>=0.5", "ms/frame",
               "CPU ms/frame")
    body = []
    for name, config, report in rows:
        t = report.total
        body.append([name, report.detector, f"{config.confidence:g}", f"{t.precision:.3f}", f"{t.recall:.3f}",
                     f"{t.recall_visible:.3f}", f"{t.ms_per_frame:.1f}", f"{t.cpu_ms_per_frame:.1f}"])
    return markdown_table(columns, body)


def main(argv: Sequence[str] | None = None) -> int:
    from genesis.backends.detectors import build_detector
    from genesis.backends.weights import WeightsError
    from genesis.config import DetectorConfig, ModelsConfig

    defaults = DetectorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m genesis.eval.detection",
        description="Precision, recall and speed of the person detector on MOTChallenge sequences.",
    )
    parser.add_argument("data", type=Path, help="a MOT sequence folder or a folder of them (../shared/data/mot17)")
    parser.add_argument("--weights", default=defaults.weights, help="weight file name or path (default: %(default)s)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path(os.environ.get("GENESIS_MODELS_DIR", str(ModelsConfig().path))).expanduser(),
        help="folder with the weight files (default: $GENESIS_MODELS_DIR or %(default)s)",
    )
    parser.add_argument("--backend", choices=["onnx", "ultralytics"], default=defaults.backend)
    parser.add_argument("--confidence", type=float, default=defaults.confidence, help="default: %(default)s")
    parser.add_argument("--nms-iou", type=float, default=defaults.iou, help="NMS IoU (default: %(default)s)")
    parser.add_argument("--input-size", type=int, default=defaults.input_size)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="onnxruntime threads (0 = default)")
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--dequantize", action=argparse.BooleanOptionalAction, default=defaults.dequantize,
                        help="an int8 export's convolutions in float32 (detector.dequantize; default: %(default)s)")
    parser.add_argument("--iou", type=float, default=0.5, help="match IoU threshold (default: %(default)s)")
    parser.add_argument("--min-visibility", type=float, default=0.0, help="drop gt below this visibility")
    parser.add_argument("--no-clip", action="store_true", help="do not clip gt boxes to the image")
    parser.add_argument(
        "--count-distractors", action="store_true", help="count detections of static people, reflections... as FP"
    )
    parser.add_argument("--presets", help=f"compare presets side by side, comma-separated: {','.join(PRESET_CHOICES)}")
    parser.add_argument("--tiles", help="with --presets: slice each frame into CxR tiles (e.g. 2x2)")
    parser.add_argument("--rounds", type=int, default=1, help="with --presets: alternate this many rounds")
    args = parser.parse_args(argv)
    if args.presets:
        names = [n.strip() for n in args.presets.split(",") if n.strip()]
        unknown = [n for n in names if n not in PRESET_CHOICES]
        if unknown or not names:
            print(f"error: unknown preset {', '.join(unknown) or '(none)'}; one of {', '.join(PRESET_CHOICES)}",
                  file=sys.stderr)
            return 2
        try:
            rows = compare_presets(args.data, args.models_dir, names, threads=args.threads, tiles=args.tiles,
                                   rounds=max(1, args.rounds), min_visibility=args.min_visibility)
        except (MotFormatError, WeightsError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"IoU >= 0.5, min visibility {args.min_visibility:g}, distractors ignored, tiles {args.tiles or 'off'}")
        print(format_comparison(rows))
        return 0
    try:
        config = DetectorConfig(
            backend=args.backend,
            weights=args.weights,
            confidence=args.confidence,
            iou=args.nms_iou,
            input_size=args.input_size,
            threads=args.threads,
            device=args.device,
            dequantize=args.dequantize,
        )
        sequences = load_mot_sequences(args.data, clip_to_image=not args.no_clip)
        detector = build_detector(config, args.models_dir)
    except (MotFormatError, WeightsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = evaluate_detector(
        detector,
        sequences,
        iou=args.iou,
        min_visibility=args.min_visibility,
        ignore_distractors=not args.count_distractors,
    )
    print(f"confidence {config.confidence:g}, NMS IoU {config.iou:g}, input {config.input_size}")
    print(format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
