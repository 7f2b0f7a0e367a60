"""Face identification quality on a folder of labelled photos (open set: strangers must stay unknown).

Layout of the faces root (``../shared/data/faces``)::

    known/<name>/*.jpg     photos of enrolled people
    unknown/*.jpg          photos of people enrolled nowhere (every face in them must come back unknown)
    group/*.jpg            photos of several people (optional)

or, without ``known/``, one folder per identity directly in the root (beside ``unknown/`` and
``group/``): ``<root>/<name>/*.jpg``.

How it is counted:

- Split: the photos of ``known/<name>/`` (sorted by file name) alternate: the first, third, ...
  are enrolled, the second, fourth, ... are probes. An identity given extra enrollment photos
  (``--extra name=a.jpg,b.jpg``) enrolls those instead and probes all of its folder (that is how
  ``known/obama/`` is meant: it holds only probe photos). ``--extra-probe`` adds probe photos of an
  identity (for people whose photos live elsewhere).
- Enrollment goes through :func:`genesis.services.enroll.embed_photo` (the largest face of each photo),
  into an in-memory :class:`~genesis.stages.recognize.Gallery` with the given threshold and margin.
- Identification goes through :func:`~genesis.stages.recognize.identify_faces`. A probe counts for
  ``top1_accuracy`` when its largest face gets its name (unknown, another name or no face at all is
  a miss). ``top1_closed_set`` is the same with no threshold or margin: is the nearest identity the
  right one (the quality of the embedding itself).
- ``unknown_rejection``: the share of the faces found in ``unknown/`` that come back unknown.
- ``tar_at_far_1pct`` (verification, threshold-free): every (face, enrolled identity) pair is scored
  by the distance to that identity's nearest enrollment; a probe with its own identity is a genuine
  pair, a probe with any other identity and every stranger face with every identity are impostor
  pairs. The acceptance threshold is set so that at most 1% of impostor pairs are accepted
  (``far_1pct_threshold``: pairs strictly nearer are accepted); TAR is the share of genuine pairs
  accepted at it.
- Group photos: the names expected in a photo are the enrolled names in its label (``labels.csv``
  beside or above the faces root, column ``identity``) or in its file name. A name given to a face
  that is not expected there (or given to two faces) is a false name.
- Distances (cosine, ``1 - a.b`` on L2-normalised vectors): ``genuine`` is, for each probe whose
  largest face was found, the distance to the nearest enrollment of its own identity; ``impostor``
  is the distance to the nearest enrollment of any other identity, over the same probes and over
  every face in ``unknown/``; ``stranger`` is the latter part alone.
- Time: the wall time of ``detect`` per image and of ``embed`` per face, over every photo looked at
  (enrollment included, image decoding excluded) after one untimed warm-up; ``ms_per_face`` is
  (detect + embed time) / faces embedded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genesis.backends.faces import Embedder, FaceDetector
from genesis.domain import Face
from genesis.eval.table import markdown_table
from genesis.services.enroll import EnrollError, embed_photo, read_image
from genesis.stages.recognize import Gallery, identify_faces

IMAGE_EXT = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def list_photos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXT)


@dataclass(frozen=True, slots=True)
class FaceDataset:
    enroll: dict[str, list[Path]]
    probes: dict[str, list[Path]]
    unknown: list[Path]
    group: list[Path]
    group_labels: dict[str, set[str]] = field(default_factory=dict)
    """Group photo file name -> names its label mentions (before intersecting with the gallery)."""


def _read_group_labels(root: Path) -> dict[str, set[str]]:
    """Names per group photo from a ``labels.csv`` (file, identity) beside or above ``root``."""
    for candidate in (root / "labels.csv", root.parent / "labels.csv"):
        if not candidate.is_file():
            continue
        out: dict[str, set[str]] = {}
        with candidate.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                path, label = row.get("file") or "", row.get("identity") or ""
                if "/group/" in f"/{path}":
                    out[Path(path).name] = _tokens(label.split("(")[0])
        return out
    return {}


def _tokens(text: str) -> set[str]:
    return {t for t in re.split(r"[^a-z0-9]+", text.lower()) if t}


def load_dataset(
    root: Path,
    extra: Mapping[str, Sequence[Path]] | None = None,
    extra_probes: Mapping[str, Sequence[Path]] | None = None,
) -> FaceDataset:
    """The enroll/probe split of ``root`` (see the module docstring)."""
    extra = extra or {}
    extra_probes = extra_probes or {}
    known = root / "known"
    flat: list[Path] = []
    if not known.is_dir() and root.is_dir():
        flat = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in {"unknown", "group"} and list_photos(p))
    if not known.is_dir() and not flat and not extra:
        raise FileNotFoundError(
            f"{root} has no known/ folder, no identity folders and no extra enrollment photos were given"
        )
    enroll: dict[str, list[Path]] = {}
    probes: dict[str, list[Path]] = {}
    folders = sorted(p for p in known.iterdir() if p.is_dir()) if known.is_dir() else flat
    for folder in folders:
        photos = list_photos(folder)
        if folder.name in extra:
            enroll[folder.name], probes[folder.name] = [], photos
        else:
            enroll[folder.name], probes[folder.name] = photos[0::2], photos[1::2]
    for name, paths in extra.items():
        enroll.setdefault(name, []).extend(Path(p) for p in paths)
        probes.setdefault(name, [])
    for name, paths in extra_probes.items():
        probes.setdefault(name, []).extend(Path(p) for p in paths)
        enroll.setdefault(name, [])
    for name in list(enroll):
        if not enroll[name]:
            raise ValueError(f"identity {name!r} has no enrollment photo")
    missing = [str(p) for paths in (*enroll.values(), *probes.values()) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"photos not found: {', '.join(missing)}")
    return FaceDataset(
        enroll=enroll,
        probes={k: v for k, v in probes.items() if v},
        unknown=list_photos(root / "unknown"),
        group=list_photos(root / "group"),
        group_labels=_read_group_labels(root),
    )


class _TimedDetector:
    """A face detector that adds up its own wall time (the real one does the work)."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Face]:
        t0 = time.perf_counter()
        faces = self.inner.detect(image)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return faces


class _RecordingEmbedder:
    """An embedder that times itself and keeps the vectors of its last call."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dim = inner.dim
        self.seconds = 0.0
        self.faces = 0
        self.last: np.ndarray = np.zeros((0, inner.dim), dtype=np.float32)

    def embed(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner.embed(image, faces)
        self.seconds += time.perf_counter() - t0
        self.faces += len(faces)
        self.last = out
        return out


@dataclass(frozen=True, slots=True)
class FaceOutcome:
    """One face of one photo: who it should be, who it was taken for, and the distances."""

    photo: str
    role: str  # probe | unknown | group
    expected: str | None
    identity: str | None
    distance: float
    second_distance: float | None
    nearest: str | None
    own_distance: float | None
    """Distance to the nearest enrollment of ``expected`` (probes only)."""
    other_distance: float | None
    """Distance to the nearest enrollment of any identity other than ``expected``."""
    other_identity: str | None
    """That identity."""


@dataclass(frozen=True, slots=True)
class FaceEvalReport:
    model: str
    detector: str
    threshold: float
    margin: float
    identities: int
    enrolled_photos: int
    probes: int
    probes_no_face: int
    top1_correct: int
    top1_accuracy: float
    top1_closed_set: float
    unknown_photos: int
    unknown_faces: int
    unknown_rejected: int
    unknown_rejection: float
    tar_at_far_1pct: float | None
    far_1pct_threshold: float | None
    genuine_pairs: int
    impostor_pairs: int
    group_photos: int
    group_faces: int
    group_expected: int
    group_found: int
    group_false_names: int
    genuine_p50: float | None
    genuine_p95: float | None
    genuine_max: float | None
    impostor_p5: float | None
    impostor_min: float | None
    stranger_p5: float | None
    stranger_min: float | None
    ms_detect_per_image: float
    ms_embed_per_face: float
    ms_per_face: float
    misses: list[str]
    """Human-readable lines: probes not named right, strangers named, false names in groups."""
    faces: list[FaceOutcome]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["timings"] = {"ms_detect_per_image": self.ms_detect_per_image, "ms_embed_per_face": self.ms_embed_per_face,
                          "ms_per_face": self.ms_per_face}
        return out


def tar_at_far(genuine: Sequence[float], impostor: Sequence[float], far: float = 0.01) -> tuple[
        float | None, float | None]:
    """(TAR, threshold): the threshold accepts (distance strictly below it) at most ``far`` of the
    impostor pairs — the (k+1)-th smallest impostor distance with k = floor(far * impostors)."""
    if not genuine or not impostor:
        return None, None
    imp = np.sort(np.asarray(impostor, dtype=np.float64))
    k = int(np.floor(far * imp.size))
    threshold = float(imp[k])
    tar = float(np.mean(np.asarray(genuine, dtype=np.float64) < threshold))
    return round(tar, 4), round(threshold, 4)


def _per_identity_distance(gallery: Gallery, vector: np.ndarray) -> dict[str, float]:
    sims = gallery.matrix @ np.asarray(vector, dtype=np.float32)
    best: dict[str, float] = {}
    for name, sim in zip(gallery.names, sims.tolist(), strict=True):
        best[name] = max(best.get(name, -2.0), sim)
    return {name: round(1.0 - sim, 6) for name, sim in best.items()}


def _outcome(
    photo: Path, role: str, expected: str | None, gallery: Gallery, vector: np.ndarray, identity: str | None,
    distance: float, second: float | None, pairs: tuple[list[float], list[float]] | None = None,
) -> FaceOutcome:
    dists = _per_identity_distance(gallery, vector)
    if pairs is not None:
        for name, d in dists.items():
            (pairs[0] if name == expected else pairs[1]).append(d)
    nearest = min(dists, key=lambda n: (dists[n], n)) if dists else None
    others = sorted((d, n) for n, d in dists.items() if n != expected)
    return FaceOutcome(
        photo=str(photo),
        role=role,
        expected=expected,
        identity=identity,
        distance=distance,
        second_distance=second,
        nearest=nearest,
        own_distance=dists.get(expected) if expected is not None else None,
        other_distance=others[0][0] if others else None,
        other_identity=others[0][1] if others else None,
    )


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 4) if values else None


def _mn(values: Sequence[float]) -> float | None:
    return round(min(values), 4) if values else None


def _mx(values: Sequence[float]) -> float | None:
    return round(max(values), 4) if values else None


def evaluate_faces(
    dataset: FaceDataset,
    face_detector: FaceDetector,
    embedder: Embedder,
    threshold: float,
    margin: float,
    warmup: bool = True,
) -> FaceEvalReport:
    """Enroll, identify and count (see the module docstring)."""
    fd = _TimedDetector(face_detector)
    emb = _RecordingEmbedder(embedder)
    first = next(iter(p for paths in dataset.enroll.values() for p in paths), None)
    if warmup and first is not None:  # onnxruntime's first run is slow: keep it out of the times
        image = read_image(first)
        embedder.embed(image, face_detector.detect(image)[:1])

    names: list[str] = []
    vectors: list[np.ndarray] = []
    for name, paths in dataset.enroll.items():
        for path in paths:
            try:
                vector, _, _ = embed_photo(path, fd, emb)
            except EnrollError as exc:
                raise EnrollError(f"cannot enroll {name}: {exc}") from exc
            names.append(name)
            vectors.append(vector)
    gallery = Gallery.build(embedder.model_name, names, np.stack(vectors), threshold, margin)
    enrolled = set(names)

    outcomes: list[FaceOutcome] = []
    misses: list[str] = []
    pairs: tuple[list[float], list[float]] = ([], [])
    probes = no_face = correct = closed = 0
    for name, paths in dataset.probes.items():
        for path in paths:
            probes += 1
            results = identify_faces(read_image(path), fd, emb, gallery)
            if not results:
                no_face += 1
                misses.append(f"probe {path.name} ({name}): no face found")
                continue
            _, match = results[0]
            out = _outcome(path, "probe", name, gallery, emb.last[0], match.identity, match.distance,
                           match.second_distance, pairs)
            outcomes.append(out)
            correct += match.identity == name
            closed += out.nearest == name
            if match.identity != name:
                got = match.identity or "unknown"
                misses.append(
                    f"probe {path.name} ({name}): {got} at {match.distance:.4f}, own {_fmt(out.own_distance, 4)}, "
                    f"nearest other {_fmt(out.other_distance, 4)} ({out.other_identity})"
                )

    unknown_faces = rejected = 0
    for path in dataset.unknown:
        results = identify_faces(read_image(path), fd, emb, gallery)
        for i, (_, match) in enumerate(results):
            unknown_faces += 1
            out = _outcome(path, "unknown", None, gallery, emb.last[i], match.identity, match.distance,
                           match.second_distance, pairs)
            outcomes.append(out)
            if match.identity is None:
                rejected += 1
            else:
                misses.append(f"stranger in {path.name} (face {i}): {match.identity} at {match.distance:.4f}")

    group_faces = group_expected = group_found = group_false = 0
    for path in dataset.group:
        expected = (dataset.group_labels.get(path.name, set()) | _tokens(path.stem)) & enrolled
        results = identify_faces(read_image(path), fd, emb, gallery)
        given: list[str] = []
        for i, (_, match) in enumerate(results):
            group_faces += 1
            outcomes.append(_outcome(path, "group", None, gallery, emb.last[i], match.identity, match.distance,
                                     match.second_distance))
            if match.identity is not None:
                given.append(match.identity)
        group_expected += len(expected)
        found = expected & set(given)
        group_found += len(found)
        false = [n for n in given if n not in expected] + [n for n in found if given.count(n) > 1]
        group_false += len(false)
        if false or found != expected:
            misses.append(
                f"group {path.name}: expected {sorted(expected)}, named {sorted(given)}"
                + (f", false {sorted(false)}" if false else "")
            )

    genuine = [o.own_distance for o in outcomes if o.role == "probe" and o.own_distance is not None]
    impostor = [o.other_distance for o in outcomes if o.role in {"probe", "unknown"} and o.other_distance is not None]
    stranger = [o.other_distance for o in outcomes if o.role == "unknown" and o.other_distance is not None]
    faces_embedded = max(emb.faces, 1)
    tar, far_threshold = tar_at_far(pairs[0], pairs[1])
    return FaceEvalReport(
        model=embedder.model_name,
        detector=face_detector.name,
        threshold=threshold,
        margin=margin,
        identities=len(enrolled),
        enrolled_photos=len(names),
        probes=probes,
        probes_no_face=no_face,
        top1_correct=correct,
        top1_accuracy=round(correct / probes, 4) if probes else 0.0,
        top1_closed_set=round(closed / probes, 4) if probes else 0.0,
        unknown_photos=len(dataset.unknown),
        unknown_faces=unknown_faces,
        unknown_rejected=rejected,
        unknown_rejection=round(rejected / unknown_faces, 4) if unknown_faces else 1.0,
        tar_at_far_1pct=tar,
        far_1pct_threshold=far_threshold,
        genuine_pairs=len(pairs[0]),
        impostor_pairs=len(pairs[1]),
        group_photos=len(dataset.group),
        group_faces=group_faces,
        group_expected=group_expected,
        group_found=group_found,
        group_false_names=group_false,
        genuine_p50=_pct(genuine, 50),
        genuine_p95=_pct(genuine, 95),
        genuine_max=_mx(genuine),
        impostor_p5=_pct(impostor, 5),
        impostor_min=_mn(impostor),
        stranger_p5=_pct(stranger, 5),
        stranger_min=_mn(stranger),
        ms_detect_per_image=round(1000.0 * fd.seconds / max(fd.calls, 1), 1),
        ms_embed_per_face=round(1000.0 * emb.seconds / faces_embedded, 1),
        ms_per_face=round(1000.0 * (fd.seconds + emb.seconds) / faces_embedded, 1),
        misses=misses,
        faces=outcomes,
    )


_COLUMNS = (
    "model", "threshold", "margin", "top-1", "top-1 closed set", "unknown rejected", "TAR @ FAR 1%",
    "group names found",
    "group false names", "genuine p50", "genuine p95", "impostor p5", "impostor min", "stranger min", "ms/face",
)


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table_row(r: FaceEvalReport) -> list[str]:
    return [
        r.model, f"{r.threshold:g}", f"{r.margin:g}",
        f"{r.top1_accuracy:.3f} ({r.top1_correct}/{r.probes})",
        f"{r.top1_closed_set:.3f}",
        f"{r.unknown_rejection:.3f} ({r.unknown_rejected}/{r.unknown_faces})",
        "-" if r.tar_at_far_1pct is None else f"{r.tar_at_far_1pct:.3f} (< {r.far_1pct_threshold:.3f})",
        f"{r.group_found}/{r.group_expected}", str(r.group_false_names),
        _fmt(r.genuine_p50), _fmt(r.genuine_p95), _fmt(r.impostor_p5), _fmt(r.impostor_min), _fmt(r.stranger_min),
        f"{r.ms_per_face:.1f}",
    ]


def format_table(reports: Sequence[FaceEvalReport]) -> str:
    """A Markdown table, one row per report (aligned, so it reads in a terminal too)."""
    return markdown_table(_COLUMNS, [table_row(r) for r in reports])


def format_report(r: FaceEvalReport) -> str:
    head = (
        f"{r.model} ({r.detector}): {r.identities} identities, {r.enrolled_photos} enrollment photos, "
        f"{r.probes} probes ({r.probes_no_face} without a face), {r.unknown_faces} stranger faces in "
        f"{r.unknown_photos} photos, {r.group_faces} faces in {r.group_photos} group photos"
    )
    times = (
        f"detect {r.ms_detect_per_image:.1f} ms/image, embed {r.ms_embed_per_face:.1f} ms/face, "
        f"detect+embed {r.ms_per_face:.1f} ms/face"
    )
    lines = [head, "", format_table([r]), "", times, f"genuine max {_fmt(r.genuine_max)}, "
             f"stranger p5 {_fmt(r.stranger_p5)}"]
    if r.misses:
        lines += ["", "not right:", *(f"  {m}" for m in r.misses)]
    return "\n".join(lines)


def _parse_named_paths(items: Sequence[str] | None) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for item in items or []:
        name, sep, paths = item.partition("=")
        if not sep or not name.strip() or not paths.strip():
            raise ValueError(f"expected NAME=photo[,photo...], got {item!r}")
        out.setdefault(name.strip(), []).extend(Path(p).expanduser() for p in paths.split(",") if p.strip())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from genesis.backends.faces import build_embedder, build_face_detector
    from genesis.backends.weights import WeightsError
    from genesis.config import EmbedderConfig, FaceDetectorConfig, ModelsConfig
    from genesis.config.inference import DEFAULT_COSINE_THRESHOLDS, DEFAULT_MARGINS

    parser = argparse.ArgumentParser(
        prog="python -m genesis.eval.faces",
        description="Top-1 accuracy, stranger rejection and distance distributions of face identification.",
    )
    parser.add_argument(
        "root", type=Path, help="faces root with known/<name>/, unknown/, group/ (../shared/data/faces)"
    )
    parser.add_argument("--extra", action="append", metavar="NAME=PHOTO[,PHOTO...]",
                        help="enrollment photos of NAME (its known/ folder, if any, becomes probes only); repeatable")
    parser.add_argument("--extra-probe", action="append", metavar="NAME=PHOTO[,PHOTO...]",
                        help="more probe photos of NAME; repeatable")
    parser.add_argument("--model", choices=sorted(DEFAULT_COSINE_THRESHOLDS), default="SFace")
    parser.add_argument("--weights", default=None, help="embedder weight file (default: the model's default)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="cosine distance threshold (default: deepface's for the model)")
    parser.add_argument("--margin", type=float, default=None,
                        help="best identity must beat the second by this distance (default: the model's)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path(os.environ.get("GENESIS_MODELS_DIR", str(ModelsConfig().path))).expanduser(),
        help="folder with the weight files (default: $GENESIS_MODELS_DIR or %(default)s)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the full report (every face) here")
    args = parser.parse_args(argv)
    try:
        config = EmbedderConfig(model=args.model, weights=args.weights, threshold=args.threshold)
        dataset = load_dataset(args.root, _parse_named_paths(args.extra), _parse_named_paths(args.extra_probe))
        face_detector = build_face_detector(FaceDetectorConfig(), args.models_dir)
        embedder = build_embedder(config, args.models_dir)
        margin = args.margin if args.margin is not None else DEFAULT_MARGINS[args.model]
        report = evaluate_faces(dataset, face_detector, embedder, config.cosine_threshold, margin)
    except (WeightsError, EnrollError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
