"""The YOLOX family (``type: yolox``): ByteTrack's pedestrian detectors and other YOLOX exports on onnxruntime.

Output rows are raw, one per anchor point of every level (stride 8, 16, 32 ...; each level row-major, y then
x): dx, dy, log w, log h, objectness, class scores (the last two already through a sigmoid). Decoded here:
cx = (dx + gx)·s, cy = (dy + gy)·s, w = exp(log w)·s, h = exp(log h)·s, score = objectness × class score,
then per-class NMS. Input: the frame resized keeping its aspect, at the TOP-LEFT of a 114-grey canvas of the
network size; ``bytetrack`` preprocessing then turns it RGB, /255 and ImageNet mean/std; ``yolox`` (YOLOX
>= 0.2 exports) feeds BGR 0..255 as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from genesis.backends.detectors.common import clip_boxes, nms_detections, sort_detections
from genesis.backends.onnx import create_session
from genesis.backends.weights import WeightsError
from genesis.config import YoloxDetectorConfig
from genesis.domain import Detection

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def pad_top_left(image: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio into ``size_hw`` and put it at the top-left of a 114-grey canvas."""
    h, w = image.shape[:2]
    th, tw = size_hw
    r = min(th / h, tw / w)
    nh, nw = int(h * r), int(w * r)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else image
    out = np.full((th, tw, 3), 114, dtype=np.uint8)
    out[:nh, :nw] = resized
    return out, r


class InputTables(NamedTuple):
    """How a padded BGR uint8 canvas becomes the network input: input channel ``c`` is read from pixel channel
    ``sources[c]``, and grey level ``v`` of it becomes ``values[c, v]``."""

    sources: tuple[int, int, int]
    values: np.ndarray


def input_tables(preprocess: str) -> InputTables:
    """``bytetrack``: RGB, ``(v / 255 - mean) / std``; ``yolox``: BGR, ``v``. The values are computed with the same
    float32 operations as on a whole image, so they are the same bits."""
    levels = np.arange(256, dtype=np.float32)
    if preprocess == "bytetrack":
        values = np.stack([(levels / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c] for c in range(3)])
        return InputTables((2, 1, 0), values.astype(np.float32))
    return InputTables((0, 1, 2), np.stack([levels] * 3))


def to_input(padded: np.ndarray, tables: InputTables) -> np.ndarray:
    """The 1 x 3 x H x W float32 network input of an H x W x 3 BGR uint8 canvas: each channel split out once,
    then one table look-up per pixel (``cv2.LUT``) written straight into its plane of the input (about 1 ms for
    608 x 1088 here; 4 ms with ``np.take`` on the interleaved channels, 18 ms with the arithmetic on every
    pixel). The same bits as the arithmetic (tested)."""
    h, w = padded.shape[:2]
    out = np.empty((1, 3, h, w), dtype=np.float32)
    channels = cv2.split(padded)
    for c, source in enumerate(tables.sources):
        plane = out[0, c]
        written = cv2.LUT(channels[source], tables.values[c], dst=plane)
        if not np.shares_memory(written, plane):  # an OpenCV that allocated its own
            plane[...] = written
    return out


def yolox_grid(size_hw: tuple[int, int], strides: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor points (gx, gy) and the stride of each output row, in the model's row order."""
    grids, steps = [], []
    for s in strides:
        gh, gw = size_hw[0] // s, size_hw[1] // s
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        steps.append(np.full(gh * gw, s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(steps).astype(np.float32)[:, None]


def yolox_boxes(
    output: np.ndarray,
    grid: np.ndarray,
    steps: np.ndarray,
    ratio: float,
    image_shape: tuple[int, int],
    cls: int,
    conf: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One class's candidate boxes before NMS: x1, y1, x2, y2 in image pixels (clipped) and scores, for the
    rows scoring at least ``conf`` (raw YOLOX rows 1 x N x (5 + C))."""
    pred = output.reshape(-1, output.shape[-1])
    if pred.shape[0] != grid.shape[0]:
        raise ValueError(f"the model gives {pred.shape[0]} rows, the strides and input size {grid.shape[0]}")
    n_classes = pred.shape[1] - 5
    if not 0 <= cls < n_classes:
        raise ValueError(f"class {cls} is not in the model's {n_classes} classes")
    scores = pred[:, 4] * pred[:, 5 + cls]
    mask = scores >= conf
    p, g, s = pred[mask], grid[mask], steps[mask]
    cxcy = (p[:, :2] + g) * s
    wh = np.exp(np.minimum(p[:, 2:4], 20.0)) * s  # exp of a wild value must not overflow
    xyxy = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1).astype(np.float64) / ratio
    return clip_boxes(xyxy, image_shape), scores[mask].astype(np.float64)


def decode_yolox(
    output: np.ndarray,
    grid: np.ndarray,
    steps: np.ndarray,
    ratio: float,
    image_shape: tuple[int, int],
    classes: list[int],
    conf: float,
    iou: float,
) -> list[Detection]:
    """Raw YOLOX rows (1 x N x (5 + C)) to detections in image pixels (NMS per class)."""
    dets: list[Detection] = []
    for cls in classes:
        xyxy, scores = yolox_boxes(output, grid, steps, ratio, image_shape, cls, conf)
        if scores.size:
            dets.extend(nms_detections(xyxy, scores, cls, iou))
    return sort_detections(dets)


def _load_model(weights: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(weights))
    except Exception as exc:
        raise WeightsError(f"cannot read {weights}: {exc}") from exc


def _declared_hw(model: Any) -> tuple[int, int] | None:
    """The (height, width) the model's image input declares, or None when either is free."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not (dims[2].HasField("dim_value") and dims[3].HasField("dim_value")):
        return None
    return int(dims[2].dim_value), int(dims[3].dim_value)


def _with_input_size(model: Any, name: str, size_hw: tuple[int, int]) -> bytes:
    """``model`` (changed in place) serialized with its image input fixed at ``size_hw`` and its outputs' stored
    shapes cleared (onnxruntime infers them again)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ValueError(f"{name}: its input is not N x C x H x W")
    dims[2].ClearField("dim_param")
    dims[3].ClearField("dim_param")
    dims[2].dim_value, dims[3].dim_value = int(size_hw[0]), int(size_hw[1])
    for output in model.graph.output:
        for i, dim in enumerate(output.type.tensor_type.shape.dim):
            dim.ClearField("dim_value")
            dim.dim_param = f"out_{i}"
    del model.graph.value_info[:]  # shapes inferred for the exported size
    return bytes(model.SerializeToString())


def resized_input(weights: Path, size_hw: tuple[int, int]) -> bytes:
    """The serialized model at ``weights`` with its image input fixed at ``size_hw`` (height, width) instead of the
    size it was exported with, and its outputs' stored shapes cleared (onnxruntime infers them again).

    Only the declared shapes change, never a layer: a YOLOX export is fully convolutional (its decoding is done
    here), so it runs at any multiple of its largest stride. An export whose graph has the size built into it
    (a reshape to a constant row count) fails its first run or gives another row count (``YoloxDetector`` runs it
    once at start and says so)."""
    return _with_input_size(_load_model(weights), weights.name, size_hw)


class YoloxDetector:
    """A YOLOX-layout ONNX export (``bytetrack_nano.onnx``: 1 class, exported at 608 x 1088) on onnxruntime, at its
    own input size or at ``input_size``."""

    def __init__(self, weights: Path, config: YoloxDetectorConfig) -> None:
        self.config = config
        self.name = f"yolox:{weights.name}"
        resized: bytes | None = None
        if config.input_size is not None:
            # An export whose input shape was fixed when it was exported, asked for another size: the same fully
            # convolutional network with its declared shapes rewritten (the anchor grid is built here, for the
            # size in use). The model is read once and one session made from it.
            model = _load_model(weights)
            declared = _declared_hw(model)
            if declared is not None and declared != tuple(config.input_size):
                resized = _with_input_size(model, weights.name, config.input_size)
        self.session = create_session(weights, config.threads, config.device, model=resized)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        fixed = [d for d in inp.shape[2:4] if isinstance(d, int)]
        if len(fixed) == 2:
            self.size_hw = (int(fixed[0]), int(fixed[1]))
        elif config.input_size is not None:
            self.size_hw = (int(config.input_size[0]), int(config.input_size[1]))
        else:
            raise ValueError(f"{weights.name} has no fixed input size: set detector.input_size: [height, width]")
        self.input_dtype = np.float16 if "float16" in inp.type else np.float32
        self.grid, self.steps = yolox_grid(self.size_hw, config.strides)
        self.tables = input_tables(config.preprocess)
        if resized is not None:
            self._probe(weights)

    def _probe(self, weights: Path) -> None:
        """One run on a grey canvas, at start: an export resized by ``input_size`` must give one row per anchor
        point of that size, or the settings are refused here rather than on the first frame."""
        h, w = self.size_hw
        try:
            out = self.session.run(None, {self.input_name: self.preprocess(np.full((h, w, 3), 114, np.uint8))[0]})
            rows = int(np.prod(np.asarray(out[0]).shape[:-1]))
        except Exception as exc:
            raise ValueError(f"{weights.name} does not run at input_size {h}x{w} (its graph holds the size it was "
                             f"exported with; use that size or an export with a free input shape): {exc}") from exc
        if rows != self.grid.shape[0]:
            raise ValueError(f"{weights.name} at input_size {h}x{w} gives {rows} rows, not the {self.grid.shape[0]} "
                             f"anchor points of strides {self.config.strides}")

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        padded, ratio = pad_top_left(image, self.size_hw)
        return to_input(padded, self.tables).astype(self.input_dtype, copy=False), ratio

    def detect(self, image: np.ndarray) -> list[Detection]:
        blob, ratio = self.preprocess(image)
        out = self.session.run(None, {self.input_name: blob})[0]
        return decode_yolox(
            np.asarray(out, dtype=np.float32), self.grid, self.steps, ratio, (image.shape[0], image.shape[1]),
            self.config.classes, self.config.confidence, self.config.iou,
        )
