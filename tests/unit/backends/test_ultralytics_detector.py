"""The ``ultralytics`` detector backend on the real YOLOv8n int8 export: offline, and the same boxes as ``onnx``.

ultralytics is part of ``scripts/setup.sh --dev``, so a missing install fails these tests instead of skipping them.
Every test here runs under a guard that refuses (and records) DNS look-ups and connections to anything but loopback,
and pip/uv subprocesses: ultralytics catches such failures and carries on, so the tests assert that none happened.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from genesis.backends.detectors import PersonDetector, UltralyticsDetector, build_detector
from genesis.backends.weights import WeightsError
from genesis.config import DetectorConfig
from genesis.domain import Detection

pytestmark = pytest.mark.ultralytics

ULTRALYTICS_ENV = ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_CONFIG_DIR")
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


class NetworkGuard:
    """Refuses non-loopback DNS and connections, and package installs; keeps a list of what was refused."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def install(self, mp: pytest.MonkeyPatch) -> None:
        real_getaddrinfo = socket.getaddrinfo
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        real_popen_init = subprocess.Popen.__init__
        guard = self

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if not _is_loopback(host):
                guard.attempts.append(f"DNS {host!r}")
                raise OSError(f"network guard: DNS look-up of {host!r} refused")
            return real_getaddrinfo(host, *args, **kwargs)

        def check(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
                guard.attempts.append(f"connect {address!r}")
                raise OSError(f"network guard: connection to {address!r} refused")

        def connect(sock: socket.socket, address: Any) -> None:
            check(sock, address)
            real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            check(sock, address)
            return real_connect_ex(sock, address)

        def popen_init(proc: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
            argv = [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
            words = " ".join(argv).split()
            if any(Path(w).name in {"pip", "pip3", "uv"} for w in words) or "pip install" in " ".join(words):
                guard.attempts.append(f"subprocess {argv!r}")
                raise OSError(f"network guard: package install refused: {argv!r}")
            real_popen_init(proc, args, *rest, **kwargs)

        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)
        mp.setattr(subprocess.Popen, "__init__", popen_init)


@pytest.fixture(scope="module")
def guard() -> Iterator[NetworkGuard]:
    """Active for the whole module, so it covers the first ``import ultralytics`` too."""
    g = NetworkGuard()
    with pytest.MonkeyPatch.context() as mp:
        # The backend's own defaults are under test: clear what the shell may have set (restored afterwards).
        for key in ULTRALYTICS_ENV:
            mp.delenv(key, raising=False)
        if "OMP_NUM_THREADS" in os.environ:  # ultralytics' import sets it; put back what was there
            mp.setenv("OMP_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
        else:
            mp.delenv("OMP_NUM_THREADS", raising=False)
        g.install(mp)
        yield g
    assert g.attempts == [], f"network or package installs attempted: {g.attempts}"


@pytest.fixture(scope="module")
def ultralytics_was_imported() -> bool:
    """Whether something in this test session imported ultralytics before the backend prepared its environment."""
    return "ultralytics" in sys.modules


@pytest.fixture(scope="module")
def ul_detector(guard: NetworkGuard, models_dir: Path, ultralytics_was_imported: bool) -> PersonDetector:
    detector = build_detector(DetectorConfig(backend="ultralytics", confidence=0.4), models_dir)
    assert isinstance(detector, UltralyticsDetector)
    return detector


@pytest.fixture(scope="module")
def onnx_detector(guard: NetworkGuard, models_dir: Path) -> PersonDetector:
    return build_detector(DetectorConfig(backend="onnx", confidence=0.4), models_dir)


@pytest.fixture(scope="module")
def images(shared_dir: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in ("bus.jpg", "zidane.jpg"):
        image = cv2.imread(str(shared_dir / "models" / "person" / "images" / name))
        assert image is not None, name
        out[name] = image
    return out


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def unmatched(these: list[Detection], those: list[Detection], min_iou: float) -> list[Detection]:
    return [d for d in these if not any(iou(d.box, o.box) >= min_iou for o in those)]


def test_ultralytics_is_installed() -> None:
    assert importlib.util.find_spec("ultralytics") is not None, (
        "ultralytics is not installed: scripts/setup.sh --dev installs it (the ultralytics extra)"
    )
    assert importlib.metadata.version("ultralytics").startswith("8.4."), importlib.metadata.version("ultralytics")


def test_runs_offline_with_private_settings(
    ul_detector: PersonDetector, guard: NetworkGuard, models_dir: Path, ultralytics_was_imported: bool
) -> None:
    import ultralytics.utils as ul_utils

    assert isinstance(ul_detector, UltralyticsDetector)
    assert not ultralytics_was_imported, "ultralytics was imported before the backend set YOLO_OFFLINE etc."
    assert ul_utils.ONLINE is False
    assert ul_utils.AUTOINSTALL is False
    settings_file = Path(ul_utils.SETTINGS_FILE)
    assert settings_file.parent.parent == ul_detector.settings_dir
    assert settings_file.is_relative_to(models_dir / ".ultralytics"), settings_file
    assert settings_file.is_file()
    assert not list(ul_detector.settings_dir.rglob("*.ttf")), "a font was fetched"
    assert guard.attempts == []


@pytest.mark.parametrize("case", [("bus.jpg", 3, 4), ("zidane.jpg", 2, 2)], ids=["bus", "zidane"])
def test_finds_the_people(
    ul_detector: PersonDetector, images: dict[str, np.ndarray], guard: NetworkGuard, case: tuple[str, int, int]
) -> None:
    name, least, most = case  # bus: 4 people, one cut off at the edge (0.31 here); zidane: 2
    image = images[name]
    dets = ul_detector.detect(image)
    assert least <= len(dets) <= most, dets
    h, w = image.shape[:2]
    for d in dets:
        assert d.class_id == 0
        assert 0.4 <= d.score <= 1.0
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, d
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    assert guard.attempts == []


@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg"])
def test_boxes_agree_with_onnx_backend(
    ul_detector: PersonDetector, onnx_detector: PersonDetector, images: dict[str, np.ndarray], name: str
) -> None:
    ours = ul_detector.detect(images[name])
    theirs = onnx_detector.detect(images[name])
    assert theirs, "the onnx backend found nobody"
    assert unmatched(theirs, ours, 0.9) == [], (theirs, ours)
    assert unmatched(ours, theirs, 0.9) == [], (ours, theirs)
    for d in ours:
        best = max(theirs, key=lambda o: iou(d.box, o.box))
        assert abs(d.score - best.score) < 0.05, (d, best)


def test_detect_is_repeatable(ul_detector: PersonDetector, images: dict[str, np.ndarray]) -> None:
    assert ul_detector.detect(images["bus.jpg"]) == ul_detector.detect(images["bus.jpg"])
    assert ul_detector.detect(np.zeros((480, 640, 3), dtype=np.uint8)) == []


@pytest.mark.parametrize("weights", ["yolo11n.pt", "no_such_model.pt"])
def test_missing_pt_is_a_weights_error_not_a_download(guard: NetworkGuard, tmp_path: Path, weights: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match=weights.replace(".", r"\.")):
        build_detector(DetectorConfig(backend="ultralytics", weights=weights), tmp_path)
    assert time.perf_counter() - t0 < 2.0
    assert guard.attempts == []


def test_missing_file_given_directly_is_a_weights_error(guard: NetworkGuard, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"yolo11s\.pt"):
        UltralyticsDetector(tmp_path / "yolo11s.pt", DetectorConfig(backend="ultralytics"), tmp_path / "cfg")
    assert guard.attempts == []


def test_corrupt_file_is_a_weights_error(guard: NetworkGuard, ul_detector: PersonDetector, tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(WeightsError, match=r"broken\.onnx"):
        build_detector(DetectorConfig(backend="ultralytics", weights=str(bad)), tmp_path)
    assert guard.attempts == []


def test_class_outside_the_model_is_refused(guard: NetworkGuard, ul_detector: PersonDetector, models_dir: Path) -> None:
    with pytest.raises(ValueError, match="class 80"):
        build_detector(DetectorConfig(backend="ultralytics", classes=[0, 80]), models_dir)


def test_unavailable_device_is_a_clear_error(
    guard: NetworkGuard, ul_detector: PersonDetector, models_dir: Path
) -> None:
    import torch

    device = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU (cuda:0 on a CPU-only machine)
    with pytest.raises(ValueError, match="device"):
        build_detector(DetectorConfig(backend="ultralytics", device=device), models_dir)


def test_a_batch_gives_the_boxes_of_one_by_one(ul_detector: PersonDetector, images: dict[str, np.ndarray],
                                               shared_dir: Path, guard: NetworkGuard) -> None:
    """``detect_batch`` (one predict call per image size, what the batching detect worker uses) equals ``detect``
    frame by frame, on frames of one size and on a batch mixing sizes."""
    assert isinstance(ul_detector, UltralyticsDetector)
    cap = cv2.VideoCapture(str(shared_dir / "data" / "video" / "opencv4nodejs_people.mp4"))
    frames = []
    for _ in range(4):
        ok, frame = cap.read()
        assert ok
        frames.append(frame)
    cap.release()
    batch = [frames[0], images["bus.jpg"], frames[1], images["zidane.jpg"], frames[2], frames[3]]
    assert ul_detector.detect_batch(batch) == [ul_detector.detect(image) for image in batch]
    assert guard.attempts == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy ONNX exporter, which ultralytics uses
def test_onnx_backend_batch_call_gives_the_boxes_of_one_by_one(
        guard: NetworkGuard, images: dict[str, np.ndarray], shared_dir: Path,
        tmp_path_factory: pytest.TempPathFactory, ul_detector: PersonDetector) -> None:
    """An ONNX export with a dynamic batch dimension (ultralytics' own ``export(dynamic=True)`` of YOLOv8n with the
    shipped int8 weights de-quantized, built offline): the onnx backend's one-session-call batch equals its frames one
    by one, images of several sizes mixed. (The detect workers batch through it on a GPU only.)"""
    from ultralytics.models import YOLO

    from genesis.backends.detectors import OnnxYoloDetector
    from genesis.bench.gpu import dequantized_torch_weights

    work = tmp_path_factory.mktemp("dynamic")
    pt = dequantized_torch_weights(shared_dir / "models" / "person" / "yolov8n_int8.onnx", work / "yolov8n.pt",
                                   work / ".ultralytics")
    exported = Path(YOLO(str(pt)).export(format="onnx", dynamic=True, simplify=False, imgsz=640))
    detector = OnnxYoloDetector(exported, DetectorConfig(confidence=0.4))
    assert detector.batchable and not detector.batch_calls  # on the CPU: frame by frame
    cap = cv2.VideoCapture(str(shared_dir / "data" / "video" / "opencv4nodejs_people.mp4"))
    frames = [cap.read()[1] for _ in range(3)]
    cap.release()
    batch = [frames[0], images["bus.jpg"], frames[1], images["zidane.jpg"], frames[2]]
    one_by_one = [detector.detect(image) for image in batch]
    assert all(one_by_one)
    assert detector.detect_batched(batch) == one_by_one
    assert detector.detect_batch(batch) == one_by_one
    assert guard.attempts == []
