"""onnxruntime sessions configured for a pipeline that runs several models in turn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from genesis.backends.weights import WeightsError


def session_options(threads: int = 0) -> Any:
    """Options for every session Genesis creates.

    Intra-op spinning is off: by default each session's worker threads spin for a while after
    a run, and with a detector and a face embedder running in turn on the same cores, the
    spinning threads of one model steal the CPU the other needs (measured here: detection plus
    an embedding every third frame went from 69 to 136 ms per frame with spinning on).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    return opts


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2's CPU quota of this process's group (``docker run --cpus``, a Kubernetes CPU limit): "QUOTA PERIOD"."""


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may use: its affinity (the machine's count where that is unknown), or fewer where a
    cgroup v2 quota allows less (rounded up: a quota of 1.5 CPUs is 2)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, _, period = cpu_max.read_text().strip().partition(" ")
        if quota != "max" and int(quota) > 0 and int(period) > 0:
            cpus = min(cpus, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 file (another OS, cgroup v1), or one that does not parse: the affinity stands
    return max(1, cpus)


def threads_per_process(configured: int, processes: int, cpus: int) -> int:
    """onnxruntime intra-op threads for each of ``processes`` forked children sharing ``cpus`` CPUs: ``configured``
    when set (> 0), else the CPUs divided among the children (at least one each).

    onnxruntime's own default is a thread per physical core in every session, so two prefork children on two
    cores ran four threads that took turns on the same cores: 3-15 % more CPU per frame for the same frames
    (docs/benchmarks.md, "onnxruntime threads of the detect children").
    """
    if configured > 0:
        return configured
    return max(1, cpus // max(1, processes))


def create_session(path: Path, threads: int = 0, device: str = "cpu", model: bytes | None = None) -> Any:
    """An onnxruntime session of the model at ``path`` (or of ``model``, the serialized model made from it)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        # Never run on the CPU when the configuration asks for a GPU: say so instead.
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise WeightsError(
                f"device {device} asked for {path.name}, but this onnxruntime has no CUDA provider "
                f"({', '.join(ort.get_available_providers())}): install onnxruntime-gpu, use the ultralytics "
                "backend, or set the device to cpu"
            )
        index = device.partition(":")[2] or "0"
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))  # type: ignore[arg-type]
    try:
        return ort.InferenceSession(model if model is not None else str(path), sess_options=session_options(threads),
                                    providers=providers)
    except Exception as exc:
        raise WeightsError(f"cannot load {path} with onnxruntime: {exc}") from exc
