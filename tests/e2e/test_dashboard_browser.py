"""The dashboard in a real headless Chromium (Debian ``chromium``, driven by Playwright with
``executable_path``: no browser download), against a real ``genesis serve`` process over the
SQLite database of a real ``genesis run``. Screenshots are saved as test artifacts
(``$GENESIS_TEST_ARTIFACTS/dashboard`` when set, as scripts/test.sh does, else the test's tmp folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.browser import goto, launch
from tests.e2e.conftest import CLI
from tests.e2e.serving import artifact_folder, served_run

CHROMIUM = Path("/usr/bin/chromium")
REDIS_DB = 15


def chromium_or_skip() -> Path:
    """The Debian chromium, installed with apt-get when missing and possible; else skip (with why)."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed at /usr/bin/chromium and cannot be installed here "
                    "(needs root and apt-get: apt-get install -y chromium)")
    proc = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True, timeout=900,
                          check=False, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if proc.returncode != 0 or not CHROMIUM.is_file():
        pytest.skip(f"chromium could not be installed (apt-get install -y chromium exited {proc.returncode}): "
                    f"{proc.stderr.strip()[-300:]}")
    return CHROMIUM


@pytest.fixture()
def artifacts(tmp_path: Path) -> Path:
    return artifact_folder(tmp_path, "dashboard")


@pytest.fixture()
def served(cli: CLI, data_dir: Path, tmp_path: Path) -> Iterator[tuple[str, str, CLI]]:
    """(base URL, admin key, cli) of a `genesis serve` process over a database with one real run."""
    # Alert rules the clip sets off: more than one person on the left (crowding), and anyone
    # staying there a second (loitering).
    config = {"cameras": [{
        "id": "lobby",
        "zones": [{"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "max_occupancy": 1}],
        "alerts": {"zone_loitering_s": {"left": 1.0}},
    }], "identities": {"unknowns_without_gallery": True}}  # faces are clustered though nobody is enrolled
    with served_run(cli, data_dir, tmp_path, config, REDIS_DB, 20, "browser") as (base, key, ops_port):
        ops_endpoint_answers(f"http://127.0.0.1:{ops_port}")
        yield base, key, cli


def ops_endpoint_answers(ops: str) -> None:
    """The serve process's own /health, /status and /metrics (for Prometheus; no API key)."""
    with urllib.request.urlopen(f"{ops}/health", timeout=10) as r:
        health = json.loads(r.read())
    assert health["role"] == "api" and health["status"] == "ok", health
    with urllib.request.urlopen(f"{ops}/status", timeout=10) as r:
        assert json.loads(r.read())["role"] == "api"
    with urllib.request.urlopen(f"{ops}/metrics", timeout=10) as r:
        assert b"genesis_queue_depth" in r.read()


def test_dashboard_login_enroll_heatmap_alerts(served: tuple[str, str, CLI], data_dir: Path,
                                              artifacts: Path) -> None:
    chromium = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    base, key, cli = served
    stored = [json.loads(line) for line in cli("alerts", "--camera", "lobby", "--json").stdout.splitlines()]
    assert stored, "the run raised no alert"
    newest = stored[0]
    daryl = data_dir / "faces" / "known" / "daryl"
    with sync_playwright() as p:
        browser = launch(p, chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            goto(page, base + "/")
            expect(page.get_by_role("heading", name="Log in")).to_be_visible()
            page.fill("#api_key", "gk_00000000_wrong")
            page.click("button[type=submit]")
            expect(page.locator("#login-error")).to_contain_text("invalid")
            page.screenshot(path=str(artifacts / "01-login-refused.png"))

            page.fill("#api_key", key)
            page.click("button[type=submit]")
            expect(page.get_by_role("heading", name="Cameras")).to_be_visible()
            tile = page.locator('.tile[data-camera="lobby"]')
            expect(tile).to_be_visible()
            expect(tile.locator('[data-count="tracks"]')).not_to_have_text("–", timeout=10_000)
            # The alerts feed lists the run's alerts, newest first; the tile counts the open ones.
            feed = page.locator("#alerts-feed li.alert")
            expect(feed).to_have_count(len(stored), timeout=10_000)
            first = feed.first
            expect(first).to_have_attribute("data-alert-id", str(newest["alert_id"]))
            expect(first).to_contain_text(newest["message"])
            expect(first).to_contain_text("lobby")
            expect(first.locator(".kind")).to_have_text(newest["kind"])
            expect(first.locator(".ack-state")).to_have_text("open")
            expect(tile.locator(".alert-badge")).to_have_text(
                f"{len(stored)} open alert" + ("s" if len(stored) > 1 else ""), timeout=10_000)
            expect(page.locator("#health")).to_contain_text("sqlite", timeout=10_000)
            page.screenshot(path=str(artifacts / "02-dashboard.png"), full_page=True)

            page.fill('#enroll-form input[name="name"]', "daryl")
            page.set_input_files('#enroll-form input[name="photos"]', [str(daryl / "daryl1.jpg"),
                                                                         str(daryl / "daryl3.jpg")])
            page.click('#enroll-form button[type="submit"]')
            expect(page.locator("#enroll-status")).to_contain_text("enrolled daryl: 2 photo(s)", timeout=60_000)
            row = page.locator('#identity-rows tr[data-name="daryl"]')
            expect(row).to_be_visible()
            expect(row).to_contain_text("2")
            page.screenshot(path=str(artifacts / "03-enrolled.png"), full_page=True)

            # An unknown face of the run (nobody was enrolled then) named from the unknown-faces panel.
            clusters = page.locator("#unknown-rows tr[data-cluster]")
            expect(clusters.first).to_be_visible(timeout=10_000)
            cluster = clusters.first.get_attribute("data-cluster")
            assert cluster and cluster.startswith("unknown-")
            page.once("dialog", lambda dialog: dialog.accept("Visitor One"))
            clusters.first.get_by_role("button", name="name").click()
            expect(page.locator(f'#unknown-rows tr[data-cluster="{cluster}"]')).to_have_count(0, timeout=10_000)
            expect(page.locator('#identity-rows tr[data-name="Visitor One"]')).to_be_visible(timeout=10_000)

            # A file that is not a photo is refused with a clear message, nothing enrolled.
            bad = artifacts / "notes.txt"
            bad.write_text("not a photo")
            page.fill('#enroll-form input[name="name"]', "nobody")
            page.set_input_files('#enroll-form input[name="photos"]', str(bad))
            page.click('#enroll-form button[type="submit"]')
            expect(page.locator("#enroll-status")).to_contain_text("unsupported type", timeout=20_000)
            expect(page.locator('#identity-rows tr[data-name="nobody"]')).to_have_count(0)

            tile.get_by_role("button", name="Heatmap").click()
            heat = page.locator("#heatmap-img")
            expect(heat).to_be_visible()
            page.wait_for_function("() => { const i = document.getElementById('heatmap-img');"
                                   " return i && i.complete && i.naturalWidth === 800; }", timeout=20_000)
            heat.scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts / "04-heatmap.png"), full_page=True)

            # Acknowledge the newest alert: the feed marks it, the badge counts one fewer.
            item = page.locator(f'#alerts-feed li[data-alert-id="{newest["alert_id"]}"]')
            item.get_by_role("button", name="acknowledge").click()
            expect(item.locator(".ack-state")).to_contain_text("acknowledged", timeout=10_000)
            expect(item).to_have_class("alert acked")
            expect(item.get_by_role("button", name="acknowledge")).to_have_count(0)
            left = len(stored) - 1
            badge = tile.locator(".alert-badge")
            if left:
                expect(badge).to_have_text(f"{left} open alert" + ("s" if left > 1 else ""), timeout=10_000)
            else:
                expect(badge).to_be_hidden(timeout=10_000)
            page.screenshot(path=str(artifacts / "05-alert-acknowledged.png"), full_page=True)

            # The whole page as a user finds it (docs/images/dashboard.png is this screenshot).
            page.reload()
            expect(page.locator("#alerts-feed li.alert.acked")).to_have_count(1, timeout=10_000)
            expect(tile.locator('[data-count="tracks"]')).not_to_have_text("–", timeout=10_000)
            expect(page.locator("#health")).to_contain_text("sqlite", timeout=10_000)
            tile.get_by_role("button", name="Heatmap").click()
            page.wait_for_function("() => { const i = document.getElementById('heatmap-img');"
                                   " return i && i.complete && i.naturalWidth === 800; }", timeout=20_000)
            page.screenshot(path=str(artifacts / "06-overview.png"), full_page=True)
        finally:
            browser.close()
    for name in ("01-login-refused.png", "02-dashboard.png", "03-enrolled.png", "04-heatmap.png",
                 "05-alert-acknowledged.png", "06-overview.png"):
        assert (artifacts / name).stat().st_size > 10_000, name
    # The acknowledgement is in the database (read back by the CLI).
    after = {a["alert_id"]: a for a in map(json.loads, cli("alerts", "--json").stdout.splitlines())}
    assert after[newest["alert_id"]]["acknowledged_at"] is not None
    assert sum(1 for a in after.values() if a["acknowledged_at"] is not None) == 1
    # The cluster named in the browser is an identity now, and the audit log names the dashboard's key.
    assert "Visitor One" in cli("identities").stdout
    assert "api-key:browser#" in cli("identities", "audit").stdout


def test_apikey_cli(cli: CLI) -> None:
    created = cli("apikey", "create", "--role", "viewer", "--name", "ci")
    key = created.stdout.strip()
    assert key.startswith("gk_") and "shown only now" in created.stderr
    key_id = key.split("_")[1]
    listed = cli("apikey", "list").stdout
    assert key_id in listed and "viewer" in listed and "active" in listed and key not in listed
    assert f"revoked key {key_id}" in cli("apikey", "revoke", key_id).stdout
    assert "revoked" in cli("apikey", "list").stdout
    again = cli("apikey", "revoke", key_id, check=False)
    assert again.returncode == 1 and "no active key" in again.stderr and "Traceback" not in again.stderr
    bad = cli("apikey", "create", "--role", "root", check=False)
    assert bad.returncode == 2 and "viewer, operator, admin" in bad.stderr and "Traceback" not in bad.stderr
