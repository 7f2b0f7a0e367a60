"""The YOLOX family (ByteTrack's pedestrian model) on real photos, its decoding, tiling, and the config.

Hand-checked positions: the photos were looked at with the boxes drawn on them (2026-11-30); the points
below are on each person (head or chest), in original pixels.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from genesis.backends.detectors import PersonDetector, TiledDetector, YoloxDetector, build_detector, tiled
from genesis.backends.detectors.tiling import _Box, merge_tiles, tile_grid
from genesis.backends.detectors.yolox import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    decode_yolox,
    input_tables,
    pad_top_left,
    resized_input,
    to_input,
    yolox_grid,
)
from genesis.backends.onnx import create_session
from genesis.config import Settings, TilingConfig, YoloDetectorConfig, YoloxDetectorConfig
from genesis.config.inference import DETECTOR_PRESETS, detector_config

PEOPLE = {
    "bus.jpg": [(124, 428), (281, 428), (742, 675)],  # the cut-off man at the left edge scores < 0.4
    "zidane.jpg": [(570, 255), (975, 128)],
}


@pytest.fixture(scope="module")
def yolox(models_dir: Path) -> PersonDetector:
    return build_detector(detector_config({"type": "yolox", "confidence": 0.4}), models_dir)


def _photo(shared_dir: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(shared_dir / "models" / "person" / "images" / name), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _inside(point: tuple[int, int], box: tuple[float, float, float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@pytest.mark.parametrize("name", list(PEOPLE))
def test_yolox_boxes_where_the_people_are(yolox: PersonDetector, shared_dir: Path, name: str) -> None:
    dets = yolox.detect(_photo(shared_dir, name))
    points = PEOPLE[name]
    assert len(dets) == len(points), [d.box for d in dets]
    for d in dets:  # one person per box, one box per person
        assert sum(_inside(p, d.box) for p in points) == 1, d.box
    for p in points:
        assert sum(_inside(p, d.box) for d in dets) == 1, p
    assert all(d.score >= 0.4 and d.class_id == 0 for d in dets)
    assert isinstance(yolox, YoloxDetector) and yolox.size_hw == (608, 1088)


def test_yolox_exact_boxes_on_bus(yolox: PersonDetector, shared_dir: Path) -> None:
    """Full-body boxes (the model's style): a feet-to-head box on each of the three men."""
    boxes = sorted(d.box for d in yolox.detect(_photo(shared_dir, "bus.jpg")))
    expected = [(40, 391, 228, 906), (216, 407, 362, 854), (661, 344, 810, 889)]
    for got, want in zip(boxes, expected, strict=True):
        assert np.allclose(got, want, atol=3), (got, want)


def test_pedestrian_model_finds_a_street_crowd(yolox: PersonDetector, data_dir: Path) -> None:
    """mmtracking_demo.mp4 frame 0 (a 1920x1080 street; not MOT17): the model README counted 43 at 0.4."""
    cap = cv2.VideoCapture(str(data_dir / "video" / "mmtracking_demo.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    assert 38 <= len(yolox.detect(frame)) <= 48


def test_no_person_no_box(yolox: PersonDetector) -> None:
    from skimage import data

    cat = np.ascontiguousarray(data.cat()[..., ::-1])
    assert yolox.detect(cat) == []


def test_preprocess_is_top_left_and_normalised(yolox: PersonDetector) -> None:
    image = np.full((300, 400, 3), (0, 0, 255), dtype=np.uint8)  # pure red, BGR
    padded, r = pad_top_left(image, (608, 1088))
    assert r == pytest.approx(608 / 300)
    assert (padded[:608, :810] == (0, 0, 255)).all() and (padded[:, 812:] == 114).all()
    assert isinstance(yolox, YoloxDetector)
    blob, _ = yolox.preprocess(image)
    assert blob.shape == (1, 3, 608, 1088)
    assert blob[0, 0, 0, 0] == pytest.approx((1.0 - 0.485) / 0.229, abs=1e-4)  # channel 0 is R
    assert blob[0, 2, 0, 0] == pytest.approx((0.0 - 0.406) / 0.225, abs=1e-4)


@pytest.mark.parametrize("mode", ["bytetrack", "yolox"])
def test_table_input_is_the_per_pixel_arithmetic_bit_for_bit(data_dir: Path, mode: str) -> None:
    """The look-up tables give exactly the floats of the per-pixel formula (RGB, /255, ImageNet mean/std; or BGR
    as is) on a real frame with its grey padding, so the detections cannot change."""
    cap = cv2.VideoCapture(str(data_dir / "video" / "opencv4nodejs_people.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    padded, _ = pad_top_left(frame, (608, 1088))
    if mode == "bytetrack":
        x = (padded[:, :, ::-1].astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    else:
        x = padded.astype(np.float32)
    expected = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
    got = to_input(padded, input_tables(mode))
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_decode_grid_order_and_scale() -> None:
    """One hot row per level: the box lands where the grid/stride arithmetic puts it, divided by the ratio."""
    grid, steps = yolox_grid((64, 96), [8, 16, 32])
    assert grid.shape[0] == 8 * 12 + 4 * 6 + 2 * 3
    out = np.zeros((1, grid.shape[0], 6), dtype=np.float32)
    row = 8 * 12 + 1 * 6 + 2  # level 2 (stride 16), y = 1, x = 2
    out[0, row] = (0.5, 0.5, np.log(2.0), np.log(3.0), 0.9, 0.8)
    out[0, 5] = (0.0, 0.0, 0.0, 0.0, 0.9, 0.1)  # score 0.09: under the threshold
    dets = decode_yolox(out, grid, steps, 0.5, (200, 200), [0], 0.25, 0.45)
    assert len(dets) == 1
    cx, cy, w, h = 2.5 * 16, 1.5 * 16, 2 * 16, 3 * 16
    assert dets[0].box == pytest.approx(((cx - w / 2) / 0.5, (cy - h / 2) / 0.5, (cx + w / 2) / 0.5,
                                         (cy + h / 2) / 0.5))
    assert dets[0].score == pytest.approx(0.72)
    with pytest.raises(ValueError, match="class 1 is not in the model's 1 classes"):
        decode_yolox(out, grid, steps, 1.0, (200, 200), [1], 0.25, 0.45)


# -- tiling ---------------------------------------------------------------------------------


def test_tile_grid_covers_the_frame_with_overlap() -> None:
    tiles = tile_grid(1920, 1080, 3, 2, 0.2)
    assert len(tiles) == 6
    assert min(t.x1 for t in tiles) == 0 and max(t.x2 for t in tiles) == 1920
    assert min(t.y1 for t in tiles) == 0 and max(t.y2 for t in tiles) == 1080
    xs = sorted({(t.x1, t.x2) for t in tiles})
    for (a1, a2), (b1, _) in itertools.pairwise(xs):
        assert b1 < a2 and (a2 - b1) == pytest.approx(0.2 * (a2 - a1), abs=2)


def test_person_cut_by_a_tile_border_is_one_box(yolox: PersonDetector, shared_dir: Path) -> None:
    """bus.jpg in 3 columns with a small overlap: the borders at x = 265 and 279 cut the middle man
    (x 216..362), so each tile sees only a piece of him; the merge gives one box over the whole man."""
    image = _photo(shared_dir, "bus.jpg")
    config = TilingConfig(enabled=True, columns=3, rows=1, overlap=0.05, full_frame=False)
    tiles = tile_grid(image.shape[1], image.shape[0], 3, 1, 0.05)
    assert 216 < tiles[1].x1 < tiles[0].x2 < 362
    pieces = [d for t in tiles[:2] for d in yolox.detect(image[t.y1 : t.y2, t.x1 : t.x2])
              if 216 < (d.box[0] + d.box[2]) / 2 + t.x1 < 362]
    assert len(pieces) == 2  # a piece of him in each of the first two tiles, neither whole
    det = tiled(yolox, config, 0.45)
    assert isinstance(det, TiledDetector)
    dets = det.detect(image)
    middle = [d for d in dets if _inside((281, 428), d.box)]
    assert len(middle) == 1, [d.box for d in dets]
    assert middle[0].box[0] <= 222 and middle[0].box[2] >= 350  # the whole man, not a piece
    assert len(dets) == 3
    # 3 x 2 tiles: he is cut in four at a tile corner, still one box; with the full frame too
    for rows, full in ((2, False), (2, True), (1, True)):
        cfg = TilingConfig(enabled=True, columns=3, rows=rows, overlap=0.1, full_frame=full)
        dets = tiled(yolox, cfg, 0.45).detect(image)
        assert len([d for d in dets if _inside((281, 428), d.box)]) == 1, (rows, full, [d.box for d in dets])


def test_plain_nms_would_keep_the_pieces() -> None:
    """The same two pieces as whole boxes (not cut): NMS alone keeps both, so the border rule is what merges."""
    a = _Box(np.array([209.0, 408, 279, 864]), 0.75, 0, cut_x=True)
    b = _Box(np.array([265.0, 403, 356, 858]), 0.71, 0, cut_x=True)
    assert len(merge_tiles([a, b], 0.45, 0.6)) == 1
    a.cut_x = b.cut_x = False
    assert len(merge_tiles([a, b], 0.45, 0.6)) == 2
    # Two people side by side, both cut by the border but of different heights: not merged
    c = _Box(np.array([209.0, 408, 279, 864]), 0.75, 0, cut_x=True)
    d = _Box(np.array([265.0, 100, 356, 400]), 0.71, 0, cut_x=True)
    assert len(merge_tiles([c, d], 0.45, 0.6)) == 2


def test_tiling_off_returns_the_detector(yolox: PersonDetector) -> None:
    assert tiled(yolox, TilingConfig(), 0.45) is yolox
    assert tiled(yolox, None, 0.45) is yolox
    assert tiled(yolox, TilingConfig(enabled=True, columns=1, rows=1), 0.45) is yolox


# -- config -------------------------------------------------------------------------------


def test_old_configs_still_mean_the_yolo_family() -> None:
    s = Settings.model_validate({"detector": {"backend": "ultralytics", "weights": "yolo11n.pt"}})
    assert isinstance(s.detector, YoloDetectorConfig) and s.detector.backend == "ultralytics"
    assert isinstance(Settings().detector, YoloDetectorConfig) and Settings().detector.weights == "yolov8n_int8.onnx"


@pytest.mark.parametrize("preset", list(DETECTOR_PRESETS))
def test_presets_validate_and_build(preset: str, models_dir: Path) -> None:
    s = Settings.model_validate({"detector": {"preset": preset}})
    assert s.detector.preset == preset
    for key, value in DETECTOR_PRESETS[preset].items():
        got = getattr(s.detector, key)
        if isinstance(value, dict):
            assert got.model_dump() | value == got.model_dump(), key
        else:
            assert got == value, key
    det = build_detector(s.detector, models_dir)
    assert det.detect(np.zeros((90, 160, 3), dtype=np.uint8)) == []


def test_preset_fields_can_be_overridden_and_bad_ones_fail() -> None:
    s = Settings.model_validate({"detector": {"preset": "crowd", "confidence": 0.5}})
    assert isinstance(s.detector, YoloxDetectorConfig) and s.detector.confidence == 0.5
    s = Settings.model_validate({"detector": {"preset": "doorway", "motion": {"force_every_s": 5}}})
    assert s.detector.motion.enabled and s.detector.motion.force_every_s == 5  # merged, not replaced
    with pytest.raises(ValidationError, match="unknown detector preset"):
        Settings.model_validate({"detector": {"preset": "stadium"}})
    with pytest.raises(ValidationError, match="backend"):
        Settings.model_validate({"detector": {"preset": "crowd", "backend": "ultralytics"}})
    with pytest.raises(ValidationError, match="preset crowd is a yolox detector but type says yolo"):
        Settings.model_validate({"detector": {"preset": "crowd", "type": "yolo", "weights": "yolov8n_int8.onnx"}})
    with pytest.raises(ValidationError, match="strides"):
        Settings.model_validate({"detector": {"type": "yolox", "strides": []}})
    with pytest.raises(ValidationError, match="multiple of the largest stride"):
        Settings.model_validate({"detector": {"type": "yolox", "input_size": [600, 1088]}})
    with pytest.raises(ValidationError, match="input_size"):
        Settings.model_validate({"detector": {"type": "yolo", "input_size": [608, 1088]}})
    with pytest.raises(ValidationError, match="type"):
        Settings.model_validate({"detector": {"type": "detr"}})


@pytest.mark.parametrize("name", list(PEOPLE))
def test_an_export_fixed_at_one_size_runs_at_another(models_dir: Path, shared_dir: Path, name: str) -> None:
    """``bytetrack_nano.onnx`` was exported at 608x1088; at 480x864 (the crowd preset's size) it finds the same
    people, one box each."""
    small = build_detector(detector_config({"type": "yolox", "confidence": 0.4, "input_size": [480, 864]}),
                           models_dir)
    assert isinstance(small, YoloxDetector) and small.size_hw == (480, 864)
    blob, _ = small.preprocess(_photo(shared_dir, name))
    assert blob.shape == (1, 3, 480, 864)
    dets = small.detect(_photo(shared_dir, name))
    points = PEOPLE[name]
    for p in points:
        assert sum(_inside(p, d.box) for d in dets) == 1, (p, [d.box for d in dets])
    assert len(dets) == len(points)


def test_an_export_resized_to_its_own_size_is_the_same_network(models_dir: Path, data_dir: Path) -> None:
    """The rewrite changes declared shapes only: at the exported size its outputs are the original's, bit for bit."""
    weights = models_dir / "bytetrack_nano.onnx"
    native = create_session(weights, threads=1)
    rewritten = create_session(weights, threads=1, model=resized_input(weights, (608, 1088)))
    cap = cv2.VideoCapture(str(data_dir / "video" / "opencv4nodejs_people.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    x = to_input(pad_top_left(frame, (608, 1088))[0], input_tables("bytetrack"))
    name = native.get_inputs()[0].name
    a, b = native.run(None, {name: x})[0], rewritten.run(None, {name: x})[0]
    assert a.shape == b.shape and np.array_equal(a, b)


def test_an_export_with_its_size_built_in_is_refused_at_start(tmp_path: Path) -> None:
    """A graph that reshapes to a constant row count cannot run at another size: refused when the detector is
    built, with the reason, not on the first frame."""
    import onnx
    from onnx import TensorProto, helper

    rows = 32 * 32 * 3 // 6  # a 1 x 3 x 32 x 32 input read as 512 rows of 6
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["images", "shape"], ["output"])], "fixed",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, rows, 6])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [3], [1, rows, 6])],
    )
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    config = YoloxDetectorConfig(type="yolox", weights=str(path), input_size=(64, 64), strides=[8, 16, 32],
                                 threads=1)
    with pytest.raises(ValueError, match="does not run at input_size 64x64"):
        YoloxDetector(path, config)
    same = YoloxDetector(path, config.model_copy(update={"input_size": (32, 32)}))  # its own size: no rewrite
    assert same.size_hw == (32, 32)


def test_camera_overrides_tiling_and_motion() -> None:
    s = Settings.model_validate({
        "detector": {"tiling": {"enabled": True, "columns": 3}},
        "cameras": [{"id": "door", "tiling": {"enabled": False}, "motion": {"enabled": True, "force_every_s": 5}}],
    })
    cam = s.camera("door")
    assert cam.tiling is not None and not cam.tiling.enabled and s.detector.tiling.columns == 3
    assert cam.motion is not None and cam.motion.force_every_s == 5
