"""The operator's console in a real headless Chromium (Debian ``chromium`` through Playwright),
against a real ``genesis serve`` process beside real ``genesis run`` processes on one SQLite file:
see an unknown person's face, name them, open their page and timeline, watch the live view of a
running embedded pipeline (its boxes move: two screenshots differ), search by photo and reject a
match. Screenshots go to ``$GENESIS_TEST_ARTIFACTS/console`` (and, with ``GENESIS_UPDATE_DOCS_IMAGES=1``,
to docs/images/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import goto, launch
from tests.e2e.conftest import CLI
from tests.e2e.serving import artifact_folder, served_run
from tests.e2e.test_dashboard_browser import chromium_or_skip
from tests.photos import face_photo

REDIS_DB = 14
NAME = "Visitor One"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    return artifact_folder(tmp_path, "console")


@pytest.fixture()
def console(cli: CLI, data_dir: Path, tmp_path: Path) -> Iterator[tuple[str, str, CLI]]:
    """(base URL, admin key, cli) of `genesis serve` over the SQLite database of one finished run."""
    config = {"cameras": [{
        "id": "lobby",
        "zones": [{"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
        "lines": [{"name": "mid", "start": [0.5, 0], "end": [0.5, 1], "in_name": "east", "out_name": "west"}],
    }], "identities": {"unknowns_without_gallery": True}}
    with served_run(cli, data_dir, tmp_path, config, REDIS_DB, 24, "console") as (base, key, _ops_port):
        yield base, key, cli


def get(base: str, key: str, path: str) -> Any:
    req = urllib.request.Request(base + path, headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def get_bytes(base: str, key: str, path: str) -> bytes:
    req = urllib.request.Request(base + path, headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=30) as r:
        return bytes(r.read())


def test_console_faces_name_identity_live_search_reject(console: tuple[str, str, CLI], data_dir: Path,
                                                        shots: Path, tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    base, key, cli = console
    clusters = get(base, key, "/api/unknowns?limit=100")["items"]
    assert clusters, "the run clustered no face"
    target = max(clusters, key=lambda u: u["size"])
    best = get(base, key, f"/api/unknowns/{target['id']}/faces")["items"][0]
    photo = face_photo(get_bytes(base, key, best["face"]), tmp_path / "face.jpg")
    runner: subprocess.Popen[bytes] | None = None
    with sync_playwright() as p:
        browser = launch(p, chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            goto(page, base + "/")
            page.fill("#api_key", key)
            page.click("button[type=submit]")
            expect(page.get_by_role("heading", name="Cameras")).to_be_visible()

            # The unknown-faces panel shows each cluster's best face (a real image) and a strip of the others.
            row = page.locator(f'#unknown-rows tr[data-cluster="{target["id"]}"]')
            expect(row.locator("img.face.best")).to_be_visible(timeout=10_000)
            page.wait_for_function(
                "id => { const i = document.querySelector(`#unknown-rows tr[data-cluster='${id}'] img.face.best`);"
                " return i && i.complete && i.naturalWidth > 0; }", arg=target["id"], timeout=10_000)
            expect(row.locator(".strip img.face")).to_have_count(min(target["size"], 7) - 1)
            row.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "01-unknown-faces.png"), full_page=True)

            # Review: name the cluster from its card.
            page.get_by_role("link", name="Review").click()
            card = page.locator(f'.cluster-card[data-cluster="{target["id"]}"]')
            expect(card.locator("img.face.best")).to_be_visible(timeout=10_000)
            expect(page.locator("#review-faces .face-card").first).to_be_visible(timeout=10_000)
            page.screenshot(path=str(shots / "02-review.png"), full_page=True)
            card.locator("input.cluster-name").fill(NAME)
            card.get_by_role("button", name="name").click()
            expect(card).to_have_count(0, timeout=10_000)

            # The identity's page: the same numbers as the API's summary (report.json's entries), and a
            # timeline with faces.
            goto(page, base + "/identities/" + urllib.request.quote(NAME))
            expect(page.locator("body[data-loaded='1']")).to_have_count(1, timeout=20_000)
            summary = get(base, key, "/api/identities/" + urllib.request.quote(NAME) + "/summary")
            stats = page.locator("#identity-stats")
            expect(stats).to_contain_text(f"visits{summary['visits']}")
            expect(stats).to_contain_text(f"in {summary['crossings']['in']} · out {summary['crossings']['out']}")
            expect(stats).to_contain_text("lobby")
            expect(page.locator("#identity-photos img.face")).to_have_count(target["size"])
            assert summary["tracks"] == target["size"]
            expect(page.locator("#identity-timeline li.run-head img.face")).to_have_count(target["size"])
            events = sum(len(r["timeline"]) for r in summary["runs"])
            expect(page.locator("#identity-timeline li.event")).to_have_count(events)
            page.screenshot(path=str(shots / "03-identity.png"), full_page=True)

            # Live view: a second embedded run of the camera while the dashboard is open.
            runner = subprocess.Popen(
                [sys.executable, "-m", "genesis.cli.main", "run", "--source",
                 str(data_dir / "video" / "opencv4nodejs_people.mp4"), "--camera", "lobby", "--stride", "2"],
                cwd=cli.cwd, env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            goto(page, base + "/")
            tile = page.locator('.tile[data-camera="lobby"]')
            canvas = tile.locator("canvas.live")
            expect(tile).to_have_attribute("data-live", "on", timeout=90_000)
            page.wait_for_function("() => Number(document.querySelector('canvas.live').dataset.persons) > 0",
                                   timeout=60_000)
            seq1 = canvas.get_attribute("data-seq")
            first = canvas.screenshot()
            page.wait_for_function(
                "s => { const c = document.querySelector('canvas.live');"
                " return c.dataset.seq !== s && Number(c.dataset.persons) > 0; }", arg=seq1, timeout=30_000)
            second = canvas.screenshot()
            assert first != second, "the live view did not change"
            (shots / "04-live-1.png").write_bytes(first)
            (shots / "05-live-2.png").write_bytes(second)
            expect(tile.locator(".live-status")).to_contain_text("live · frame")
            page.screenshot(path=str(shots / "06-dashboard-live.png"), full_page=True)

            # Search by photo (the person's face from the clip), then reject the match.
            page.get_by_role("link", name="Search by photo").click()
            page.set_input_files('#search-form input[name="photo"]', str(photo))
            page.click('#search-form button[type="submit"]')
            hit = page.locator(f'#search-results .face-card[data-run="{best["run_id"]}"]'
                               f'[data-track="{best["track_id"]}"]')
            expect(hit).to_be_visible(timeout=60_000)
            expect(hit.locator("img.face")).to_be_visible()
            expect(hit.locator(".who")).to_contain_text(NAME)
            expect(hit).to_contain_text("lobby")
            page.screenshot(path=str(shots / "07-search.png"), full_page=True)
            hit.get_by_role("button", name="not this person").click()
            expect(hit.locator(".who")).not_to_contain_text(NAME, timeout=60_000)
            expect(page.locator(f'#search-results .face-card[data-track="{best["track_id"]}"] .who')
                   ).to_contain_text("unrecognised", timeout=60_000)
            page.screenshot(path=str(shots / "08-search-rejected.png"), full_page=True)
        finally:
            browser.close()
            if runner is not None:
                runner.terminate()
                runner.wait(timeout=60)
    for name in ("01-unknown-faces.png", "02-review.png", "03-identity.png", "06-dashboard-live.png",
                 "07-search.png", "08-search-rejected.png"):
        assert (shots / name).stat().st_size > 10_000, name
    # Every change is in the audit log with the dashboard's key.
    audit = cli("identities", "audit").stdout
    assert "name" in audit and "reject" in audit and "api-key:console#" in audit
    if os.environ.get("GENESIS_UPDATE_DOCS_IMAGES") == "1":
        for src, dst in (("01-unknown-faces.png", "console-unknowns.png"), ("02-review.png", "console-review.png"),
                         ("03-identity.png", "console-identity.png"), ("06-dashboard-live.png", "console-live.png"),
                         ("07-search.png", "console-search.png")):
            shutil.copy(shots / src, DOCS_IMAGES / dst)
