"""Camera credentials never shown, logged or stored (issue 13, item 4); names are not terminal markup
and obey one rule wherever they enter (item 5); every identity can be addressed, and erased, by a
stable id (item 6). Real CLI processes, a real HTTP camera (a clip served on 127.0.0.1 with
``user:password@`` in its URL), real models, SQLite.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from genesis.adapters.db import Repository
from genesis.adapters.db.apikeys import ApiKeyStore
from genesis.api import create_app
from genesis.cli.main import app as cli_app
from genesis.config import Settings
from genesis.domain.redact import redact
from tests.services import redis_url

SECRET = "s3cretPW"
REDIS_DB = 1


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def camera_url(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[str]:
    """An HTTP camera on 127.0.0.1 whose URL carries credentials (the server ignores them)."""
    folder = tmp_path_factory.mktemp("camera")
    cap = cv2.VideoCapture(str(data_dir / "video" / "opencv4nodejs_people.mp4"))
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (640, 360))
    for _ in range(12):
        ok, image = cap.read()
        assert ok
        writer.write(cv2.resize(image, (640, 360)))
    writer.release()
    cap.release()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://door-admin:{SECRET}@127.0.0.1:{httpd.server_address[1]}/clip.avi"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _env(models_dir: Path, db: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env.update(GENESIS_MODELS_DIR=str(models_dir), GENESIS_DATABASE_URL=db, COLUMNS="200", **extra)
    return env


def _all_text(db: str) -> str:
    """Every row of every table, every column, as text."""
    out = []
    with Repository(db) as repo, repo.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                out.append(" ".join(repr(v) for v in row))
    return "\n".join(out)


def test_redact() -> None:
    assert redact(f"rtsp://admin:{SECRET}@10.0.0.5:554/s?ch=1") == "rtsp://***@10.0.0.5:554/s?ch=1"
    assert redact(f"cannot open url source http://u:{SECRET}@h/x: no") == "cannot open url source http://***@h/x: no"
    assert redact(f"http://cam/v?user=admin&password={SECRET}&fps=5") == "http://cam/v?user=***&password=***&fps=5"
    assert redact(f"rtsp://u:p@{SECRET}@host/s") == "rtsp://***@host/s"  # an unescaped @ in the password
    for plain in ("/data/video.mp4", "rtsp://host/stream", "0", "https://example.org/a?b=c"):
        assert redact(plain) == plain


def test_camera_credentials_leak_nowhere(camera_url: str, models_dir: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'g.db'}"
    config = tmp_path / "settings.yaml"
    config.write_text(json.dumps({"cameras": [{"id": "door", "source": camera_url}],
                                  "redis_url": redis_url(REDIS_DB), "broker_url": redis_url(REDIS_DB)}))
    env = _env(models_dir, db, GENESIS_CONFIG=str(config))
    run = subprocess.run([sys.executable, "-m", "genesis.cli.main", "run", "--camera", "door", "--source", camera_url,
                          "--max-frames", "6", "--out", str(tmp_path / "out")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert SECRET not in run.stdout + run.stderr
    # A source that cannot be opened: the error line names it, without the credentials.
    bad = f"rtsp://door-admin:{SECRET}@127.0.0.1:9/none"
    failed = subprocess.run([sys.executable, "-m", "genesis.cli.main", "run", "--camera", "door", "--source", bad,
                             "--max-frames", "2"], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "rtsp://***@127.0.0.1:9/none" in failed.stderr and SECRET not in failed.stdout + failed.stderr
    # Stored for display: the run's source, its meta, report.json.
    stored = _all_text(db)
    assert "127.0.0.1" in stored and SECRET not in stored and "door-admin" not in stored
    report = (tmp_path / "out" / "report.json").read_text()
    assert SECRET not in report
    # The API, to a viewer: cameras (the configured source), runs, pipeline status.
    settings = Settings.model_validate({"database_url": db, "cameras": [{"id": "door", "source": camera_url}],
                                        "redis_url": redis_url(REDIS_DB), "broker_url": redis_url(REDIS_DB)})
    with Repository(db) as repo:
        key, _ = ApiKeyStore(repo.engine).create("viewer")
    with TestClient(create_app(settings)) as c:
        h = {"X-API-Key": key}
        cams = c.get("/api/cameras", headers=h)
        runs = c.get("/api/runs", headers=h)
        assert cams.status_code == 200 and runs.status_code == 200
        assert cams.json()[0]["source"].startswith("http://***@127.0.0.1:")
        assert runs.json()["items"][0]["source"].startswith("http://***@127.0.0.1:")
        for r in (cams, runs, c.get("/api/pipeline/status", headers=h), c.get("/", headers=h)):
            assert SECRET not in r.text and "door-admin" not in r.text


# -- names: one rule, escaped output, addressable by id ---------------------------------------------


@pytest.fixture()
def cli(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GENESIS_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("GENESIS_DATABASE_URL", f"sqlite:///{tmp_path / 'g.db'}")
    monkeypatch.setenv("GENESIS_IDENTITIES__ACTOR", "[bold]mallory[/bold]")
    monkeypatch.chdir(tmp_path)
    from genesis.cli import common

    for console in (common.console, common.err_console):  # wide tables: no cell folded across lines
        monkeypatch.setattr(console, "_width", 250)
    return CliRunner()


def _legacy_identity(db: str, name: str) -> int:
    """A name stored before the rule existed (an older Genesis wrote any text)."""
    with Repository(db) as repo, repo.engine.begin() as conn:
        conn.execute(text("INSERT INTO identities (name, created_at) VALUES (:n, CURRENT_TIMESTAMP)"), {"n": name})
        return int(conn.execute(text("SELECT id FROM identities WHERE name = :n"), {"n": name}).scalar_one())


def test_names_are_printed_as_typed(cli: CliRunner, data_dir: Path, tmp_path: Path) -> None:
    known = data_dir / "faces" / "known"
    markup, link = "[bold]Mallory", "[link=https:evil.example]click"
    for name, person in ((markup, "negan"), (link, "rick")):
        r = cli.invoke(cli_app, ["enroll", name, str(known / person / f"{person}1.jpg")])
        assert r.exit_code == 0, r.output
        assert f"enrolled {name}:" in r.output
    # Names stored before the rule existed (an older Genesis took any text): a closing tag, escapes.
    db = f"sqlite:///{tmp_path / 'g.db'}"
    closing, legacy = "[/bold]", "evil\x1b]8;;https://x\x07name\x1b[2J"
    _legacy_identity(db, closing)
    _legacy_identity(db, legacy)
    for args in (["identities"], ["identities", "audit"]):
        r = cli.invoke(cli_app, args)
        assert r.exit_code == 0, (args, r.output, r.exception)
        assert "\x1b" not in r.output and "\x07" not in r.output
    assert "[bold]mallory[/bold]" in cli.invoke(cli_app, ["identities", "audit"]).output  # the actor, as typed
    listed = cli.invoke(cli_app, ["identities"]).output
    assert markup in listed and link in listed and closing in listed
    assert "evil\\x1b]8;;https://x\\x07name\\x1b[2J" in listed
    r = cli.invoke(cli_app, ["identities", "rename", closing, "[red]bob"])
    assert r.exit_code == 0 and "renamed [/bold] to [red]bob" in r.output, (r.output, r.exception)
    r = cli.invoke(cli_app, ["identities", "forget", legacy, "--yes"])
    assert r.exit_code == 0 and "\x1b" not in r.output and "forgot evil\\x1b" in r.output, r.output
    r = cli.invoke(cli_app, ["identities", "rename", "nobody", "[x"])
    assert r.exit_code == 1 and "no identity named 'nobody'" in r.output


@pytest.mark.parametrize(("name", "why"), [
    ("bad\x1b[31mname", "control characters"), ("tab\tname", "control characters"), ("a/b", "'/'"),
    ("x" * 129, "longer than 128"), ("  ", "empty"), ("unknown-4", "reserved"), ("..", "'.' or '..'"),
    ("rtl\u202eevil", "control characters"),
])
def test_one_name_rule_everywhere(cli: CliRunner, data_dir: Path, tmp_path: Path, name: str, why: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    photo = data_dir / "faces" / "known" / "negan" / "negan1.jpg"
    with monkeypatch.context() as no_models:  # no weights: a refused name is refused before any model loads
        no_models.setenv("GENESIS_MODELS_DIR", str(tmp_path / "no-models"))
        r = cli.invoke(cli_app, ["enroll", name, str(photo)])
    assert r.exit_code == 1 and why in r.output and "\x1b" not in r.output, r.output
    if why == "reserved":
        return
    if why != "empty":  # a key without a name gets ROLE-ID
        r = cli.invoke(cli_app, ["apikey", "create", "--role", "viewer", "--name", name])
        assert r.exit_code == 2 and why in r.output and "\x1b" not in r.output, r.output
    settings = Settings.model_validate({"database_url": f"sqlite:///{tmp_path / 'g.db'}",
                                        "models": {"dir": str(tmp_path / "no-models")}})
    with Repository(settings.database_url) as repo:
        admin, _ = ApiKeyStore(repo.engine).create("admin")
    with TestClient(create_app(settings)) as c:
        h = {"X-API-Key": admin}
        if why != "empty":
            assert c.post("/api/keys", headers=h, json={"role": "viewer", "name": name}).status_code == 422
        r = c.post("/api/identities", headers=h, data={"name": name},
                   files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))])
        assert r.status_code == 422 and (why in r.text or "at most 128" in r.text), r.text
        assert cli.invoke(cli_app, ["enroll", "Negan", str(photo)]).exit_code == 0
        assert c.patch("/api/identities/Negan", headers=h, json={"name": name}).status_code == 422
        assert c.get("/api/identities", headers=h).json()[0]["name"] == "Negan"


def test_apikey_names_are_printed_as_typed(cli: CliRunner) -> None:
    r = cli.invoke(cli_app, ["apikey", "create", "--role", "viewer", "--name", "[bold][link=x]k"])
    assert r.exit_code == 0, r.output
    with Repository(os.environ["GENESIS_DATABASE_URL"]) as repo, repo.engine.begin() as conn:  # an older name
        conn.execute(text("UPDATE api_keys SET name = :n"), {"n": "[/bold]\x1b[2J"})
    r = cli.invoke(cli_app, ["apikey", "list"])
    assert r.exit_code == 0 and "[/bold]\\x1b[2J" in r.output and "\x1b" not in r.output, (r.output, r.exception)


def test_every_identity_can_be_erased_by_id(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'g.db'}"
    settings = Settings.model_validate({"database_url": db})
    with Repository(db) as repo:
        admin, _ = ApiKeyStore(repo.engine).create("admin")
        operator, _ = ApiKeyStore(repo.engine).create("operator")
    odd = {"slash": "ana/maria", "control": "x\x1b[31my", "long": "n" * 200, "dots": ".."}
    ids = {k: _legacy_identity(db, v) for k, v in odd.items()}
    with TestClient(create_app(settings)) as c:
        h = {"X-API-Key": admin}
        listed = {i["id"]: i["name"] for i in c.get("/api/identities", headers=h).json()}
        assert listed == {ids[k]: v for k, v in odd.items()}
        assert c.get(f"/api/identities/by-id/{ids['slash']}", headers=h).json()["name"] == "ana/maria"
        # By name these cannot be addressed (main answered 404/422 and had no other way) ...
        assert c.delete("/api/identities/ana/maria", headers=h).status_code == 404
        assert c.delete(f"/api/identities/{'n' * 200}", headers=h).status_code == 422
        # ... by id they can: rename one to a proper name, erase the others.
        r = c.patch(f"/api/identities/by-id/{ids['control']}", headers={"X-API-Key": operator},
                    json={"name": "Proper"})
        assert r.status_code == 200 and r.json() == {**r.json(), "id": ids["control"], "name": "Proper"}
        assert c.delete(f"/api/identities/by-id/{ids['slash']}", headers={"X-API-Key": operator}).status_code == 403
        for k in ("slash", "long", "dots"):
            assert c.delete(f"/api/identities/by-id/{ids[k]}", headers=h).status_code == 204
            assert c.delete(f"/api/identities/by-id/{ids[k]}", headers=h).status_code == 404
        assert [i["name"] for i in c.get("/api/identities", headers=h).json()] == ["Proper"]
        assert c.get("/api/identities/by-id/999999", headers=h).status_code == 404
    stored = _all_text(db)
    assert "ana/maria" not in stored and "n" * 200 not in stored
