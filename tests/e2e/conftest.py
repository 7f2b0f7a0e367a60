from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class CLI:
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "genesis.cli.main", *args],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"genesis {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture()
def cli(models_dir: Path, tmp_path: Path) -> CLI:
    """The real `genesis` command in a fresh folder, with its own SQLite database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env.update(
        GENESIS_MODELS_DIR=str(models_dir),
        GENESIS_DATABASE_URL=f"sqlite:///{tmp_path / 'genesis.db'}",
        COLUMNS="160",
    )
    return CLI(env=env, cwd=tmp_path)
