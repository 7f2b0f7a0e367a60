"""Sliced inference: a large frame cut into overlapping tiles, each detected at the model's input size,
boxes merged across tile borders (plus, optionally, one pass on the whole frame for people taller than a tile).

Why not supervision's ``InferenceSlicer``: its merge does not know which boxes a tile border cut. With NMS
(its default, IoU) a person cut by a border comes out twice (the fragment and the whole box overlap at an
IoU well under 0.5), and two fragments of a person cut in both tiles overlap only inside the tiles' overlap
strip, so neither IoU nor IoS joins them; with non-max merging by IoS every box mostly inside another one is
merged, which in a crowd fuses neighbours. Here only boxes that touch an inner tile border (fragments) are
merged: into a box that holds most of them, or with the fragment from the other side of the same border that
meets them and spans the same rows; whole boxes go through plain NMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genesis.backends.detectors.common import PersonDetector, sort_detections
from genesis.config import TilingConfig
from genesis.domain import Detection

BORDER_PX = 3.0
"""A box edge this close to an inner tile border was cut by it."""


@dataclass(frozen=True, slots=True)
class Tile:
    x1: int
    y1: int
    x2: int
    y2: int


def tile_grid(width: int, height: int, columns: int, rows: int, overlap: float) -> list[Tile]:
    """``columns`` x ``rows`` tiles covering the frame, neighbours overlapping by ``overlap`` of a tile side."""

    def spans(length: int, n: int) -> list[tuple[int, int]]:
        if n == 1:
            return [(0, length)]
        side = length / (n - (n - 1) * overlap)
        step = side * (1.0 - overlap)
        out = []
        for i in range(n):
            a = round(i * step)
            out.append((a, min(length, round(a + side)) if i < n - 1 else length))
        return out

    return [Tile(x1, y1, x2, y2) for y1, y2 in spans(height, rows) for x1, x2 in spans(width, columns)]


@dataclass(slots=True)
class _Box:
    box: np.ndarray
    score: float
    class_id: int
    cut_x: bool = False
    """Cut by a vertical inner tile border (its left or right side)."""
    cut_y: bool = False
    """Cut by a horizontal inner tile border (its top or bottom)."""

    @property
    def cut(self) -> bool:
        return self.cut_x or self.cut_y


def _cut_by(box: tuple[float, float, float, float], tile: Tile, width: int, height: int) -> tuple[bool, bool]:
    x1, y1, x2, y2 = box
    cut_x = (tile.x1 > 0 and x1 - tile.x1 <= BORDER_PX) or (tile.x2 < width and tile.x2 - x2 <= BORDER_PX)
    cut_y = (tile.y1 > 0 and y1 - tile.y1 <= BORDER_PX) or (tile.y2 < height and tile.y2 - y2 <= BORDER_PX)
    return cut_x, cut_y


def _span_iou(a1: float, a2: float, b1: float, b2: float) -> float:
    inter = min(a2, b2) - max(a1, b1)
    return inter / (max(a2, b2) - min(a1, b1)) if inter > 0 else 0.0


def _same_person_pieces(a: _Box, b: _Box, ios: float, merge_ios: float) -> bool:
    """Two pieces of one person: a fragment mostly inside another box, or two fragments cut by the same
    border that meet there and span the same rows (or columns)."""
    if not (a.cut or b.cut):
        return False
    if ios >= merge_ios:
        return True
    meet_x = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0]) >= -BORDER_PX
    meet_y = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1]) >= -BORDER_PX
    if not (meet_x and meet_y):
        return False
    rows = a.cut_x and b.cut_x and _span_iou(a.box[1], a.box[3], b.box[1], b.box[3]) >= merge_ios
    cols = a.cut_y and b.cut_y and _span_iou(a.box[0], a.box[2], b.box[0], b.box[2]) >= merge_ios
    return rows or cols


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """IoU and intersection over the smaller box."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0, 0.0
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter), inter / max(min(area_a, area_b), 1e-9)


def merge_tiles(boxes: list[_Box], iou: float, merge_ios: float) -> list[Detection]:
    """Pieces of one person (``_same_person_pieces``: fragments cut by tile borders) are joined into their
    union, repeatedly, so a person cut into four at a tile corner becomes one box; then plain NMS at ``iou``
    drops the duplicates (the same whole person seen by two tiles, or by a tile and the full frame)."""
    items = sorted(boxes, key=lambda x: (-x.score, tuple(x.box)))
    changed = True
    while changed:
        changed = False
        joined: list[_Box] = []
        for b in items:
            for k in joined:
                if k.class_id == b.class_id and _same_person_pieces(k, b, _overlaps(k.box, b.box)[1], merge_ios):
                    k.box = np.array([min(k.box[0], b.box[0]), min(k.box[1], b.box[1]),
                                      max(k.box[2], b.box[2]), max(k.box[3], b.box[3])])
                    k.cut_x, k.cut_y = k.cut_x or b.cut_x, k.cut_y or b.cut_y  # it may meet more pieces
                    changed = True
                    break
            else:
                joined.append(_Box(b.box.copy(), b.score, b.class_id, b.cut_x, b.cut_y))
        items = joined
    kept: list[_Box] = []
    for b in items:
        if not any(k.class_id == b.class_id and _overlaps(k.box, b.box)[0] > iou for k in kept):
            kept.append(b)
    out = [
        Detection(box=(round(float(k.box[0]), 2), round(float(k.box[1]), 2), round(float(k.box[2]), 2),
                       round(float(k.box[3]), 2)), score=k.score, class_id=k.class_id)
        for k in kept
    ]
    return sort_detections(out)


class TiledDetector:
    """Any ``PersonDetector`` run on overlapping tiles of the frame (see the module doc)."""

    def __init__(self, inner: PersonDetector, config: TilingConfig, iou: float) -> None:
        self.inner = inner
        self.config = config
        self.iou = iou
        self.name = f"{inner.name}+tiles{config.columns}x{config.rows}"

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        c = self.config
        boxes: list[_Box] = []
        for tile in tile_grid(w, h, c.columns, c.rows, c.overlap):
            crop = image[tile.y1 : tile.y2, tile.x1 : tile.x2]
            for d in self.inner.detect(crop):
                box = (d.box[0] + tile.x1, d.box[1] + tile.y1, d.box[2] + tile.x1, d.box[3] + tile.y1)
                boxes.append(_Box(np.array(box, dtype=np.float64), d.score, d.class_id, *_cut_by(box, tile, w, h)))
        if c.full_frame and (c.columns > 1 or c.rows > 1):
            boxes += [_Box(np.array(d.box, dtype=np.float64), d.score, d.class_id)
                      for d in self.inner.detect(image)]
        return merge_tiles(boxes, self.iou, c.merge_ios)


def tiled(detector: PersonDetector, config: TilingConfig | None, iou: float) -> PersonDetector:
    """``detector`` itself when tiling is off, else wrapped."""
    if config is None or not config.enabled or (config.columns == 1 and config.rows == 1):
        return detector
    return TiledDetector(detector, config, iou)
