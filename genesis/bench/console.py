"""``python -m genesis.bench.console --database URL``: what an open console page costs the server.

Every open console page holds one live-updates stream (``GET /api/console/events``); the server reads
the console's state (`genesis.api.services.console.console_state`: list sizes and each camera's counters)
once per ``console.events_poll_s`` however many pages are open, and each page re-reads a list when it
changed. This times, on an existing database (the one a `genesis run` or the distributed store wrote):
the state read, the review page's first page (24 faces), the unknown groups' list and a group's sample
strip (7 faces spread over all of them) — p50 and p95 of ``--repeat`` calls each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from genesis.adapters.db import Repository
from genesis.api.services import console
from genesis.config import load_settings
from genesis.identities.store import IdentityStore
from genesis.identities.tracks import unknowns


def _time(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", required=True, help="SQLAlchemy URL of a Genesis database with runs.")
    ap.add_argument("--repeat", type=int, default=100, help="Calls of each read (default 100).")
    args = ap.parse_args(argv)
    settings = load_settings(None).model_copy(update={"database_url": args.database})
    with Repository(args.database) as repo:
        store = IdentityStore(repo)
        state = console.console_state(repo, settings)
        groups = unknowns(store)
        print(f"database: {state['identities']} identities, {state['unknowns']} unknown groups, {state['faces']} "
              f"stored faces, {len(state['cameras'])} camera(s), newest audit entry {state['audit_last']}")
        rows = [("console state (one read per poll, shared by every open page)",
                 lambda: console.console_state(repo, settings)),
                ("review page (24 faces)", lambda: console.review_page(store, settings, 24, 0)),
                ("unknown groups (the list)", lambda: unknowns(store))]
        if groups:
            biggest = max(groups, key=lambda g: g.tracks)
            rows.append((f"a group's sample strip ({biggest.label}, {biggest.tracks} faces)",
                         lambda: console.cluster_faces(store, biggest.label, 7, spread=True)))
        print(f"\n| read ({args.repeat} calls) | p50 (ms) | p95 (ms) |\n| --- | ---: | ---: |")
        for name, fn in rows:
            p50, p95 = _time(fn, args.repeat)
            print(f"| {name} | {p50:.2f} | {p95:.2f} |")


if __name__ == "__main__":
    main()
