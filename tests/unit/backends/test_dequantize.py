"""detector.dequantize: the shipped int8 YOLOv8n export run with its convolutions in float32 finds the same people
as the int8 graph, and any other export is run as it is."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from genesis.backends.detectors import OnnxYoloDetector, build_detector
from genesis.backends.detectors.dequantize import dequantized, dequantized_bytes
from genesis.config.inference import detector_config


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_every_int8_convolution_becomes_a_float_one(models_dir: Path) -> None:
    before = Counter(n.op_type for n in onnx.load(str(models_dir / "yolov8n_int8.onnx")).graph.node)
    model = dequantized(onnx.load(str(models_dir / "yolov8n_int8.onnx")))
    assert model is not None
    onnx.checker.check_model(model)
    after = Counter(n.op_type for n in model.graph.node)
    assert before["ConvInteger"] == after["Conv"] == 64
    assert after["ConvInteger"] == after["DynamicQuantizeLinear"] == after["Cast"] == 0
    assert after["Sigmoid"] == before["Sigmoid"]  # the rest of the network is untouched


def test_a_float_export_is_run_as_it_is(shared_dir: Path) -> None:
    assert dequantized_bytes(shared_dir / "models" / "person" / "bytetrack" / "bytetrack_nano.onnx") is None


@pytest.mark.parametrize("photo", ["bus.jpg", "zidane.jpg"])
def test_the_same_people_as_the_int8_graph(models_dir: Path, shared_dir: Path, photo: str) -> None:
    image = cv2.imread(str(shared_dir / "models" / "person" / "images" / photo), cv2.IMREAD_COLOR)
    assert image is not None
    as_int8 = build_detector(detector_config({"dequantize": False}), models_dir)
    as_float = build_detector(detector_config({}), models_dir)  # the default
    assert isinstance(as_float, OnnxYoloDetector) and as_float.dequantized
    assert isinstance(as_int8, OnnxYoloDetector) and not as_int8.dequantized
    a, b = as_int8.detect(image), as_float.detect(image)
    assert len(a) == len(b) >= 2
    for d in a:
        best = max(b, key=lambda e: _iou(d.box, e.box))
        assert _iou(d.box, best.box) >= 0.9 and abs(d.score - best.score) < 0.1, (d, best)
    # the float graph computes what the int8 one approximates: person scores of the anchors either finds likely
    blob = as_int8._blob(image)[0]
    person_int8 = np.asarray(as_int8.session.run(None, {as_int8.input_name: blob})[0])[0, 4]
    person_float = np.asarray(as_float.session.run(None, {as_float.input_name: blob})[0])[0, 4]
    likely = (person_int8 > 0.25) | (person_float > 0.25)
    assert likely.sum() >= 10
    assert float(np.abs(person_int8 - person_float)[likely].mean()) < 0.05


def test_an_unreadable_file_is_reported_by_the_load(tmp_path: Path) -> None:
    from genesis.backends.weights import WeightsError

    (tmp_path / "yolov8n_int8.onnx").write_bytes(b"\x08\x07 not a model")
    with pytest.raises(WeightsError, match="cannot load"):
        build_detector(detector_config({"dequantize": True}), tmp_path)
