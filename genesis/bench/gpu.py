"""Benchmark: the ultralytics person detector on CPU and on CUDA, one frame at a time and in batches.

    python -m genesis.bench.gpu --source VIDEO (--weights FILE.pt | --from-onnx FILE.onnx)
                                [--frames 64] [--batch 1 8 32] [--device cpu --device cuda:0] [--json FILE]

For each device it reports the product's path (``UltralyticsDetector.detect``, one frame per call, as a
detect task runs it) and what batching the frames of one detect message would give (``predict`` on a
list of frames). The network's raw outputs on the same frames are compared across devices (largest
absolute difference), so a CUDA worker can be trusted to see what a CPU worker sees.

``--weights`` must be a local file. Offline there is no COCO ``.pt`` to download: ``--from-onnx
yolov8n_int8.onnx`` rebuilds the torch network from the shipped int8 export (weights de-quantized).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from genesis.adapters.video import VideoSource
from genesis.backends.detectors import UltralyticsDetector, prepare_ultralytics_env
from genesis.config import DetectorConfig


def read_frames(source: str, n: int) -> list[np.ndarray]:
    with VideoSource(source) as video:
        return [f.image for f in video.frames(stride=1, max_frames=n)]


def dequantized_torch_weights(onnx_path: Path, out: Path, config_dir: Path) -> Path:
    """An fp32 torch YOLOv8n with the weights of an int8 (dynamically quantized) YOLOv8n ONNX export.

    The export keeps ultralytics' parameter names (``model.0.conv.weight_quantized``, ``_scale``,
    ``_zero_point``, ``model.0.conv.bias``) of the fused network, so each weight is de-quantized onto the
    same parameter of a fused ``yolov8n.yaml`` network built offline. Activations are no longer
    quantized: scores differ from the ONNX model's by a few hundredths, not the people found.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    prepare_ultralytics_env(config_dir)
    from ultralytics.models import YOLO

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    yolo = YOLO("yolov8n.yaml", task="detect")
    net: Any = yolo.model
    net.fuse()
    state: dict[str, Any] = {}
    for key, value in net.state_dict().items():
        qkey = key.removesuffix(".weight") + ".weight_quantized"
        if key.endswith(".weight") and qkey in inits:
            base = key.removesuffix(".weight")
            q = inits[qkey].astype(np.float32)
            scale = inits[base + ".weight_scale"].astype(np.float32)
            zero = inits[base + ".weight_zero_point"].astype(np.float32)
            shape = [-1] + [1] * (q.ndim - 1)
            w = (q - zero.reshape(shape if zero.size > 1 else [])) * scale.reshape(shape if scale.size > 1 else [])
            state[key] = torch.from_numpy(w.reshape(tuple(value.shape)).astype(np.float32))
        elif key in inits:
            state[key] = torch.from_numpy(inits[key].astype(np.float32).reshape(tuple(value.shape)))
        else:
            raise ValueError(f"{onnx_path.name} has no weights for {key}: not a YOLOv8n export")
    net.load_state_dict(state)
    yolo.save(str(out))
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_per_frame(det: UltralyticsDetector, frames: list[np.ndarray]) -> list[float]:
    """ms per call of the product's one-frame path."""
    out = []
    for f in frames:
        t0 = time.perf_counter()
        det.detect(f)
        _sync(det.device)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def time_batched(det: UltralyticsDetector, frames: list[np.ndarray], batch: int) -> float:
    """ms per frame when ``batch`` frames go through the network in one call."""
    usable = len(frames) - len(frames) % batch or batch
    t0 = time.perf_counter()
    for i in range(0, usable, batch):
        det.model.predict(frames[i:i + batch], imgsz=det.config.input_size, conf=det.config.confidence,
                          classes=det.config.classes, device=det.device, verbose=False, save=False)
    _sync(det.device)
    return (time.perf_counter() - t0) * 1000.0 / usable


def raw_outputs(det: UltralyticsDetector, frames: list[np.ndarray]) -> np.ndarray:
    """The network's raw output tensor on the frames (letterboxed by ultralytics' own pre-processing)."""
    import torch

    predictor = det.model.predictor
    with torch.no_grad():
        batch = predictor.preprocess(frames)
        out = predictor.model(batch)
    tensor = out[0] if isinstance(out, (list, tuple)) else out
    return np.asarray(tensor.float().cpu().numpy())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True)
    ap.add_argument("--weights", type=Path, help="A local .pt/.onnx file.")
    ap.add_argument("--from-onnx", type=Path, help="An int8 YOLOv8n ONNX export to rebuild as a torch network.")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--device", action="append", help="cpu, cuda:0 ... (repeat; default: cpu and cuda:0).")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/genesis-bench-gpu"),
                    help="Where the rebuilt weights and ultralytics' settings go.")
    args = ap.parse_args(argv)
    config_dir: Path = args.work_dir
    config_dir.mkdir(parents=True, exist_ok=True)
    if args.weights is None and args.from_onnx is None:
        ap.error("give --weights FILE.pt or --from-onnx FILE.onnx")
    weights = args.weights or dequantized_torch_weights(args.from_onnx, config_dir / "yolov8n_dequantized.pt",
                                                        config_dir / ".ultralytics")
    frames = read_frames(args.source, args.frames)
    if not frames:
        ap.error(f"no frames read from {args.source}")
    devices = args.device or ["cpu", "cuda:0"]
    console = Console()
    results: dict[str, Any] = {"weights": str(weights), "frames": len(frames),
                               "frame_size": list(frames[0].shape[:2]), "devices": {}}
    raws: dict[str, np.ndarray] = {}
    for device in devices:
        cfg = DetectorConfig(backend="ultralytics", weights=str(weights), device=device)
        det = UltralyticsDetector(weights, cfg, config_dir / ".ultralytics")
        for f in frames[: args.warmup]:
            det.detect(f)
        per_frame = time_per_frame(det, frames)
        batched = {str(b): round(time_batched(det, frames, b), 3) for b in args.batch}
        raws[device] = raw_outputs(det, frames[:8])
        results["devices"][device] = {
            "detect_ms_p50": round(statistics.median(per_frame), 3),
            "detect_ms_mean": round(statistics.fmean(per_frame), 3),
            "batched_ms_per_frame": batched,
            "detections_first_frame": len(det.detect(frames[0])),
        }
        if device.startswith("cuda"):
            import torch

            results["devices"][device]["gpu"] = torch.cuda.get_device_name(0)
            results["devices"][device]["max_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if len(raws) > 1:
        ref_name, ref = next(iter(raws.items()))
        results["max_abs_diff_vs_" + ref_name] = {
            d: float(np.max(np.abs(r - ref))) for d, r in raws.items() if d != ref_name
        }
        results["raw_output_scale"] = float(np.max(np.abs(ref)))
    table = Table(title=f"ultralytics detector, {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}")
    table.add_column("device")
    table.add_column("1 frame/call ms p50", justify="right")
    for b in args.batch:
        table.add_column(f"batch {b} ms/frame", justify="right")
    for device, r in results["devices"].items():
        table.add_row(device, f"{r['detect_ms_p50']:.2f}", *(f"{r['batched_ms_per_frame'][str(b)]:.2f}"
                                                               for b in args.batch))
    console.print(table)
    console.print(json.dumps({k: v for k, v in results.items() if k != "devices"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
