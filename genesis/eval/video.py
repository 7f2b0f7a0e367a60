"""Identity-labelled video evaluation: are the names on tracks right, frame by frame?

A generator builds short labelled sequences from a folder of identity photos (one sub-folder per
identity, as for ``genesis eval faces``; ``unknown/`` photos are strangers) and a background image
(a frame of a real video). Each person is a "cut-out": the head and shoulders around the largest
face of one photo, pasted on the background and moved along a path; the ground truth of every
frame is where each person is and how much of them is visible.

Scenarios (5 fps by default):

- ``doorway``: five people step in at the same spot one after another (2 s each, 0.6 s of empty
  background between them): enrolled A, a stranger, enrolled B, a stranger, enrolled C.
- ``crossing``: two enrolled people walk across the frame in opposite directions and pass each
  other (the one in front hides most of the other for a moment).
- ``occlusion``: one enrolled person stands; another walks in front of them and hides them for about
  a second, then walks on.
- ``reentry``: an enrolled person comes in, leaves the frame and comes back twice (once after a short
  absence the tracker bridges, once after a long one), with a stranger in between.
- ``stranger``: two enrolled people and a stranger stand side by side, the stranger drifting
  between them.
- ``crowd``: five people (three enrolled, two strangers) walk in different directions at once.

Enrollment: the first two photos (sorted by name) of each enrolled identity; a person is shown with
another photo of theirs when there is one (a held-out photo, as a camera would see them).

Scoring is per sighting (a stored sighting is matched, one to one, to the ground truth person whose
box it fits best: IoU >= 0.3, or lying at least 70 % inside it for the box of a half-hidden person);
a sighting's name is the name of its track segment (what ``report.json``, rollups and alerts use):

- ``identity_precision``: named sightings whose name is right / named sightings.
- ``identity_recall``: sightings of enrolled people (at least half visible) that carry their name /
  sightings of enrolled people (at least half visible).
- ``wrong_name_sightings``: named sightings whose name is not the person's (a stranger named counts).
- ``name_switches``: per person, changes of the name carried from one named sighting to the next.
- ``time_to_name_s_p50``: per appearance of an enrolled person that got named, the time from their
  first frame to the moment the pipeline decided the name (live, not in hindsight); median.

Limits: pasted photos are not people walking. No body below the shoulders, no pose change, no motion
blur, one photo per appearance; the person detector sees cut-outs. The figures measure the identity
policy (segments, re-verification, cut signals) on controlled track swaps, not the accuracy on a
real camera (see docs/recognition.md).
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from genesis.eval.faces import list_photos
from genesis.eval.table import markdown_table

SCENARIOS = ("doorway", "crossing", "occlusion", "reentry", "stranger", "crowd")
METRICS = ("identity_precision", "identity_recall", "wrong_name_sightings", "name_switches", "time_to_name_s_p50")
POLICIES = ("track", "segment")
"""``track``: the old policy (a named track keeps its name); ``segment``: identity segments."""


class EvalVideoError(Exception):
    """Bad input for the video evaluation (a clear one-line message)."""


# ---------------------------------------------------------------------------------------------
# people (cut-outs) and the photo folder


@dataclass(frozen=True, slots=True)
class Person:
    label: str
    """The identity name, or ``stranger-N``."""
    enrolled: bool
    sprite: np.ndarray
    """BGR cut-out scaled so that its face is ``face_px`` wide."""


@dataclass(frozen=True, slots=True)
class PhotoSet:
    enroll: dict[str, list[Path]]
    shown: dict[str, Path]
    strangers: list[Path]


def photo_set(root: Path, enroll_photos: int = 2) -> PhotoSet:
    """Identities (``known/<name>/`` or ``<name>/``) and strangers (``unknown/``) of a faces folder."""
    if not root.is_dir():
        raise EvalVideoError(f"no such folder: {root}")
    base = root / "known" if (root / "known").is_dir() else root
    enroll: dict[str, list[Path]] = {}
    shown: dict[str, Path] = {}
    for d in sorted(p for p in base.iterdir() if p.is_dir() and p.name not in ("unknown", "group", "known")):
        photos = list_photos(d)
        if not photos:
            continue
        enroll[d.name] = photos[:enroll_photos]
        rest = photos[enroll_photos:]
        shown[d.name] = rest[0] if rest else photos[-1]
    strangers = list_photos(root / "unknown")
    if len(enroll) < 3:
        raise EvalVideoError(f"{root}: need at least 3 identity folders with photos, found {len(enroll)}")
    if len(strangers) < 2:
        raise EvalVideoError(f"{root}/unknown: need at least 2 photos of strangers, found {len(strangers)}")
    return PhotoSet(enroll, shown, strangers)


def cut_out(image: np.ndarray, detect: Callable[[np.ndarray], list[Any]], face_px: int) -> np.ndarray | None:
    """The head and shoulders around the largest face of a photo, scaled to a face ``face_px`` wide;
    below the photo's edge the shoulders are continued with the photo's last row (a plain torso)."""
    h, w = image.shape[:2]
    scale = min(1.0, 900 / max(h, w))
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 \
        else image
    faces = detect(small)
    if not faces:
        return None
    x1, y1, x2, y2 = (v / scale for v in faces[0].box)
    fw, fh = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    left, right = cx - 1.3 * fw, cx + 1.3 * fw
    top, bottom = y1 - 0.45 * fh, y2 + 1.7 * fh
    pad = int(max(0, -left, right - w, -top, bottom - h)) + 2
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = padded[int(top) + pad:int(bottom) + pad, int(left) + pad:int(right) + pad]
    if crop.size == 0:
        return None
    k = face_px / fw
    return cv2.resize(crop, (max(8, round(crop.shape[1] * k)), max(8, round(crop.shape[0] * k))),
                      interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------
# scenarios


@dataclass(slots=True)
class Actor:
    person: Person
    path: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    """frame -> (centre x, top y, scale) where the person is shown."""


@dataclass(slots=True)
class Scenario:
    name: str
    frames: int
    actors: list[Actor]
    """Drawn in this order: later actors hide earlier ones."""


def _walk(actor: Actor, start: int, frames: int, x0: float, x1: float, y0: float, y1: float,
          s0: float = 1.0, s1: float = 1.0) -> None:
    for i in range(frames):
        t = i / max(1, frames - 1)
        actor.path[start + i] = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, s0 + (s1 - s0) * t)


def build_scenario(name: str, enrolled: Sequence[Person], strangers: Sequence[Person], width: int, height: int,
                   fps: float) -> Scenario:
    """One labelled sequence; positions are fractions of the frame, so any size works."""
    f = max(1, round(fps * 2))  # two seconds
    g = max(1, round(fps * 0.6))  # the doorway's empty gap
    wd, ht = float(width), float(height)
    top = 0.12 * ht
    a, b, c = enrolled[0], enrolled[1], enrolled[2]
    s1, s2 = strangers[0], strangers[1]
    if name == "doorway":
        actors = []
        t = 0
        for p in (a, s1, b, s2, c):
            act = Actor(p)
            _walk(act, t, f, 0.5 * wd, 0.5 * wd, top + 0.04 * ht, top, 0.95, 1.05)
            actors.append(act)
            t += f + g
        return Scenario(name, t, actors)
    if name == "crossing":
        n = round(fps * 4)
        left, right = Actor(a), Actor(b)
        _walk(left, 0, n, 0.12 * wd, 0.88 * wd, top, top)
        _walk(right, 0, n, 0.88 * wd, 0.12 * wd, top + 0.03 * ht, top + 0.03 * ht, 1.05, 1.05)
        return Scenario(name, n, [left, right])
    if name == "occlusion":
        n = round(fps * 5)
        still, passer = Actor(a), Actor(b)
        _walk(still, 0, n, 0.5 * wd, 0.5 * wd, top, top)
        _walk(passer, round(fps * 1), n - round(fps * 1), 0.05 * wd, 0.95 * wd, top + 0.04 * ht, top + 0.04 * ht,
              1.1, 1.1)
        return Scenario(name, n, [still, passer])
    if name == "reentry":
        on = round(fps * 1.6)
        short = round(fps * 0.8)  # shorter than the tracker's lost-track buffer (1 s): the track comes back
        long = round(fps * 2.0)
        back = Actor(a)
        other = Actor(s1)
        t = 0
        _walk(back, t, on, 0.45 * wd, 0.55 * wd, top, top)
        t += on + short
        _walk(back, t, on, 0.55 * wd, 0.45 * wd, top, top)
        t += on
        _walk(other, t, on, 0.45 * wd, 0.55 * wd, top, top)
        t += on + long
        _walk(back, t, on, 0.45 * wd, 0.55 * wd, top, top)
        t += on
        return Scenario(name, t, [back, other])
    if name == "stranger":
        n = round(fps * 4)
        pa, pb, ps = Actor(a), Actor(b), Actor(s1)
        _walk(pa, 0, n, 0.2 * wd, 0.2 * wd, top, top)
        _walk(pb, 0, n, 0.8 * wd, 0.8 * wd, top, top)
        _walk(ps, 0, n, 0.35 * wd, 0.65 * wd, top + 0.05 * ht, top + 0.05 * ht)
        return Scenario(name, n, [pa, pb, ps])
    if name == "crowd":
        n = round(fps * 4)
        rng = random.Random(11)
        people = [a, b, c, s1, s2]
        actors = []
        for i, p in enumerate(people):
            act = Actor(p)
            x0 = (0.1 + 0.2 * i) * wd
            x1 = min(0.92 * wd, max(0.08 * wd, x0 + rng.choice((-1, 1)) * rng.uniform(0.15, 0.3) * wd))
            _walk(act, 0, n, x0, x1, top + rng.uniform(0, 0.08) * ht, top + rng.uniform(0, 0.08) * ht,
                  0.8 + 0.05 * i, 0.8 + 0.05 * i)
            actors.append(act)
        return Scenario(name, n, actors)
    raise EvalVideoError(f"unknown scenario {name!r} (one of {', '.join(SCENARIOS)})")


@dataclass(frozen=True, slots=True)
class Truth:
    label: str
    enrolled: bool
    box: tuple[float, float, float, float]
    visible: float


def render(scenario: Scenario, background: np.ndarray) -> tuple[list[np.ndarray], list[list[Truth]]]:
    """The frames of a scenario and the ground truth of each (box and visible share of each person)."""
    h, w = background.shape[:2]
    frames: list[np.ndarray] = []
    truth: list[list[Truth]] = []
    for i in range(scenario.frames):
        img = background.copy()
        owner = np.full((h, w), -1, dtype=np.int16)
        placed: list[tuple[int, Actor, tuple[int, int, int, int]]] = []
        for k, actor in enumerate(scenario.actors):
            pos = actor.path.get(i)
            if pos is None:
                continue
            cx, ty, s = pos
            sprite = actor.person.sprite
            sw, sh = max(8, round(sprite.shape[1] * s)), max(8, round(sprite.shape[0] * s))
            spr = cv2.resize(sprite, (sw, sh), interpolation=cv2.INTER_AREA)
            x1, y1 = round(cx - sw / 2), round(ty)
            ax1, ay1, ax2, ay2 = max(0, x1), max(0, y1), min(w, x1 + sw), min(h, y1 + sh)
            if ax2 <= ax1 or ay2 <= ay1:
                continue
            img[ay1:ay2, ax1:ax2] = spr[ay1 - y1:ay2 - y1, ax1 - x1:ax2 - x1]
            owner[ay1:ay2, ax1:ax2] = k
            placed.append((k, actor, (ax1, ay1, ax2, ay2)))
        gt = []
        for k, actor, (x1, y1, x2, y2) in placed:
            area = (x2 - x1) * (y2 - y1)
            vis = float(np.count_nonzero(owner[y1:y2, x1:x2] == k)) / area if area else 0.0
            gt.append(Truth(actor.person.label, actor.person.enrolled, (x1, y1, x2, y2), vis))
        frames.append(img)
        truth.append(gt)
    return frames, truth


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise EvalVideoError(f"cannot write {path}")
    for f in frames:
        writer.write(f)
    writer.release()


# ---------------------------------------------------------------------------------------------
# scoring


@dataclass(frozen=True, slots=True)
class NamedSighting:
    """A stored sighting with the name of its track segment and when that name was decided."""

    seq: int
    ts: float
    track_id: int
    segment: int
    box: tuple[float, float, float, float]
    name: str | None
    named_ts: float | None


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _affinity(sighting: Sequence[float], person: Sequence[float], min_iou: float) -> float:
    """How well a sighting box fits a person: its IoU when at least ``min_iou``; else, for the box of
    the visible sliver of a half-hidden person (mostly inside the person's box), a smaller positive
    value so that full matches go first; 0 when it does not fit."""
    iou = _iou(sighting, person)
    if iou >= min_iou:
        return iou
    x1, y1 = max(sighting[0], person[0]), max(sighting[1], person[1])
    x2, y2 = min(sighting[2], person[2]), min(sighting[3], person[3])
    area = (sighting[2] - sighting[0]) * (sighting[3] - sighting[1])
    inside = max(0.0, x2 - x1) * max(0.0, y2 - y1) / area if area > 0 else 0.0
    return 0.01 * inside if inside >= 0.7 else 0.0


def score(truth: list[list[Truth]], sightings: list[NamedSighting], frame_ts: list[float],
          min_visible: float = 0.5, min_iou: float = 0.3) -> dict[str, Any]:
    """The metrics of one sequence (see the module docstring)."""
    by_seq: dict[int, list[NamedSighting]] = {}
    for s in sightings:
        by_seq.setdefault(s.seq, []).append(s)
    named = right = wrong = enrolled_sightings = enrolled_named_right = 0
    carried: dict[str, list[str]] = {}
    appearances: dict[str, list[tuple[float, float | None]]] = {}
    last_frame: dict[str, int] = {}
    gap_frames = 2
    for seq, gts in enumerate(truth):
        visible = [t for t in gts if t.visible >= min_visible]
        for v in visible:  # appearances: a person absent for more than two frames comes back anew
            if v.label not in last_frame or seq - last_frame[v.label] > gap_frames:
                appearances.setdefault(v.label, []).append((frame_ts[seq], None))
            last_frame[v.label] = seq
        # Sightings are matched to every person in the frame, hidden or not (a box on a half-hidden
        # person is that person); only the persons at least ``min_visible`` visible count for recall.
        shown = [t for t in gts if t.visible > 0]
        pairs = sorted(((_affinity(s.box, t.box, min_iou), i, j) for i, s in enumerate(by_seq.get(seq, []))
                        for j, t in enumerate(shown)), reverse=True)
        used_s: set[int] = set()
        used_t: set[int] = set()
        match: dict[int, Truth] = {}
        for aff, i, j in pairs:
            if aff <= 0 or i in used_s or j in used_t:
                continue
            used_s.add(i)
            used_t.add(j)
            match[i] = shown[j]
        for i, s in enumerate(by_seq.get(seq, [])):
            t: Truth | None = match.get(i)
            if s.name is not None:
                named += 1
                if t is not None and t.label == s.name:
                    right += 1
                else:
                    wrong += 1
            if t is None:
                continue
            if t.enrolled and t.visible >= min_visible:
                enrolled_sightings += 1
                if s.name == t.label:
                    enrolled_named_right += 1
                    first, when = appearances[t.label][-1]
                    if when is None and s.named_ts is not None:
                        appearances[t.label][-1] = (first, max(s.named_ts, first))
            if s.name is not None:
                carried.setdefault(t.label, []).append(s.name)
    switches = sum(sum(1 for x, y in itertools.pairwise(names) if x != y) for names in carried.values())
    delays = [when - first for apps in appearances.values() for first, when in apps if when is not None]
    return {
        "identity_precision": round(right / named, 4) if named else 1.0,
        "identity_recall": round(enrolled_named_right / enrolled_sightings, 4) if enrolled_sightings else 1.0,
        "wrong_name_sightings": wrong,
        "name_switches": switches,
        "time_to_name_s_p50": round(statistics.median(delays), 3) if delays else None,
        "sightings": sum(len(v) for v in by_seq.values()),
        "named_sightings": named,
        "enrolled_sightings": enrolled_sightings,
        "delays": delays,
    }


def combine(parts: list[dict[str, Any]], delays: list[float]) -> dict[str, Any]:
    """Overall figures: counts summed, ratios recomputed from the sums."""
    named = sum(p["named_sightings"] for p in parts)
    wrong = sum(p["wrong_name_sightings"] for p in parts)
    enrolled = sum(p["enrolled_sightings"] for p in parts)
    right_enrolled = sum(round(p["identity_recall"] * p["enrolled_sightings"]) for p in parts)
    return {
        "identity_precision": round((named - wrong) / named, 4) if named else 1.0,
        "identity_recall": round(right_enrolled / enrolled, 4) if enrolled else 1.0,
        "wrong_name_sightings": wrong,
        "name_switches": sum(p["name_switches"] for p in parts),
        "time_to_name_s_p50": round(statistics.median(delays), 3) if delays else None,
        "sightings": sum(p["sightings"] for p in parts),
        "named_sightings": named,
        "enrolled_sightings": enrolled,
    }


# ---------------------------------------------------------------------------------------------
# running the real pipeline


@dataclass(slots=True)
class VideoEvalConfig:
    faces_root: Path
    background: Path
    scenarios: tuple[str, ...] = SCENARIOS
    policies: tuple[str, ...] = POLICIES
    width: int = 640
    height: int = 360
    fps: float = 5.0
    face_px: int = 56
    seed: int = 0
    keep_videos: Path | None = None


def read_background(path: Path, width: int, height: int, samples: int = 25) -> np.ndarray:
    """A still image, or for a video the per-pixel median of ``samples`` frames spread over it (the
    people walking through disappear, the scene stays)."""
    if not path.is_file():
        raise EvalVideoError(f"no such file: {path}")
    img = cv2.imread(str(path))
    if img is None:
        cap = cv2.VideoCapture(str(path))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        frames = []
        for i in range(samples):
            cap.set(cv2.CAP_PROP_POS_FRAMES, (i * max(1, n)) // samples)
            ok, f = cap.read()
            if ok and f is not None:
                frames.append(cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA))
        cap.release()
        if not frames:
            raise EvalVideoError(f"{path}: neither an image nor a readable video")
        img = np.median(np.stack(frames), axis=0).astype(np.uint8)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


ProgressFn = Callable[[str], None]


class _SameFramesDetector:
    """The real person detector, run once per distinct frame: the policies are compared on the same
    sequences, so the second policy reuses the detections of the first (identical by construction:
    the detector is deterministic) and the evaluation costs half as much."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self._cache: dict[str, Any] = {}

    def detect(self, image: np.ndarray) -> Any:
        import hashlib

        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self.inner.detect(image)
        return list(hit)


def evaluate_video(settings: Any, cfg: VideoEvalConfig, progress: ProgressFn | None = None,
                   done: ProgressFn | None = None) -> dict[str, Any]:
    """Build the scenarios, enroll, run the real embedded pipeline on each sequence under each policy,
    score. Returns ``{"policies": {policy: {metrics..., "scenarios": {name: metrics}}}, ...}``."""
    from genesis.adapters.db import Repository
    from genesis.adapters.db.repository import segment_at, segment_index
    from genesis.config import CameraConfig
    from genesis.pipeline.embedded import run_embedded
    from genesis.pipeline.model_loader import detector_label, load_models
    from genesis.services.enroll import EnrollError, enroll

    for s in cfg.scenarios:
        if s not in SCENARIOS:
            raise EvalVideoError(f"unknown scenario {s!r} (one of {', '.join(SCENARIOS)})")
    for p in cfg.policies:
        if p not in POLICIES:
            raise EvalVideoError(f"unknown policy {p!r} (one of {', '.join(POLICIES)})")
    photos = photo_set(cfg.faces_root)
    background = read_background(cfg.background, cfg.width, cfg.height)
    work = Path(tempfile.mkdtemp(prefix="genesis-eval-video-"))
    db_url = f"sqlite:///{work / 'eval.db'}"
    base = settings.model_copy(update={"database_url": db_url})
    loaded = load_models(base, with_faces=True)
    assert loaded.face_detector is not None and loaded.embedder is not None
    models = type(loaded)(_SameFramesDetector(loaded.detector), loaded.face_detector, loaded.embedder)
    fd, embedder = loaded.face_detector, loaded.embedder

    rng = random.Random(cfg.seed)
    names = sorted(photos.enroll)
    rng.shuffle(names)
    enrolled: list[Person] = []
    repo = Repository(db_url)
    try:
        for name in names:
            if len(enrolled) == 3:
                break
            sprite_img = cv2.imread(str(photos.shown[name]))
            sprite = cut_out(sprite_img, fd.detect, cfg.face_px) if sprite_img is not None else None
            if sprite is None:
                continue
            try:
                enroll(repo, name, photos.enroll[name], fd, embedder, detector_label(base),
                       base.identities.quality, keep_crops=False, actor="eval-video")
            except EnrollError:
                continue
            enrolled.append(Person(name, True, sprite))
    finally:
        repo.close()
    strangers: list[Person] = []
    for i, path in enumerate(photos.strangers):
        img = cv2.imread(str(path))
        sprite = cut_out(img, fd.detect, cfg.face_px) if img is not None else None
        if sprite is not None:
            strangers.append(Person(f"stranger-{i + 1}", False, sprite))
        if len(strangers) == 2:
            break
    if len(enrolled) < 3 or len(strangers) < 2:
        raise EvalVideoError(f"{cfg.faces_root}: could not enroll 3 identities and cut out 2 strangers "
                             f"(got {len(enrolled)} and {len(strangers)}): the photos need one clear face each")

    out: dict[str, Any] = {"policies": {}, "enrolled": [p.label for p in enrolled],
                           "strangers": [p.label for p in strangers],
                           "sequence": {"width": cfg.width, "height": cfg.height, "fps": cfg.fps}}
    per_policy: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in cfg.policies}
    delays: dict[str, list[float]] = {p: [] for p in cfg.policies}
    for scen_name in cfg.scenarios:
        scen = build_scenario(scen_name, enrolled, strangers, cfg.width, cfg.height, cfg.fps)
        frames, truth = render(scen, background)
        video = (cfg.keep_videos or work) / f"{scen_name}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        write_video(video, frames, cfg.fps)
        frame_ts = [i / cfg.fps for i in range(len(frames))]
        for policy in cfg.policies:
            if progress is not None:
                progress(f"{scen_name} ({policy})")
            rec = base.recognition.model_copy(update={"segments": base.recognition.segments.model_copy(
                update={"enabled": policy == "segment"})})
            # Scored per sighting: every sighting is kept as a trajectory point (a point per frame).
            path = base.analytics.path.model_copy(update={"interval_s": min(base.analytics.path.interval_s,
                                                                            0.5 / cfg.fps)})
            ana = base.analytics.model_copy(update={"path": path})
            s = base.model_copy(update={"recognition": rec, "analytics": ana})
            run = run_embedded(s, str(video), CameraConfig(id=f"eval-{scen_name}"), models=models)
            repo = Repository(db_url)
            try:
                tracks = repo.tracks(run.run_id)
                index = segment_index(tracks)
                named = []
                for sg in repo.points(run.run_id):
                    seg = segment_at(index, sg.track_id, sg.seq)
                    named.append(NamedSighting(sg.seq, sg.ts, sg.track_id, seg.segment if seg else 0, sg.box,
                                               seg.identity if seg else None, seg.named_ts if seg else None))
            finally:
                repo.close()
            result = score(truth, named, frame_ts)
            delays[policy] += result.pop("delays")
            result["segments"] = len(tracks)
            result["tracks"] = len(index)
            per_policy[policy][scen_name] = result
            if done is not None:
                done(f"{scen_name} ({policy})")
    for policy in cfg.policies:
        overall = combine(list(per_policy[policy].values()), delays[policy])
        out["policies"][policy] = {**overall, "scenarios": per_policy[policy]}
    return out


def format_table(result: dict[str, Any]) -> str:
    """Markdown: one row per scenario and policy, the overall rows last."""
    rows = []
    policies = list(result["policies"])
    scenarios = list(next(iter(result["policies"].values()))["scenarios"]) if policies else []
    for name in [*scenarios, "overall"]:
        for policy in policies:
            r = result["policies"][policy] if name == "overall" else result["policies"][policy]["scenarios"][name]
            ttn = r["time_to_name_s_p50"]
            rows.append([name, policy, f"{r['identity_precision']:.3f}", f"{r['identity_recall']:.3f}",
                         str(r["wrong_name_sightings"]), str(r["name_switches"]),
                         "-" if ttn is None else f"{ttn:.2f}", str(r["sightings"])])
    return markdown_table(["scenario", "policy", "precision", "recall", "wrong names", "switches",
                           "time to name p50 (s)", "sightings"], rows)


def json_report(result: dict[str, Any], policy: str = "segment") -> dict[str, Any]:
    """The ``--json`` document: the metrics of ``policy`` at the top level and per scenario, and every
    policy's figures under ``policies`` (side by side)."""
    chosen = result["policies"].get(policy) or next(iter(result["policies"].values()))
    doc: dict[str, Any] = {k: chosen[k] for k in METRICS}
    doc["policy"] = policy if policy in result["policies"] else next(iter(result["policies"]))
    doc["scenarios"] = {n: {k: v[k] for k in (*METRICS, "sightings", "segments", "tracks")}
                        for n, v in chosen["scenarios"].items()}
    doc["policies"] = result["policies"]
    doc["enrolled"], doc["strangers"], doc["sequence"] = result["enrolled"], result["strangers"], result["sequence"]
    return doc


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


__all__ = ["METRICS", "POLICIES", "SCENARIOS", "EvalVideoError", "VideoEvalConfig", "build_scenario", "cut_out",
           "evaluate_video", "format_table", "json_report", "render", "score", "write_json"]
