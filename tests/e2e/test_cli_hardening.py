"""`genesis run` on hostile input and a full disk (issue 23, item 6): one line on stderr and a non-zero
exit, never a traceback; nothing of the failed run left behind.

The disk is a real one: a small tmpfs mounted for the test (root only; skipped, with the reason,
where mounting is not allowed), filled up to a few hundred KB before the run.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis.adapters.db import Repository
from tests.e2e.conftest import CLI

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def here(cli: CLI) -> CLI:
    """The CLI of this checkout (not whichever ``genesis`` the interpreter has installed)."""
    cli.env["PYTHONPATH"] = str(ROOT)
    return cli


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The ``error:`` line of stderr, asserting it is the only thing besides the progress bar."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and len(lines) <= 2, proc.stderr  # the progress bar's last state, the error
    return errors[0]


@pytest.mark.parametrize("camera", ["cam/+/#", "cam\x1b[2J"])
def test_an_invalid_camera_id_is_one_line(here: CLI, data_dir: Path, camera: str) -> None:
    video = str(data_dir / "video" / "opencv4nodejs_people.mp4")
    for command in (["run", "--source", video, "--camera", camera], ["capture", "--source", video, "--camera", camera]):
        proc = here(*command, check=False, timeout=120)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        line = _one_error_line(proc)
        assert "invalid camera id" in line and "letters, digits" in line, line
        assert "\x1b" not in proc.stderr


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (unmounted afterwards)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a full disk needs a tmpfs mount: run as root (mount -t tmpfs)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    free = shutil.disk_usage(disk).free
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_under_the_database_is_one_line_and_stores_nothing(here: CLI, data_dir: Path,
                                                                       small_disk: Path) -> None:
    db = small_disk / "genesis.db"
    Repository(f"sqlite:///{db}").close()  # the tables exist; the run's rows are what fills the disk
    filler = _fill(small_disk, 150 * 1024)
    here.env["GENESIS_DATABASE_URL"] = f"sqlite:///{db}"
    proc = here("run", "--source", str(data_dir / "video" / "opencv4nodejs_people.mp4"), "--max-frames", "60",
                check=False, timeout=300)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    line = _one_error_line(proc)
    assert "no space left on device" in line and "the run was not stored" in line, line
    filler.unlink()
    with sqlite3.connect(db) as conn:  # nothing half-written: the failed run's rows were removed
        for table in ("runs", "point_batches", "heatmap_cells", "tracks"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table


def test_a_full_disk_under_out_keeps_the_run_and_no_half_file(here: CLI, data_dir: Path, small_disk: Path,
                                                              tmp_path: Path) -> None:
    out = small_disk / "out"
    out.mkdir()
    _fill(small_disk, 8 * 1024)  # the heatmap PNG of a 768x576 clip does not fit
    proc = here("run", "--source", str(data_dir / "video" / "opencv4nodejs_people.mp4"), "--max-frames", "3",
                "--out", str(out), check=False, timeout=300)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    line = _one_error_line(proc)
    assert "is stored, but its files in" in line and "No space left on device" in line, line
    assert sorted(p.name for p in out.iterdir()) == []  # no heatmap, no report.json, no .tmp
    with sqlite3.connect(tmp_path / "genesis.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)
