"""The ONNX person detector on real photos, and its pre/post-processing geometry.

The photos are in ../shared/models/person/images (bus.jpg, zidane.jpg) and inside scikit-image
(astronaut: one person, cat: none). Counts are at confidence 0.4, where the model's README
measured them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from genesis.backends.detectors import PersonDetector, build_detector, decode_yolo, letterbox, nms
from genesis.backends.weights import WeightsError
from genesis.config import DetectorConfig
from genesis.domain import BBox, Detection
from genesis.eval.detection import iou_matrix

CONFIDENCE = 0.4


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> PersonDetector:
    return build_detector(DetectorConfig(confidence=CONFIDENCE), models_dir)


def _photo(shared_dir: Path, name: str) -> np.ndarray:
    path = shared_dir / "models" / "person" / "images" / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return image


def _skimage_bgr(name: str) -> np.ndarray:
    rgb = getattr(data, name)()
    return np.ascontiguousarray(rgb[..., ::-1])  # skimage gives RGB; the detector takes BGR like cv2


def _images(shared_dir: Path) -> dict[str, np.ndarray]:
    return {
        "bus": _photo(shared_dir, "bus.jpg"),
        "zidane": _photo(shared_dir, "zidane.jpg"),
        "astronaut": _skimage_bgr("astronaut"),
        "cat": _skimage_bgr("cat"),
    }


@pytest.fixture(scope="module")
def images(shared_dir: Path) -> dict[str, np.ndarray]:
    return _images(shared_dir)


# name -> (fewest, most) persons expected at confidence 0.4
EXPECTED = {"bus": (3, 5), "zidane": (2, 2), "astronaut": (1, 1), "cat": (0, 0)}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_person_count(detector: PersonDetector, images: dict[str, np.ndarray], name: str) -> None:
    dets = detector.detect(images[name])
    low, high = EXPECTED[name]
    assert low <= len(dets) <= high, [(d.box, d.score) for d in dets]
    assert all(d.class_id == 0 and d.score >= CONFIDENCE for d in dets)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_boxes_inside_image(detector: PersonDetector, images: dict[str, np.ndarray], name: str) -> None:
    h, w = images[name].shape[:2]
    for d in detector.detect(images[name]):
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, d


@pytest.mark.parametrize("name", list(EXPECTED))
def test_deterministic(detector: PersonDetector, images: dict[str, np.ndarray], name: str) -> None:
    assert detector.detect(images[name]) == detector.detect(images[name])


def test_zidane_boxes_where_the_people_are(detector: PersonDetector, images: dict[str, np.ndarray]) -> None:
    """Both men, confidently, where they stand. The reference boxes are this model's output when the
    test was written, checked by eye on the photo (Zidane pointing, left; Ancelotti, right). A lost
    letterbox offset moves boxes by the padding (280 px here); feeding BGR instead of RGB drops one
    man's score from 0.86 to 0.50."""
    reference: list[BBox] = [(110.0, 197.0, 1113.0, 711.0), (751.0, 45.0, 1125.0, 708.0)]
    dets = detector.detect(images["zidane"])
    assert len(dets) == 2
    assert min(d.score for d in dets) >= 0.7, dets
    ious = iou_matrix([d.box for d in dets], reference)
    assert sorted(ious.max(axis=1)) == pytest.approx([1.0, 1.0], abs=0.05), ious


def test_cat_is_a_cat_not_a_person(models_dir: Path, images: dict[str, np.ndarray]) -> None:
    """With all 80 COCO classes the cat photo gives one confident cat (class 15): the model sees
    colours the right way round (0.86 here; 0.64 when the channels are swapped)."""
    everything = build_detector(DetectorConfig(confidence=0.25, classes=list(range(80))), models_dir)
    dets = everything.detect(images["cat"])
    assert [d.class_id for d in dets] == [15], dets
    assert dets[0].score >= 0.75


# ---- geometry on synthetic data ------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), [(480, 960), (1080, 810), (640, 640), (100, 300), (1080, 1920)])
def test_letterbox_geometry(h: int, w: int) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    boxed, scale, (left, top) = letterbox(image, 640)
    assert boxed.shape == (640, 640, 3) and boxed.dtype == np.uint8
    assert scale == pytest.approx(min(640 / h, 640 / w))
    nh, nw = round(h * scale), round(w * scale)
    assert (left, top) == ((640 - nw) // 2, (640 - nh) // 2)
    # grey padding around the picture, the picture itself inside
    assert (boxed[: int(top)] == 114).all() and (boxed[int(top) + nh :] == 114).all()
    assert (boxed[:, : int(left)] == 114).all() and (boxed[:, int(left) + nw :] == 114).all()
    inner = boxed[int(top) : int(top) + nh, int(left) : int(left) + nw]
    expected = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else image
    assert np.array_equal(inner, expected)


def _yolo_output(boxes_in_input: list[tuple[float, float, float, float]], scores: list[float], cls: list[int],
                 anchors: int = 8400, classes: int = 80) -> np.ndarray:
    """A YOLOv8 head output (1 x (4 + C) x N): cx, cy, w, h in network-input pixels, class scores."""
    out = np.zeros((1, 4 + classes, anchors), dtype=np.float32)
    for i, ((x1, y1, x2, y2), s, c) in enumerate(zip(boxes_in_input, scores, cls, strict=True)):
        out[0, :4, 100 + 37 * i] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        out[0, 4 + c, 100 + 37 * i] = s
    return out


@pytest.mark.parametrize(("h", "w"), [(480, 960), (1080, 810), (1080, 1920), (640, 640)])
def test_decode_maps_boxes_back_to_image_pixels(h: int, w: int) -> None:
    """Boxes placed in the original image, pushed through the letterbox transform into network
    coordinates, come back out of ``decode_yolo`` where they started."""
    _, scale, (left, top) = letterbox(np.zeros((h, w, 3), dtype=np.uint8), 640)
    originals: list[BBox] = [
        (0.1 * w, 0.2 * h, 0.3 * w, 0.9 * h),
        (0.6 * w, 0.05 * h, 0.95 * w, 0.5 * h),
        (0.4 * w, 0.4 * h, 0.5 * w, 0.6 * h),
    ]
    in_net = [(x1 * scale + left, y1 * scale + top, x2 * scale + left, y2 * scale + top)
              for x1, y1, x2, y2 in originals]
    # the third box is a car (class 2): not asked for
    out = _yolo_output(in_net, [0.9, 0.8, 0.95], [0, 0, 2])
    dets = decode_yolo(out, scale, (left, top), (h, w), classes=[0], conf=0.25, iou=0.45)
    assert [d.score for d in dets] == pytest.approx([0.9, 0.8])
    for det, original in zip(dets, originals[:2], strict=True):
        assert det.box == pytest.approx(original, abs=0.02)
        assert det.class_id == 0
    with_cars = decode_yolo(out, scale, (left, top), (h, w), classes=[0, 2], conf=0.25, iou=0.45)
    assert [d.class_id for d in with_cars] == [2, 0, 0]
    assert with_cars[0].box == pytest.approx(originals[2], abs=0.02)


def test_decode_threshold_clipping_and_nms() -> None:
    h, w = 720, 1280
    _, scale, (left, top) = letterbox(np.zeros((h, w, 3), dtype=np.uint8), 640)

    def net(b: BBox) -> BBox:
        return (b[0] * scale + left, b[1] * scale + top, b[2] * scale + left, b[3] * scale + top)

    boxes = [
        (100.0, 100.0, 300.0, 500.0),  # kept
        (105.0, 102.0, 302.0, 505.0),  # duplicate of the first, lower score: suppressed by NMS
        (-50.0, 200.0, 150.0, 700.0),  # past the left border: clipped to x1 = 0
        (900.0, 100.0, 1000.0, 300.0),  # below the score threshold
    ]
    out = _yolo_output([net(b) for b in boxes], [0.9, 0.7, 0.6, 0.2], [0, 0, 0, 0])
    dets = decode_yolo(out, scale, (left, top), (h, w), classes=[0], conf=0.25, iou=0.45)
    assert [d.score for d in dets] == pytest.approx([0.9, 0.6])
    assert dets[0].box == pytest.approx(boxes[0], abs=0.02)
    assert dets[1].box == pytest.approx((0.0, 200.0, 150.0, 700.0), abs=0.02)
    # a looser NMS keeps the duplicate; a lower threshold keeps the faint box
    loose = decode_yolo(out, scale, (left, top), (h, w), classes=[0], conf=0.1, iou=0.99)
    assert [d.score for d in loose] == pytest.approx([0.9, 0.7, 0.6, 0.2])


def test_decode_accepts_anchors_first_layout() -> None:
    """Some exports give N x (4 + C) instead of (4 + C) x N."""
    out = _yolo_output([(100.0, 100.0, 200.0, 300.0)], [0.9], [0])
    a = decode_yolo(out, 1.0, (0.0, 0.0), (640, 640), classes=[0], conf=0.25, iou=0.45)
    b = decode_yolo(out.transpose(0, 2, 1).copy(), 1.0, (0.0, 0.0), (640, 640), classes=[0], conf=0.25, iou=0.45)
    assert a == b == [Detection(box=(100.0, 100.0, 200.0, 300.0), score=0.9, class_id=0)]


def test_nms() -> None:
    boxes = np.array(
        [
            [0, 0, 100, 100],
            [5, 5, 105, 105],  # IoU 0.82 with the first
            [200, 200, 300, 300],  # alone
            [0, 0, 100, 100],  # exact copy of the first, same score
            [40, 5, 140, 105],  # IoU 0.48 with the second, 0.40 with the first
        ],
        dtype=np.float64,
    )
    scores = np.array([0.9, 0.95, 0.5, 0.9, 0.6])
    assert nms(boxes, scores, 0.45) == [1, 2]  # 1 suppresses 0, 3 and (IoU 0.48 > 0.45) 4
    assert nms(boxes, scores, 0.5) == [1, 4, 2]  # 4 (IoU 0.48 with 1) survives now
    assert nms(boxes, scores, 1.0) == [1, 0, 3, 4, 2]  # nothing suppressed; ties keep input order
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.45) == []
    # degenerate (zero-area) boxes never suppress anything
    flat = np.array([[0, 0, 0, 100], [0, 0, 0, 100]], dtype=np.float64)
    assert nms(flat, np.array([0.9, 0.8]), 0.45) == [0, 1]


def test_onnx_on_cuda_without_a_cuda_provider_is_an_error(models_dir: Path) -> None:
    """A configuration that asks for a GPU never runs on the CPU in silence (onnxruntime here has no CUDA)."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(WeightsError, match="no CUDA provider"):
        build_detector(DetectorConfig(device="cuda:0"), models_dir)
