"""What every detector family shares: the interface, greedy NMS, and rows → ``Detection``s."""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from genesis.domain import Detection


class PersonDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detections of the configured classes in a BGR image, in image pixels, sorted by score."""
        ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression; boxes are x1, y1, x2, y2. Deterministic (stable sort)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (xx2 - xx1).clip(0) * (yy2 - yy1).clip(0)
        union = areas[i] + areas[rest] - inter
        ious = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
        order = rest[ious <= iou]
    return keep


def clip_boxes(xyxy: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    h, w = image_shape
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    return xyxy


def nms_detections(xyxy: np.ndarray, scores: np.ndarray, cls: int, iou: float) -> list[Detection]:
    """NMS over one class's boxes (already in image pixels and clipped), as rounded Detections."""
    dets: list[Detection] = []
    for i in nms(xyxy, scores, iou):
        x1, y1, x2, y2 = (round(float(v), 2) for v in xyxy[i])
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        dets.append(Detection(box=(x1, y1, x2, y2), score=round(float(scores[i]), 4), class_id=cls))
    return dets


def person_prior(dets: list[Detection], min_height_px: float = 0.0, max_aspect: float = 0.0) -> list[Detection]:
    """Drop boxes no person in view has: shorter than ``min_height_px`` (frame pixels), or wider than
    ``max_aspect`` times their height (a standing or walking person is taller than wide; such boxes are
    fragments: a head cut by the top of the frame, a bag). 0 turns a check off. Order is kept."""
    if min_height_px <= 0.0 and max_aspect <= 0.0:
        return dets
    kept: list[Detection] = []
    for d in dets:
        x1, y1, x2, y2 = d.box
        h = y2 - y1
        if h < min_height_px or (max_aspect > 0.0 and (x2 - x1) > max_aspect * h):
            continue
        kept.append(d)
    return kept


class PriorDetector:
    """A detector whose boxes go through ``person_prior`` (``build_detector`` wraps one when a prior is on).

    ``detect_batch`` keeps a batching inner detector batching; other attributes (the session, the config ...)
    are the inner detector's."""

    def __init__(self, inner: PersonDetector, min_height_px: float, max_aspect: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.min_height_px = min_height_px
        self.max_aspect = max_aspect

    def detect(self, image: np.ndarray) -> list[Detection]:
        return person_prior(self.inner.detect(image), self.min_height_px, self.max_aspect)

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        batch = getattr(self.inner, "detect_batch", None)
        found: list[list[Detection]] = batch(images) if batch is not None else [self.inner.detect(i) for i in images]
        return [person_prior(d, self.min_height_px, self.max_aspect) for d in found]

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def sort_detections(dets: list[Detection]) -> list[Detection]:
    dets.sort(key=lambda d: (-d.score, d.box))
    return dets


def detections_from_xyxy(data: np.ndarray, image_shape: tuple[int, int]) -> list[Detection]:
    """Rows of x1, y1, x2, y2, score, class to Detections (clipped, rounded and sorted like the decoders)."""
    h, w = image_shape
    dets: list[Detection] = []
    for x1, y1, x2, y2, score, cls in data.reshape(-1, 6):
        box = (
            round(min(max(float(x1), 0.0), w), 2),
            round(min(max(float(y1), 0.0), h), 2),
            round(min(max(float(x2), 0.0), w), 2),
            round(min(max(float(y2), 0.0), h), 2),
        )
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        dets.append(Detection(box=box, score=round(float(score), 4), class_id=int(cls)))
    return sort_detections(dets)


def timed_detect(detector: PersonDetector, image: np.ndarray) -> tuple[list[Detection], float]:
    t0 = time.perf_counter()
    dets = detector.detect(image)
    return dets, (time.perf_counter() - t0) * 1000.0
