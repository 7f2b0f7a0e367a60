"""The identities commands through the real CLI (typer runner, real models, SQLite): enroll with a warning
and with a rejection, rename, re-embed --model, key rotation, reject/name input errors, audit."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from genesis.cli.main import app
from genesis.identities.crypto import KEY_ENV


@pytest.fixture()
def cli(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("GENESIS_TEST_REDIS_PORT", raising=False)
    monkeypatch.setenv("GENESIS_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("GENESIS_DATABASE_URL", f"sqlite:///{tmp_path / 'g.db'}")
    monkeypatch.setenv("GENESIS_IDENTITIES__ACTOR", "alice@test")
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_identities_commands(cli: CliRunner, data_dir: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    negan = sorted((data_dir / "faces" / "known" / "negan").glob("*.jpg"))
    r = cli.invoke(app, ["enroll", "negan", *map(str, negan)])
    assert r.exit_code == 0, r.output
    assert "4 photo(s), 4 new embedding(s) [SFace]" in r.output
    assert "negan3.jpg: small face (70 px" in r.output  # the quality gate warns
    r = cli.invoke(app, ["enroll", "two", str(shared_dir / "models" / "faces" / "two_people.jpg")])
    assert r.exit_code == 1 and "2 faces of similar size" in r.output and "Traceback" not in r.output
    assert cli.invoke(app, ["identities", "rename", "negan", "Negan"]).exit_code == 0
    r = cli.invoke(app, ["identities", "rename", "nobody", "x"])
    assert r.exit_code == 1 and "no identity named 'nobody'" in r.output
    r = cli.invoke(app, ["identities", "re-embed", "--model", "Dlib"])
    assert r.exit_code == 0 and "re-embedded 4 face(s) of 1 identities with Dlib" in r.output, r.output
    r = cli.invoke(app, ["identities"])
    assert "Negan" in r.output and "Dlib, SFace" in r.output
    # Key rotation: clear blobs get encrypted with the key; a second key then takes over.
    key1 = cli.invoke(app, ["identities", "new-key"]).output.strip()
    key2 = cli.invoke(app, ["identities", "new-key"]).output.strip()
    monkeypatch.setenv(KEY_ENV, key1)
    r = cli.invoke(app, ["identities", "rotate-key"])
    assert r.exit_code == 0 and "re-encrypted 12 blob(s)" in r.output, r.output  # 8 embeddings + 4 crops
    monkeypatch.setenv(KEY_ENV, key2)
    r = cli.invoke(app, ["identities", "re-embed"])
    assert r.exit_code == 1 and "wrong key" in r.output
    monkeypatch.setenv(KEY_ENV, f"{key2},{key1}")
    assert cli.invoke(app, ["identities", "rotate-key"]).exit_code == 0
    monkeypatch.setenv(KEY_ENV, key2)
    assert cli.invoke(app, ["identities", "re-embed"]).exit_code == 0
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    r = cli.invoke(app, ["identities", "audit"])
    assert r.exit_code == 2 and "not a valid Fernet key" in r.output
    monkeypatch.setenv(KEY_ENV, key2)
    # Input errors are messages, not tracebacks.
    r = cli.invoke(app, ["identities", "reject", "nonsense"])
    assert r.exit_code == 2 and "RUN:TRACK" in r.output
    r = cli.invoke(app, ["identities", "reject", "abc:3"])
    assert r.exit_code == 1 and "no run 'abc'" in r.output
    r = cli.invoke(app, ["identities", "name", "stranger-3", "Bob"])
    assert r.exit_code == 1 and "not an unknown-face id" in r.output
    r = cli.invoke(app, ["identities", "name", "unknown-3", "unknown-4"])
    assert r.exit_code == 1 and "reserved" in r.output
    r = cli.invoke(app, ["identities", "audit"])
    assert r.exit_code == 0
    for action in ("enroll", "rename", "re-embed", "rotate-key"):
        assert action in r.output
    assert "alice@test" in r.output
    # Undo takes review actions only, by their audit entry.
    r = cli.invoke(app, ["identities", "undo", "1"])
    assert r.exit_code == 1 and "(enroll) cannot be undone" in r.output, r.output
    r = cli.invoke(app, ["identities", "undo", "99999"])
    assert r.exit_code == 1 and "no audit entry 99999" in r.output
    r = cli.invoke(app, ["identities", "forget", "Negan", "--yes"])
    assert r.exit_code == 0 and "8 embeddings, 4 face photos" in r.output, r.output
    assert "no identities enrolled" in cli.invoke(app, ["identities"]).output
