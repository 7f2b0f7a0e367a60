"""Embedded run on the real crowd clip with nobody enrolled and `identities.unknowns_without_gallery`:
faces are searched, stored per track (encrypted) and clustered into unknown-N ids that a second run joins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from genesis.identities.crypto import BiometricCipher


def _genesis(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "genesis.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_unknown_faces_without_enrollment(models_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'g.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env.update(GENESIS_MODELS_DIR=str(models_dir), GENESIS_DATABASE_URL=db, COLUMNS="200",
               GENESIS_IDENTITIES__UNKNOWNS_WITHOUT_GALLERY="true", GENESIS_EMBEDDING_KEY=BiometricCipher.new_key())
    video = str(data_dir / "video" / "opencv4nodejs_people.mp4")
    _genesis(env, "run", "--source", video, "--camera", "a", "--stride", "3", "--max-frames", "40")
    engine = create_engine(db)
    with engine.connect() as conn:
        first = conn.execute(text("SELECT track_id, cluster_id FROM track_faces")).all()
        clusters = conn.execute(text("SELECT count(*) FROM unknown_clusters")).scalar_one()
    assert len(first) >= 2 and all(c is not None for _, c in first) and clusters >= 1
    listing = _genesis(env, "identities", "unknowns")
    assert f"unknown-{first[0][1]}" in listing
    # The same clip again on another camera: its faces join the clusters of the first run (persistent ids).
    _genesis(env, "run", "--source", video, "--camera", "b", "--stride", "3", "--max-frames", "40")
    with engine.connect() as conn:
        again = conn.execute(text("SELECT count(*) FROM unknown_clusters")).scalar_one()
        both = conn.execute(text("SELECT count(DISTINCT camera_id) FROM track_faces tf WHERE cluster_id IN "
                                 "(SELECT cluster_id FROM track_faces WHERE camera_id = 'a')")).scalar_one()
    engine.dispose()
    assert again == clusters and both == 2
