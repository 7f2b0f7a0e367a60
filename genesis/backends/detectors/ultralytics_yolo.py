"""The YOLOv8/YOLO11 family through ultralytics (``type: yolo``, ``backend: ultralytics``): torch, .pt or .onnx,
CUDA where ``device`` says so."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from genesis.backends.detectors.common import detections_from_xyxy
from genesis.backends.weights import WeightsError
from genesis.config import YoloDetectorConfig
from genesis.domain import Detection

logger = logging.getLogger(__name__)


# Read once, when ultralytics is first imported: DNS look-ups for its online check, pip installs of missing
# requirements. Values already in the environment win (an operator may opt in to the network with YOLO_OFFLINE=0).
ULTRALYTICS_OFFLINE_ENV: dict[str, str] = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on", "y", "t"}


def _writable_dir(path: Path) -> Path:
    """``path``, created; a new private temporary folder where it cannot be written (a read-only models volume)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    alt = Path(tempfile.mkdtemp(prefix="genesis-ultralytics-"))
    logger.warning("ultralytics settings folder %s is not writable, using %s", path, alt)
    return alt


def prepare_ultralytics_env(config_dir: Path) -> Path:
    """Keep ultralytics off the network and out of ~/.config; return the folder YOLO_CONFIG_DIR names.

    Must run before ``ultralytics`` is first imported in the process (UltralyticsDetector calls it right before its
    import): ultralytics reads YOLO_OFFLINE, YOLO_AUTOINSTALL and YOLO_CONFIG_DIR at import time only. Its settings
    file is then ``<YOLO_CONFIG_DIR>/Ultralytics/settings.json``. A YOLO_CONFIG_DIR already set is kept.
    """
    for key, value in ULTRALYTICS_OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if os.environ.get("YOLO_CONFIG_DIR"):
        settings_root = _writable_dir(Path(os.environ["YOLO_CONFIG_DIR"]).expanduser())
    else:
        settings_root = _writable_dir(config_dir)
    os.environ["YOLO_CONFIG_DIR"] = str(settings_root)
    _check_ultralytics_not_imported_early(settings_root)
    return settings_root


def _check_ultralytics_not_imported_early(settings_root: Path) -> None:
    """Warn when ultralytics was imported before the environment above was set (then it did not apply)."""
    utils = sys.modules.get("ultralytics.utils")
    if utils is None:
        return
    problems: list[str] = []
    if _env_true("YOLO_OFFLINE") and getattr(utils, "ONLINE", False):
        problems.append("it is in online mode (it may try downloads)")
    if not _env_true("YOLO_AUTOINSTALL") and getattr(utils, "AUTOINSTALL", False):
        problems.append("it may pip-install missing requirements")
    user_dir = getattr(utils, "USER_CONFIG_DIR", None)
    if user_dir is not None and Path(user_dir).resolve().parent != settings_root.resolve():
        problems.append(f"its settings are in {user_dir}, not under {settings_root}")
    if problems:
        logger.warning(
            "ultralytics was imported before Genesis set YOLO_OFFLINE/YOLO_AUTOINSTALL/YOLO_CONFIG_DIR: %s. "
            "Set them in the environment, or build the detector before importing ultralytics.",
            "; ".join(problems),
        )


class UltralyticsDetector:
    """``ultralytics.YOLO(path)``: a .pt or .onnx file; torch, and CUDA where ``device`` says so.

    Same result as the onnx backend: boxes of ``config.classes`` in original image pixels, sorted by score. Only local
    files are accepted: ultralytics downloads a missing ``*.pt`` name from GitHub even when offline.
    """

    def __init__(self, weights: Path, config: YoloDetectorConfig, config_dir: Path) -> None:
        if not weights.is_file():
            raise WeightsError(
                f"weight file {weights.name} not found at {weights}: the ultralytics backend takes only local files "
                "(copy it into the models folder or run `genesis models pull`)"
            )
        self.settings_dir = prepare_ultralytics_env(config_dir)
        omp_threads = os.environ.get("OMP_NUM_THREADS")
        try:
            from ultralytics.models import YOLO
            from ultralytics.utils import torch_utils
        except ImportError as exc:
            raise WeightsError(
                "the ultralytics backend needs the optional extra: pip install 'genesis[ultralytics]' "
                f"(or scripts/setup.sh --dev): {exc}"
            ) from exc
        finally:
            # Its import sets OMP_NUM_THREADS=1 for the whole process (and child processes) when unset.
            if omp_threads is None:
                os.environ.pop("OMP_NUM_THREADS", None)
        select_device: Any = torch_utils.select_device
        self.config = config
        self.name = f"ultralytics:{weights.name}"
        try:
            select_device(config.device, verbose=False)
        except ValueError as exc:
            raise ValueError(f"detector device {config.device!r} is not available: {exc}") from exc
        self.device = config.device
        self._lock = threading.Lock()  # a YOLO model and its predictor are not safe to share between threads
        try:
            self.model: Any = YOLO(str(weights), task="detect")
            # The predictor (and an .onnx session) is built on the first call: do it now, so that a bad file fails
            # here and the first frame is not slow.
            self.detect(np.zeros((self.config.input_size, self.config.input_size, 3), dtype=np.uint8))
        except Exception as exc:
            raise WeightsError(f"cannot load {weights} with ultralytics: {exc}") from exc
        n_classes = len(self.model.names)
        for cls in config.classes:
            if not 0 <= cls < n_classes:  # ultralytics would silently return nothing
                raise ValueError(f"class {cls} is not in the model's {n_classes} classes")

    def _predict(self, source: Any) -> list[np.ndarray]:
        # FP16 only where asked for and on CUDA; not passed otherwise (newer 8.4 releases deprecate ``half`` for
        # ``quantize``, which older ones do not know: each maps ``half=True`` to its own FP16 path).
        fp16: dict[str, Any] = {"half": True} if self.config.half and self.device.startswith("cuda") else {}
        with self._lock:
            results = self.model.predict(
                source,  # numpy arrays are taken as BGR; a list is one batch
                imgsz=self.config.input_size,  # a fixed-size export uses its own size
                conf=self.config.confidence,
                iou=self.config.iou,
                classes=self.config.classes,
                device=self.device,
                batch=len(source) if isinstance(source, list) else 1,
                save=False,
                verbose=False,
                **fp16,
            )
            # N x 6 each: x1, y1, x2, y2 (original pixels), score, class
            return [np.asarray(r.boxes.data.cpu().numpy(), dtype=np.float64) for r in results]

    def detect(self, image: np.ndarray) -> list[Detection]:
        return detections_from_xyxy(self._predict(image)[0], (image.shape[0], image.shape[1]))

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """One ``predict`` call for all ``images`` (one forward pass of the network)."""
        # One call per image size: ultralytics letterboxes a batch of mixed sizes to the full square, a batch of
        # one size (and a single image) to the smallest multiple of the stride: the same boxes as one by one.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(i)
        out: list[list[Detection]] = [[] for _ in images]
        for indices in by_shape.values():
            group = [images[i] for i in indices]
            found = self._predict(group) if len(group) > 1 else self._predict(group[0])
            for i, data in zip(indices, found, strict=True):
                out[i] = detections_from_xyxy(data, (images[i].shape[0], images[i].shape[1]))
        return out


