"""Biometric data policy (issue 13, items 7 and 9) through the real CLI (typer runner, real models,
SQLite): clear and encrypted rows never mixed, one clear line instead of a traceback, SQLite's
secure_delete set by Genesis itself, and a face already enrolled under another name refused unless
forced (audited)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from genesis.adapters.db import Repository
from genesis.adapters.db.apikeys import ApiKeyStore
from genesis.api import create_app
from genesis.cli.main import app
from genesis.config import Settings
from genesis.identities.crypto import KEY_ENV, BiometricCipher


@pytest.fixture()
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'g.db'}"


@pytest.fixture()
def cli(models_dir: Path, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("GENESIS_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("GENESIS_DATABASE_URL", db)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def _photos(data_dir: Path, person: str) -> list[str]:
    return [str(p) for p in sorted((data_dir / "faces" / "known" / person).glob("*.jpg"))[:2]]


def _one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert "Traceback" not in output and len([ln for ln in lines if ln.startswith("error:")]) == 1, output
    return next(ln for ln in lines if ln.startswith("error:"))


def test_clear_rows_are_never_written_beside_encrypted_ones(cli: CliRunner, data_dir: Path, db: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    key = BiometricCipher.new_key()
    monkeypatch.setenv(KEY_ENV, key)
    assert cli.invoke(app, ["enroll", "rick", *_photos(data_dir, "rick")]).exit_code == 0
    monkeypatch.delenv(KEY_ENV)
    r = cli.invoke(app, ["enroll", "negan", *_photos(data_dir, "negan")])
    assert r.exit_code == 1
    line = _one_error_line(r.output)  # refused before anything is written
    assert "encrypted" in line and f"set {KEY_ENV}" in line, line
    with Repository(db) as repo, repo.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM identities WHERE name = 'negan'")).scalar() == 0
        blobs = [bytes(b[0]) for b in conn.execute(text("SELECT vector FROM face_embeddings"))]
    assert blobs and all(b.startswith(b"GF2\x80") for b in blobs)
    # A run over the encrypted gallery without the key: one clear line, no traceback.
    video = data_dir / "video" / "opencv4nodejs_people.mp4"
    r = cli.invoke(app, ["run", "--source", str(video), "--max-frames", "3"])
    assert r.exit_code == 1 and "encrypted" in _one_error_line(r.output), r.output


def test_encrypted_rows_are_never_written_beside_clear_ones(cli: CliRunner, data_dir: Path, db: str,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from genesis.identities import store

    monkeypatch.setattr(store, "_WARNED", set())
    with caplog.at_level("WARNING", "genesis.identities"):
        assert cli.invoke(app, ["enroll", "rick", *_photos(data_dir, "rick")]).exit_code == 0
    warned = [r.getMessage() for r in caplog.records if r.name == "genesis.identities"]
    assert len(warned) == 1 and f"{KEY_ENV} is not set" in warned[0] and "\n" not in warned[0]
    monkeypatch.setenv(KEY_ENV, BiometricCipher.new_key())
    r = cli.invoke(app, ["enroll", "negan", *_photos(data_dir, "negan")])
    assert r.exit_code == 1 and "rotate-key" in _one_error_line(r.output)
    # The documented way: encrypt what is there, then enroll.
    assert cli.invoke(app, ["identities", "rotate-key"]).exit_code == 0
    assert cli.invoke(app, ["enroll", "negan", *_photos(data_dir, "negan")]).exit_code == 0
    with Repository(db) as repo, repo.engine.connect() as conn:
        for table, col in (("face_embeddings", "vector"), ("face_photos", "crop")):
            blobs = [bytes(b[0]) for b in conn.execute(text(f"SELECT {col} FROM {table}"))]
            assert len(blobs) == 4 and all(b.startswith(b"GF2\x80") for b in blobs), table


def test_secure_delete_is_set_on_every_connection(cli: CliRunner, data_dir: Path, db: str, tmp_path: Path) -> None:
    with Repository(db) as repo:
        for _ in range(3):
            with repo.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    # Forget: neither the embedding bytes nor the name remain anywhere in the file.
    assert cli.invoke(app, ["enroll", "Zyxwvut Qrst", *_photos(data_dir, "rick")]).exit_code == 0
    with Repository(db) as repo, repo.engine.connect() as conn:
        vectors = [bytes(b[0]) for b in conn.execute(text("SELECT vector FROM face_embeddings"))]
    assert cli.invoke(app, ["identities", "forget", "Zyxwvut Qrst", "--yes"]).exit_code == 0
    raw = sqlite3.connect(tmp_path / "g.db")
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("g.db*"))
    assert vectors and all(v[:64] not in data for v in vectors)
    assert b"Zyxwvut Qrst" not in data


def test_same_face_under_two_names_is_refused(cli: CliRunner, data_dir: Path, db: str) -> None:
    photo = data_dir / "faces" / "known" / "rick" / "rick1.jpg"
    assert cli.invoke(app, ["enroll", "jack", str(photo)]).exit_code == 0
    # Another photo of the same person under another name: refused, naming the identity.
    other = data_dir / "faces" / "known" / "rick" / "rick2.jpg"
    for p in (photo, other):
        r = cli.invoke(app, ["enroll", "probe-x", str(p)])
        assert r.exit_code == 1 and "looks like 'jack'" in _one_error_line(r.output) and "--force" in r.output
    # Another person is not affected; the same name takes more photos of itself.
    negan = data_dir / "faces" / "known" / "negan" / "negan1.jpg"
    assert cli.invoke(app, ["enroll", "negan", str(negan)]).exit_code == 0
    assert cli.invoke(app, ["enroll", "jack", str(other)]).exit_code == 0
    # Through the API: 409 near_identity naming it; force=true enrolls it and the audit log says so.
    settings = Settings.model_validate({"database_url": db, "models": {"dir": os.environ["GENESIS_MODELS_DIR"]}})
    with Repository(db) as repo:
        key, _ = ApiKeyStore(repo.engine).create("operator", "api")
    with TestClient(create_app(settings)) as c:
        files = [("photos", (photo.name, photo.read_bytes(), "image/jpeg"))]
        r = c.post("/api/identities", headers={"X-API-Key": key}, data={"name": "probe-x"}, files=files)
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert err["code"] == "near_identity" and "'jack'" in err["message"]
        assert err["details"][0]["identity"] == "jack" and err["details"][0]["distance"] < 0.593
        r = c.post("/api/identities", headers={"X-API-Key": key}, data={"name": "probe-x", "force": "true"},
                   files=files)
        assert r.status_code == 201, r.text
    with Repository(db) as repo, repo.engine.connect() as conn:
        jack = conn.execute(text("SELECT id FROM identities WHERE name = 'jack'")).scalar()
        detail = conn.execute(text("SELECT detail FROM audit_log WHERE target = 'probe-x'")).scalar()
    assert f'"forced_near_identity_ids": [{jack}]' in str(detail).replace("'", '"'), detail


def _first_form(blob: bytes, key: str) -> bytes:
    """``blob`` (stored encrypted) as the first form wrote it: the marker ``GF1`` and the Fernet token as text."""
    from cryptography.fernet import Fernet

    return b"GF1" + Fernet(key.encode()).encrypt(BiometricCipher([key.encode()]).decrypt(blob))


def test_blobs_of_the_first_encrypted_form_are_read_counted_as_encrypted_and_rewritten_by_rotate_key(
        cli: CliRunner, data_dir: Path, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    key = BiometricCipher.new_key()
    monkeypatch.setenv(KEY_ENV, key)
    assert cli.invoke(app, ["enroll", "rick", *_photos(data_dir, "rick")]).exit_code == 0
    cipher = BiometricCipher([key.encode()])
    with Repository(db) as repo, repo.engine.begin() as conn:
        rows = [(int(i), bytes(v)) for i, v in conn.execute(text("SELECT id, vector FROM face_embeddings"))]
        plain = {i: cipher.decrypt(v) for i, v in rows}
        for i, v in rows:  # the database a former version wrote
            conn.execute(text("UPDATE face_embeddings SET vector = :v WHERE id = :i"),
                         {"v": _first_form(v, key), "i": i})
        for i, c in list(conn.execute(text("SELECT id, crop FROM face_photos"))):
            conn.execute(text("UPDATE face_photos SET crop = :c WHERE id = :i"),
                         {"c": _first_form(bytes(c), key), "i": i})
    # The new form is a quarter smaller than the first for the same vector (585 bytes of token instead of 780).
    new, first = cipher.encrypt(plain[rows[0][0]]), _first_form(rows[0][1], key)
    assert len(new) == 3 + 585 and len(first) == 3 + 780 and cipher.decrypt(first) == cipher.decrypt(new)
    assert Fernet(key.encode()).decrypt(first[3:]) == plain[rows[0][0]]
    # Without the key, a first-form database is seen as encrypted: no clear row is written beside it.
    monkeypatch.delenv(KEY_ENV)
    r = cli.invoke(app, ["enroll", "negan", *_photos(data_dir, "negan")])
    assert r.exit_code == 1 and "encrypted" in _one_error_line(r.output)
    # With the key, the first form is read (a re-embed decrypts every crop), new rows are written in the new form
    # beside it (both forms are encrypted), and rotate-key rewrites every blob in the new form.
    monkeypatch.setenv(KEY_ENV, key)
    assert cli.invoke(app, ["enroll", "negan", *_photos(data_dir, "negan")]).exit_code == 0
    with Repository(db) as repo, repo.engine.connect() as conn:
        heads = sorted({bytes(b[0])[:4] for b in conn.execute(text("SELECT vector FROM face_embeddings"))})
    assert heads == [b"GF1g", b"GF2\x80"]
    r = cli.invoke(app, ["identities", "rotate-key"])
    assert r.exit_code == 0 and "re-encrypted 8 blob(s)" in r.output, r.output  # 4 embeddings + 4 crops
    with Repository(db) as repo, repo.engine.connect() as conn:
        after = {int(i): bytes(v) for i, v in conn.execute(text("SELECT id, vector FROM face_embeddings"))}
        crops = [bytes(c[0]) for c in conn.execute(text("SELECT crop FROM face_photos"))]
    assert all(b[:4] == b"GF2\x80" for b in [*after.values(), *crops])
    assert all(cipher.decrypt(after[i]) == v for i, v in plain.items())
    assert cli.invoke(app, ["identities", "re-embed"]).exit_code == 0
