"""The suite's scheduler (tests/harness.py) keeps the tests that share a module-scoped fixture on one xdist
worker, so the fixture is paid for once: run a small suite under ``-n 3 --dist loadgroup`` and look where each
test ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SUITE = '''
import json, os
from pathlib import Path

import pytest

OUT = Path(os.environ["WHERE_OUT"])


def where(name: str) -> None:
    with OUT.open("a") as fh:
        fh.write(json.dumps([name, os.environ.get("PYTEST_XDIST_WORKER", "main")]) + "\\n")


@pytest.fixture(scope="module")
def costly() -> int:
    where("fixture")
    return 1


@pytest.mark.parametrize("n", range(4))
def test_shared(costly: int, n: int) -> None:
    where(f"shared{n}")


@pytest.mark.parametrize("n", range(6))
def test_alone(n: int) -> None:
    where(f"alone{n}")
'''

CONFTEST = "from tests.conftest import *  # noqa: F403\n" \
           "from tests.conftest import pytest_xdist_make_scheduler, pytest_collection_modifyitems  # noqa: F401\n"


def test_tests_sharing_a_module_fixture_run_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(SUITE)
    out = tmp_path / "where.jsonl"
    env = {**os.environ, "WHERE_OUT": str(out), "PYTHONPATH": str(ROOT)}
    for key in ("GENESIS_TEST_UNITS", "GENESIS_TEST_REFERENCE_CACHE", "GENESIS_TEST_REDIS_PORT", "PYTEST_XDIST_WORKER",
                "GENESIS_TEST_ARTIFACTS"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "3", "--dist", "loadgroup", "--no-loadscope-reorder", "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = [json.loads(line) for line in out.read_text().splitlines()]
    workers = {name: worker for name, worker in ran}
    assert [name for name, _ in ran].count("fixture") == 1, ran  # paid for once
    assert len({workers[f"shared{n}"] for n in range(4)} | {workers["fixture"]}) == 1, ran
    assert len({worker for _, worker in ran}) >= 2, ran  # the rest is spread over the workers
