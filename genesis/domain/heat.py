"""Heatmap grids: foot-point counts on a grid of square cells, and their compact stored form.

One definition of where a box's foot point falls (the embedded run's heatmap, the stored hourly
grids and ``genesis heatmap`` all use it), so an image summed from stored grids is the image drawn
from the same boxes one by one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from genesis.domain import BBox

_U32 = np.dtype("<u4")


def grid_shape(width: int, height: int, cell: int) -> tuple[int, int]:
    """(rows, cols) of the grid of ``cell`` pixel squares over a ``width`` x ``height`` frame."""
    return max(1, -(-height // cell)), max(1, -(-width // cell))


def count_feet(boxes: Iterable[BBox], width: int, height: int, cell: int) -> np.ndarray:
    """Foot-point counts (bottom centre of each box) per cell, int64 (commutative: order does not matter)."""
    rows, cols = grid_shape(width, height, cell)
    arr = np.asarray(list(boxes), dtype=np.float64).reshape(-1, 4)
    grid = np.zeros((rows, cols), dtype=np.int64)
    if not len(arr):
        return grid
    x = np.floor_divide((arr[:, 0] + arr[:, 2]) / 2.0, cell)
    y = np.floor_divide(np.minimum(arr[:, 3], height - 1), cell)
    xi = np.clip(x, 0, cols - 1).astype(np.int64)
    yi = np.clip(y, 0, rows - 1).astype(np.int64)
    np.add.at(grid, (yi, xi), 1)
    return grid


def encode_cells(grid: np.ndarray) -> bytes:
    """The non-zero cells of a grid: uint32 indices (row-major) then their uint32 counts, little-endian."""
    flat = grid.ravel()
    idx = np.flatnonzero(flat)
    return idx.astype(_U32).tobytes() + flat[idx].astype(_U32).tobytes()


def add_cells(grid: np.ndarray, data: bytes) -> None:
    """Add stored cells (:func:`encode_cells`) into ``grid`` (same shape); ValueError when they do not fit."""
    if len(data) % 8:
        raise ValueError(f"heatmap cells of {len(data)} bytes: not pairs of uint32")
    n = len(data) // 8
    idx = np.frombuffer(data, dtype=_U32, count=n).astype(np.int64)
    counts = np.frombuffer(data, dtype=_U32, count=n, offset=4 * n).astype(np.int64)
    if n and int(idx.max()) >= grid.size:
        raise ValueError(f"heatmap cell {int(idx.max())} outside a {grid.shape} grid")
    np.add.at(grid.ravel(), idx, counts)  # ravel of a C-contiguous array is a view


def coarsen(grid: np.ndarray, cell: int, to_cell: int) -> np.ndarray:
    """The grid on cells of ``to_cell`` pixels when that is a multiple of ``cell`` (counts of the small
    cells summed, as if counted on the larger ones), else the grid unchanged."""
    if to_cell <= cell or to_cell % cell:
        return grid
    k = to_cell // cell
    rows, cols = -(-grid.shape[0] // k), -(-grid.shape[1] // k)
    padded = np.zeros((rows * k, cols * k), dtype=grid.dtype)
    padded[: grid.shape[0], : grid.shape[1]] = grid
    out: np.ndarray = padded.reshape(rows, k, cols, k).sum(axis=(1, 3))
    return out


__all__ = ["add_cells", "coarsen", "count_feet", "encode_cells", "grid_shape"]
