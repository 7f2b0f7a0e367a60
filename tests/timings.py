"""The timing table of docs/testing.md from the per-test records that tests/harness.py writes.

    python -m tests.timings [ARTIFACTS_DIR] [--top N] [--write-durations]

ARTIFACTS_DIR defaults to ``$GENESIS_TEST_ARTIFACTS`` or ``test-artifacts``; the records are in its
``timings/*.jsonl`` (one line per test: wall and CPU seconds, set-up and tear-down included). "Waiting" is wall
minus CPU: time the test spent on sleeps, timeouts, other processes it did not wait for (Celery workers it
SIGTERMs count as children only once reaped), containers and the other workers' share of the two cores.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

from tests.harness import DURATIONS


def load(folder: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for path in sorted((folder / "timings").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def table(rows: list[dict[str, object]], top: int) -> str:
    def num(r: dict[str, object], key: str) -> float:
        v = r[key]
        assert isinstance(v, int | float)
        return float(v)

    rows = sorted(rows, key=lambda r: -num(r, "wall_s"))
    wall = sum(num(r, "wall_s") for r in rows)
    cpu = sum(num(r, "cpu_s") for r in rows)
    by_worker: dict[str, float] = defaultdict(float)
    for r in rows:
        by_worker[str(r["worker"])] += num(r, "wall_s")
    failed = [str(r["test"]) for r in rows if r.get("outcome") == "failed"]
    lines = [
        f"{len(rows)} tests ({len(failed)} failed); wall {wall:.0f} s summed over tests, CPU {cpu:.0f} s "
        f"(test processes and the children they waited for); per worker: "
        + ", ".join(f"{w} {s:.0f} s" for w, s in sorted(by_worker.items())),
        "",
        "| test | wall s | CPU s | waiting s | worker |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    lines[1:1] = [f"- failed: `{t}`" for t in failed]
    for r in rows[:top]:
        w, c = num(r, "wall_s"), num(r, "cpu_s")
        lines.append(f"| `{r['test']}` | {w:.1f} | {c:.1f} | {max(w - c, 0):.1f} | {r['worker']} |")
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in rows:
        f = files[str(r["test"]).split("::", 1)[0]]
        f[0] += num(r, "wall_s")
        f[1] += num(r, "cpu_s")
        f[2] += 1
    lines += ["", "| file | tests | wall s | CPU s |", "| --- | ---: | ---: | ---: |"]
    for name, (w, c, n) in sorted(files.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"| `{name}` | {n:.0f} | {w:.1f} | {c:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path,
                        default=Path(os.environ.get("GENESIS_TEST_ARTIFACTS") or "test-artifacts"))
    parser.add_argument("--top", type=int, default=30, help="rows of the slowest tests and files (default 30)")
    parser.add_argument("--write-durations", action="store_true",
                        help=f"also write the wall times to {DURATIONS} (the scheduler's and --quick's table)")
    args = parser.parse_args()
    rows = load(args.folder)
    if not rows:
        raise SystemExit(f"no timings under {args.folder / 'timings'} (run the suite with GENESIS_TEST_ARTIFACTS set)")
    print(table(rows, args.top))
    if args.write_durations:
        walls = {str(r["test"]): round(float(str(r["wall_s"])), 1) for r in rows}
        DURATIONS.write_text(json.dumps(dict(sorted(walls.items())), indent=0) + "\n")
        print(f"\n{len(walls)} durations written to {DURATIONS}")


if __name__ == "__main__":
    main()
