"""The privacy blur: faces of people who are not enrolled (or of everyone) are made unrecoverable in
every image Genesis stores or shows — camera snapshots (heatmap backgrounds), ``annotated.mp4``,
the heatmap PNG of a run, live-view frames. Recognition itself always sees the real frame.

One function for every writer: :meth:`Redactor.image` (and :meth:`Redactor.jpeg`; the live view's
:func:`live_encoder`). YuNet looks for
faces in the whole image (in overlapping tiles when it is large, since YuNet works on at most 640
pixels a side) and in the upper part of every person box (small faces of far people). A face is
kept only when the camera's mode is ``unenrolled``, its centre lies in the box of a track whose
current identity is an enrolled name, and in no box of a track without one: where an unknown and
an enrolled person overlap, the face is blurred (a wrong reveal is the error that matters here).
Each other face, grown by ``privacy.expand``, is pixelated to ``privacy.blocks`` blocks, blurred and
taken half way to its mean colour (or filled with one colour); then the image is searched again,
until YuNet finds nothing left to blur (at most ``MAX_PASSES`` passes: usually two, the second
finding nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from genesis.backends.faces import FaceDetector, build_face_detector
from genesis.config import CameraConfig, Settings
from genesis.config.privacy import PrivacyConfig
from genesis.domain import BBox, Face, FrameOutcome, TrackedPerson
from genesis.services.live import Encoder, encode_live_frame
from genesis.stages.camera import CameraState
from genesis.stages.recognize import upper_crop_box

MAX_PASSES = 3
"""Look again after blurring (a blurred blob, or a face hidden behind a stronger one, can still be
found), until nothing is left to blur or this many passes."""
LARGE_PERSON_PX = 240
"""A person this tall at YuNet's working size has a face it finds in the whole image (about 1/7
of the height: 30 px or more); smaller ones get a search of their own box."""
TILE = 640
"""Side of the tiles a large image is searched in (YuNet's working size)."""


@dataclass(frozen=True, slots=True)
class FrameView:
    """Who is where in one frame: the person boxes and each track's current name (None: nobody
    enrolled). What the blur needs to know besides the pixels."""

    persons: tuple[TrackedPerson, ...] = ()
    names: Mapping[int, str | None] = field(default_factory=dict)


def view_of(outcome: FrameOutcome, state: CameraState) -> FrameView:
    """The view of a processed frame, with each track's name as the camera state has it now."""
    persons = outcome.tracked.persons
    return FrameView(persons, {p.track_id: state.recognizer.identity(p.track_id).identity for p in persons})


def _tiles(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Overlapping TILE x TILE windows covering an image larger than about one tile and a half."""
    if max(width, height) <= TILE * 1.5:
        return []
    step = int(TILE * 0.75)
    xs = [*range(0, max(1, width - TILE), step), max(0, width - TILE)]
    ys = [*range(0, max(1, height - TILE), step), max(0, height - TILE)]
    return [(x, y, min(width, x + TILE), min(height, y + TILE)) for y in sorted(set(ys)) for x in sorted(set(xs))]


def _shift(face: Face, dx: int, dy: int) -> Face:
    x1, y1, x2, y2 = face.box
    return Face((x1 + dx, y1 + dy, x2 + dx, y2 + dy), tuple((x + dx, y + dy) for x, y in face.landmarks), face.score)


def _inside(point: tuple[float, float], box: BBox) -> bool:
    x, y = point
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


class Redactor:
    """Blurs faces for one camera's mode (``unenrolled`` or ``everyone``)."""

    def __init__(self, detector: FaceDetector, config: PrivacyConfig, mode: str, upper_fraction: float = 0.5) -> None:
        if mode not in ("unenrolled", "everyone"):
            raise ValueError(f"blur mode must be unenrolled or everyone, got {mode!r}")
        self.detector = detector
        self.config = config
        self.mode = mode
        self.upper_fraction = upper_fraction

    def faces(self, image: np.ndarray, persons: Sequence[TrackedPerson] = ()) -> list[Face]:
        """Every face YuNet finds: whole image, tiles of a large one, and the upper part of each
        person box too small for its face to show at the whole image's working size."""
        h, w = image.shape[:2]
        found = list(self.detector.detect(image))
        tiles = _tiles(w, h)
        for x1, y1, x2, y2 in tiles:
            found += [_shift(f, x1, y1) for f in self.detector.detect(image[y1:y2, x1:x2])]
        scale = 1.0 if tiles else min(1.0, TILE / max(h, w))
        for p in persons:
            if (p.box[3] - p.box[1]) * scale >= LARGE_PERSON_PX:
                continue
            cx1, cy1, cx2, cy2 = upper_crop_box(p.box, self.upper_fraction, w, h)
            if cx2 - cx1 >= 8 and cy2 - cy1 >= 8:
                found += [_shift(f, cx1, cy1) for f in self.detector.detect(image[cy1:cy2, cx1:cx2])]
        return found

    def keep(self, face: Face, view: FrameView) -> bool:
        """An enrolled person's face (mode ``unenrolled``): in a named track's box, in no unnamed one."""
        if self.mode != "unenrolled":
            return False
        x1, y1, x2, y2 = face.box
        centre = ((x1 + x2) / 2, (y1 + y2) / 2)
        holders = [p for p in view.persons if _inside(centre, p.box)]
        return bool(holders) and all(view.names.get(p.track_id) for p in holders)

    def image(self, image: np.ndarray, view: FrameView | None = None) -> np.ndarray:
        """A copy of ``image`` with every face blurred that is not kept."""
        view = view or FrameView()
        out = image.copy()
        # A named person's box is searched only through the whole image: a face found in it alone is
        # kept anyway, and one also in an unnamed box is found through that box.
        unnamed = [p for p in view.persons if self.mode == "everyone" or not view.names.get(p.track_id)]
        for _ in range(MAX_PASSES):
            blurred = 0
            for face in self.faces(out, unnamed):
                if not self.keep(face, view):
                    self._blur(out, face.box)
                    blurred += 1
            if not blurred:
                break
        return out

    def jpeg(self, data: bytes, view: FrameView | None, quality: int = 90) -> bytes:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError("cannot decode the image to blur")
        ok, buf = cv2.imencode(".jpg", self.image(img, view), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("cannot encode the blurred image")
        return bytes(buf)

    def _blur(self, img: np.ndarray, box: BBox) -> None:
        h, w = img.shape[:2]
        x1, y1, x2, y2 = box
        gx, gy = (x2 - x1) * self.config.expand, (y2 - y1) * self.config.expand
        ax1, ay1 = max(0, int(np.floor(x1 - gx))), max(0, int(np.floor(y1 - gy)))
        ax2, ay2 = min(w, int(np.ceil(x2 + gx))), min(h, int(np.ceil(y2 + gy)))
        if ax2 - ax1 < 2 or ay2 - ay1 < 2:
            return
        region = img[ay1:ay2, ax1:ax2]
        rh, rw = region.shape[:2]
        if self.config.method == "fill":
            region[:] = region.reshape(-1, region.shape[2]).mean(axis=0).astype(img.dtype)
            return
        bx = max(1, min(rw, self.config.blocks))
        by = max(1, min(rh, round(self.config.blocks * rh / rw)))
        small = cv2.resize(region, (bx, by), interpolation=cv2.INTER_AREA)
        blocky = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_NEAREST)
        k = max(3, (min(rw // bx, rh // by) // 2) * 2 + 1)  # about one block: softens the block edges
        soft = cv2.GaussianBlur(blocky, (k, k), 0).astype(np.float32)
        # Half way to the region's mean colour: a low-contrast blob that no longer reads as a face.
        mean = region.reshape(-1, region.shape[2]).mean(axis=0)
        region[:] = np.clip(0.5 * soft + 0.5 * mean, 0, 255).astype(img.dtype)


def privacy_detector(settings: Settings) -> FaceDetector:
    """YuNet with the privacy thresholds (lower than recognition's: a missed face is the worse error)."""
    fd = settings.recognition.face_detector.model_copy(
        update={"score_threshold": settings.privacy.score_threshold, "min_face_px": settings.privacy.min_face_px})
    return build_face_detector(fd, settings.models.path)


def redactor_for(settings: Settings, camera: CameraConfig, detector: FaceDetector | None = None) -> Redactor | None:
    """The camera's redactor, or None when its images are not blurred (``cameras[].blur_faces``,
    ``privacy.blur_unenrolled_faces``)."""
    mode = settings.blur_mode(camera)
    if mode == "off":
        return None
    return Redactor(detector or privacy_detector(settings), settings.privacy, mode,
                    settings.recognition.upper_fraction)


def view_from_meta(meta: Mapping[str, Any]) -> FrameView:
    """The view of a live frame, from its JSON (``genesis.services.live.frame_meta``)."""
    persons = tuple(TrackedPerson(int(p["track_id"]), tuple(float(v) for v in p["box"]), 1.0)  # type: ignore[arg-type]
                    for p in meta.get("persons", []))
    return FrameView(persons, {int(p["track_id"]): p.get("identity") for p in meta.get("persons", [])})


def live_encoder(redactor_of: Callable[[str], Redactor | None], encode: Encoder = encode_live_frame) -> Encoder:
    """The live view's frame encoder with the camera's privacy blur in front (``LivePublisher.encode``).
    A blur that fails raises: the live publisher then skips the frame rather than show it."""

    def blurred(image: np.ndarray, meta: dict[str, Any], max_side: int, quality: int) -> bytes:
        redactor = redactor_of(str(meta["camera_id"]))
        if redactor is not None:
            image = redactor.image(image, view_from_meta(meta))
        return encode(image, meta, max_side, quality)

    return blurred
