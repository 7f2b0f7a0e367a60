"""Per-service worker launchers (``python workers/detect.py --workers 2`` and friends).

Each one starts a Celery worker of ``genesis.celery:app`` on its queue with the pool that
suits it: prefork for CPU stages, ``solo`` for the ordered stage and for any GPU worker (CUDA
does not survive fork). ``--gpu N`` binds the worker to CUDA device N and adds the ``gpu``
queue, which configuration can route the model-heavy tasks to.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Role:
    queue: str
    pool: str
    default_workers: int
    help: str


ROLES: dict[str, Role] = {
    "detect": Role("detect", "prefork", 2, "person detection (stateless, parallel)"),
    "recognize": Role("recognize", "solo", 1, "the ordered per-camera stage: tracking, recognition, zones, lines"),
    "analytics": Role("analytics", "prefork", 1, "commutative aggregation, alert delivery"),
    "store": Role("store", "solo", 1, "batched idempotent database writes"),
}


def worker_argv(role: str, workers: int | None, gpu: int | None, loglevel: str, name: str | None = None,
                batch: int | None = None) -> list[str]:
    """The ``celery worker`` arguments of a role. ``batch`` (detect only): a batching worker, a threads pool
    running that many detect tasks at once, whose frames one inference thread batches (a GPU detect worker
    batches unless ``batch`` is 1)."""
    spec = ROLES[role]
    queues = [spec.queue]
    pool = spec.pool
    concurrency = workers or spec.default_workers
    if gpu is not None:
        queues.append("gpu")
        pool = "solo"  # never CUDA in forked children
        concurrency = 1
    if role == "detect" and batch is not None and batch > 1:
        pool = "threads"  # one process, one model, many tasks in flight (CUDA is fine in threads)
        concurrency = workers or batch
    if pool == "solo":
        concurrency = 1
    # A suffix new at every start: in a container the launcher is PID 1 after each restart, on the
    # same host name, so the pid alone would give a restarted replica its dead predecessor's name,
    # and its heartbeat would keep the dead one's messages "held" (genesis.pipeline.liveness).
    hostname = name or f"{role}-{os.getpid()}-{secrets.token_hex(3)}@{socket.gethostname()}"
    return [
        "worker", "-Q", ",".join(queues), "-P", pool, "-c", str(concurrency), "-n", hostname,
        "--loglevel", loglevel, "-E",
    ]


def port_number(text: str) -> int:
    """argparse type of ``--port``: 0-65535 (0 = no endpoint)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 0-65535")
    return value


def ops_env(role: str, port: int | None, no_http: bool) -> None:
    """Tell the worker's ops hooks (genesis.ops.celery_hooks) its role and port, through the
    settings' environment overrides: read when genesis.celery is imported."""
    os.environ["GENESIS_OPS__ROLE"] = role
    if no_http:
        os.environ["GENESIS_OPS__PORT"] = "0"
    elif port is not None:
        os.environ["GENESIS_OPS__PORT"] = str(port)


def main(role: str, argv: list[str] | None = None) -> None:
    spec = ROLES[role]
    ap = argparse.ArgumentParser(prog=f"workers/{role}.py", description=f"Genesis {role} worker: {spec.help}.")
    ap.add_argument("--config", "-c", help="Settings YAML (sets GENESIS_CONFIG).")
    ap.add_argument("--workers", type=int, default=None, help=f"Concurrency (default {spec.default_workers}).")
    ap.add_argument("--gpu", type=int, default=None, metavar="N",
                    help="Run on CUDA device N (detect: a batching threads pool, see --batch; others: solo pool).")
    if role == "detect":
        ap.add_argument("--batch", type=int, nargs="?", const=0, default=None, metavar="N",
                        help="Batch the frames of N detect tasks run at once (threads pool; without N: "
                        "distributed.detect_batch_size). Default with --gpu; --batch 1 turns it off.")
    ap.add_argument("--loglevel", default="INFO")
    ap.add_argument("--name", default=None, help="Worker node name (default ROLE-PID@host).")
    http = ap.add_mutually_exclusive_group()
    http.add_argument("--port", type=port_number, default=None,
                      help=f"Port of the /health, /metrics, /status endpoint (default: ops.ports.{role}).")
    http.add_argument("--no-http", action="store_true", help="Serve no endpoint.")
    args = ap.parse_args(argv)
    if args.config:
        os.environ["GENESIS_CONFIG"] = args.config
    ops_env(role, args.port, args.no_http)
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
        os.environ.setdefault("GENESIS_DETECTOR__DEVICE", "cuda:0")
    from genesis.celery import app  # reads the settings: after GENESIS_CONFIG is set

    batch: int | None = getattr(args, "batch", None)
    if role == "detect" and (batch is not None or args.gpu is not None):
        size = app.conf.genesis_settings.distributed.detect_batch_size
        batch = batch or size  # --batch alone, or --gpu: the configured size
        if batch > 1 and batch != size:  # the tasks' batcher reads the same number
            os.environ["GENESIS_DISTRIBUTED__DETECT_BATCH_SIZE"] = str(batch)
            app.conf.genesis_settings.distributed.detect_batch_size = batch
    app.worker_main(worker_argv(role, args.workers, args.gpu, args.loglevel, args.name, batch))
