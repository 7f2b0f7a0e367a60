"""Top-1 match time of the open-set gallery on synthetic embeddings (exact cosine search).

``python -m genesis.bench.gallery [--sizes 1000 100000 1000000] [--dim 128] [--per-identity 4] [--queries 50]``

Random unit vectors (fixed seed), ``per-identity`` embeddings per identity, a query = one
:meth:`genesis.stages.recognize.Gallery.match` call (matrix-vector product, best per identity,
top-2, threshold and margin). Memory: the matrix is ``N * dim * 4`` bytes; the process's resident
memory growth while building the gallery is reported too (names, sort order, identity starts).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import numpy as np

from genesis.domain.stats import percentile
from genesis.eval.table import markdown_table
from genesis.stages.recognize import Gallery


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench(size: int, dim: int, per_identity: int, queries: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    rss0 = _rss_mb()
    matrix = rng.standard_normal((size, dim), dtype=np.float32)
    names = [f"id{i // per_identity:08d}" for i in range(size)]
    t0 = time.perf_counter()
    gallery = Gallery.build("SFace", names, matrix, threshold=0.593, margin=0.05)
    build_s = time.perf_counter() - t0
    del matrix
    rss1 = _rss_mb()
    probes = rng.standard_normal((queries + 3, dim), dtype=np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    # A probe near a known row, so the answer is a name (and the result can be checked).
    probes[0] = gallery.matrix[size // 2] + 0.01 * probes[1]
    assert gallery.match(probes[0]).identity == gallery.names[size // 2]
    for p in probes[1:3]:  # warm-up
        gallery.match(p)
    times = []
    for p in probes[3:]:
        t = time.perf_counter()
        gallery.match(p)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "size": size,
        "identities": len(gallery.identity_names),
        "build_s": build_s,
        "p50_ms": percentile(times, 50),
        "p95_ms": percentile(times, 95),
        "matrix_mb": gallery.matrix.nbytes / 2**20,
        "rss_mb": rss1 - rss0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genesis.bench.gallery", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128, help="embedding size (SFace, Dlib: 128; ArcFace: 512)")
    parser.add_argument("--per-identity", type=int, default=4)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        r = bench(size, args.dim, args.per_identity, args.queries)
        rows.append([f"{size:,}", f"{int(r['identities']):,}", f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}",
                     f"{r['matrix_mb']:.1f}", f"{r['rss_mb']:.1f}", f"{r['build_s']:.2f}"])
        print(f"{size}: p50 {r['p50_ms']:.2f} ms", flush=True)
    print(markdown_table(("embeddings", "identities", "top-1 p50 (ms)", "top-1 p95 (ms)", "matrix (MiB)",
                          "RSS growth (MiB)", "build (s)"), rows))
    print(f"memory per 100k embeddings of dim {args.dim}: {100_000 * args.dim * 4 / 2**20:.1f} MiB (matrix)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
