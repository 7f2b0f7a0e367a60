"""The review loop in a real headless Chromium (Debian ``chromium`` through Playwright) against a real
``genesis serve`` process: faces per identity segment, review actions that touch only the segment the
operator saw, undo, a merge that asks first, a blurred face that cannot be named, live updates without
a reload, axe-core on every console page, a 390 px phone layout, the 404 pages, the favicon and the
API docs (Swagger UI 5 rendering the OpenAPI 3.1 document).

The database holds real faces: crops and SFace embeddings of real photos (the real face detector and
embedder), stored as the recognize stage stores them (`save_track_faces`), on the SQLite file the
served process reads. Track 1 of run A is **split** between two people: segment 0 is Clapton (named by
recognition with a low margin), segment 1 is Lennon (unknown). Run B has a track 1 too (run-qualified
names), and a segment whose crop was not kept (privacy blur). One browser, one page session.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from genesis.identities.crops import as_jpeg, for_storage
from tests.e2e.browser import goto, launch
from tests.e2e.conftest import CLI
from tests.e2e.serving import artifact_folder
from tests.e2e.test_dashboard_browser import chromium_or_skip
from tests.ports import free_port
from tests.waiting import stop_process, wait_served

STEMS = ("clapton-1", "lennon-1", "lennon-2", "adams", "carell", "clapton-2")
RUN_A, RUN_B, RUN_C = "a1a1a1a1review", "b2b2b2b2review", "c3c3c3c3review"
PAGES = ("/", "/review", "/search", "/audit", "/identities/Clapton")


def _faces(data_dir: Path, models_dir: Path) -> dict[str, tuple[list[float], bytes]]:
    from genesis.config import load_settings
    from genesis.pipeline.model_loader import load_face_models
    from genesis.services.enroll import read_image
    from genesis.stages.recognize import face_crop_jpeg

    fd, emb = load_face_models(load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir)}))
    out = {}
    for stem in STEMS:
        image = read_image(data_dir / "faces" / "unknown" / f"{stem}.jpg")
        found = fd.detect(image)
        out[stem] = ([float(x) for x in emb.embed(image, found[:1])[0]], face_crop_jpeg(image, found[0].box))
    return out


def _store_run(url: str, run_id: str, tracks: list[tuple[int, int, str, str | None, float, bool]],
               faces: dict[str, tuple[list[float], bytes]]) -> None:
    """One run of camera "door": (track, segment, photo stem, identity, distance, crop kept) per segment."""
    from genesis.adapters.db import Repository, TrackRecord
    from genesis.identities.store import IdentityStore
    from genesis.identities.tracks import TrackFaceRecord, save_track_faces

    with Repository(url) as repo:
        repo.start_run(run_id, "door", "test", {})
        repo.save_tracks(run_id, [TrackRecord("door", t, 10 * g, 10 * g + 9, float(t + g), float(t + g) + 1, 10, who,
                                              3 if who else 0, 3, d, segment=g) for t, g, _, who, d, _ in tracks])
        records = [TrackFaceRecord("door", t, float(t + g) + 0.5, "SFace", faces[stem][0], who, d,
                                   faces[stem][1] if kept else b"", g) for t, g, stem, who, d, kept in tracks]
        save_track_faces(IdentityStore(repo), run_id, records, 0.593)
        repo.finish_run(run_id, "finished", 10, {})


@pytest.fixture()
def served(cli: CLI, data_dir: Path, models_dir: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    cli("enroll", "Clapton", str(data_dir / "faces" / "unknown" / "clapton-2.jpg"))
    faces = _faces(data_dir, models_dir)
    url = cli.env["GENESIS_DATABASE_URL"]
    _store_run(url, RUN_A, [(1, 0, "clapton-1", "Clapton", 0.55, True), (1, 1, "lennon-1", None, 0.8, True),
                            (2, 0, "adams", None, 0.9, True)], faces)
    _store_run(url, RUN_B, [(1, 0, "carell", None, 0.9, True), (2, 0, "lennon-2", None, 0.8, False)], faces)
    admin = cli("apikey", "create", "--role", "admin", "--name", "review").stdout.strip()
    port, ops = free_port(), free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "genesis.cli.main", "serve", "--port", str(port), "--ops-port",
                             str(ops)], cwd=cli.cwd, env=cli.env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_served(base, proc, tmp_path / "serve.log")
        yield {"base": base, "key": admin, "faces": faces, "url": url, "cli": cli}
    finally:
        stop_process(proc)
        log.close()


def _get(base: str, key: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(base + path, headers={"X-API-Key": key, "Accept": "text/html"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _names(url: str, run_id: str, track: int) -> dict[int, str | None]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        rows = db.execute("SELECT segment, identity_name FROM tracks WHERE run_id = ? AND track_id = ?",
                          (run_id, track)).fetchall()
    return {int(g): n for g, n in rows}


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


PIXELS_JS = """img => { const c = document.createElement('canvas'); c.width = 48; c.height = 48;
  const x = c.getContext('2d'); x.drawImage(img, 0, 0, 48, 48);
  return Array.from(x.getImageData(0, 0, 48, 48).data); }"""


WIDE_JS = """() => Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > 391)
  .slice(0, 8).map(e => `${e.tagName}.${e.className}#${e.id} ${Math.round(e.getBoundingClientRect().right)}`)"""


def _ready(page: Any) -> None:
    """The page's script ran and its live-updates stream answered (a stream never lets the network idle)."""
    page.wait_for_function("() => Number(document.body.dataset.events || 0) > 0 || "
                           "['not-found', 'search'].includes(document.body.dataset.page)", timeout=20_000)
    page.wait_for_timeout(300)


def _serious(axe: Any, page: Any) -> list[str]:
    results = axe.run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def test_review_by_segment_undo_live_updates_axe_phone(served: dict[str, Any], tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect, sync_playwright

    base, key, url, faces = served["base"], served["key"], served["url"], served["faces"]
    shots = artifact_folder(tmp_path, "review")
    axe = Axe()
    problems: dict[str, list[str]] = {}
    with sync_playwright() as p:
        browser = launch(p, chromium)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            goto(page, base + "/")
            page.fill("#api_key", key)
            page.click("button[type=submit]")
            expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()

            # -- a split track shows two different faces, one per segment --------------------------------
            goto(page, base + "/review")
            seg0 = page.locator(f'.face-card[data-run="{RUN_A}"][data-track="1"][data-segment="0"]')
            seg1 = page.locator(f'.face-card[data-run="{RUN_A}"][data-track="1"][data-segment="1"]')
            for card in (seg0, seg1):
                expect(card.locator("img.face")).to_be_visible(timeout=20_000)
                card.locator("img.face").evaluate("i => i.decode()")
            expect(seg0.locator(".who")).to_contain_text("Clapton")
            expect(seg1.locator(".who")).not_to_contain_text("Clapton")
            expect(seg1.locator(".where")).to_contain_text(f"run {RUN_A[:8]} · track 1 · segment 1")
            a = np.array(seg0.locator("img.face").evaluate(PIXELS_JS), dtype=np.float32)
            b = np.array(seg1.locator("img.face").evaluate(PIXELS_JS), dtype=np.float32)
            assert np.abs(a - b).mean() > 20, "the two segments of the split track show the same face"
            # The crops served are exactly the two people's stored faces (kept as WebP, served as JPEG).
            for card, stem in ((seg0, "clapton-1"), (seg1, "lennon-1")):
                status, data, _ = _get(base, key, str(card.locator("img.face").get_attribute("src")))
                assert status == 200 and data == as_jpeg(for_storage(faces[stem][1])), stem
                assert _decode(data).shape[2] == 3
            page.screenshot(path=str(shots / "01-review-split.png"), full_page=True)

            # -- blur: a face nobody can see cannot be named --------------------------------------------
            blurred = page.locator(f'.face-card[data-run="{RUN_B}"][data-track="2"][data-segment="0"]')
            expect(blurred.locator(".noface")).to_be_visible()
            expect(blurred.locator(".no-review")).to_contain_text("cannot be named")
            expect(blurred.locator("input")).to_have_count(0)

            # -- assign a name to segment 1 only; the message offers an undo ----------------------------
            seg1.locator("input.assign-name").fill("Lennon")
            seg1.get_by_role("button", name="new identity").click()
            flash = page.locator("#flash")
            expect(flash).to_contain_text("is now Lennon", timeout=20_000)
            assert _names(url, RUN_A, 1) == {0: "Clapton", 1: "Lennon"}
            flash.get_by_role("button", name="Undo").click()
            expect(flash).to_contain_text("undone", timeout=20_000)
            assert _names(url, RUN_A, 1) == {0: "Clapton", 1: None}
            status, _, _ = _get(base, key, "/api/identities/Lennon/photos")
            assert status == 404  # the identity the assignment created went with the undo

            # -- "not this person" on segment 0 leaves segment 1 alone; undo restores it -----------------
            expect(seg0.get_by_role("button", name="not this person")).to_be_visible(timeout=20_000)
            seg0.get_by_role("button", name="not this person").click()
            expect(flash).to_contain_text("is not Clapton", timeout=20_000)
            assert _names(url, RUN_A, 1) == {0: None, 1: None}
            flash.get_by_role("button", name="Undo").click()
            expect(flash).to_contain_text("undone", timeout=20_000)
            assert _names(url, RUN_A, 1) == {0: "Clapton", 1: None}

            # -- a merge asks first, shows both groups, and can be undone --------------------------------
            clusters = json.loads(_get(base, key, "/api/unknowns?limit=100")[1])["items"]
            lennon = next(c for c in clusters if json.loads(_get(base, key, f"/api/unknowns/{c['id']}/faces")[1])
                          ["items"][0]["segment"] == 1)
            other = next(c for c in clusters if c["id"] != lennon["id"])
            card = page.locator(f'.cluster-card[data-cluster="{lennon["id"]}"]')
            card.locator("select.merge-into").select_option(other["id"])
            card.get_by_role("button", name="merge into").click()
            confirm = card.locator(".merge-confirm")
            expect(confirm).to_be_visible()
            expect(confirm.locator("img.face")).to_have_count(2 if other["size"] == 1 else 1 + min(other["size"], 7))
            confirm.get_by_role("button", name="cancel").click()
            expect(confirm).to_have_count(0)
            assert len(json.loads(_get(base, key, "/api/unknowns?limit=100")[1])["items"]) == len(clusters)
            card.get_by_role("button", name="merge into").click()
            card.locator(".merge-confirm button.confirm-merge").click()
            expect(flash).to_contain_text(f"merged into {other['id']}", timeout=20_000)
            assert len(json.loads(_get(base, key, "/api/unknowns?limit=100")[1])["items"]) == len(clusters) - 1
            flash.get_by_role("button", name="Undo").click()
            expect(flash).to_contain_text("undone", timeout=20_000)
            after = json.loads(_get(base, key, "/api/unknowns?limit=100")[1])["items"]
            assert sorted((c["id"], c["size"], c["last_seen"]) for c in after) == \
                sorted((c["id"], c["size"], c["last_seen"]) for c in clusters)

            # -- lists update without a reload (server-sent events, authenticated like the rest) ----------
            events = int(page.evaluate("() => Number(document.body.dataset.events || 0)"))
            assert events >= 1, "no live-updates stream"
            assert _get(base, "gk_00000000_wrong", "/api/console/events")[0] == 401
            state = _state_event(base, key, lambda s: s.get("unknowns") == len(clusters))
            assert "door" in state["cameras"] and state["cameras"]["door"]["in_view"] == 0, state
            # The message says "undone" before the page has redrawn its lists: wait for the groups it restored.
            expect(page.locator(".cluster-card")).to_have_count(len(clusters), timeout=20_000)
            before = len(clusters)
            _store_run(url, RUN_C, [(7, 0, "clapton-2", None, 0.9, True)], faces)  # someone new, elsewhere
            expect(page.locator(f'.face-card[data-run="{RUN_C}"]')).to_have_count(1, timeout=20_000)
            expect(page.locator(".cluster-card")).to_have_count(before + 1, timeout=20_000)
            goto(page, base + "/")
            rows = page.locator("#identity-rows tr[data-name]")
            expect(rows).to_have_count(1, timeout=20_000)
            status, data, _ = _post_name(base, key, RUN_A, 2, "Adams")
            assert status == 200, data
            expect(rows).to_have_count(2, timeout=20_000)

            # -- the dashboard names a group (with an Undo), and refuses a group with a blurred face --------
            def group_of(run_id: str, track: int) -> str:
                for c in json.loads(_get(base, key, "/api/unknowns?limit=100")[1])["items"]:
                    items = json.loads(_get(base, key, f"/api/unknowns/{c['id']}/faces?limit=100")[1])["items"]
                    if any(f["run_id"] == run_id and f["track_id"] == track for f in items):
                        return str(c["id"])
                raise AssertionError((run_id, track))

            said: list[str] = []
            answer = {"name": "Carell"}

            def on_dialog(d: Any) -> None:
                if d.type == "prompt":
                    d.accept(answer["name"])
                else:
                    said.append(d.message)
                    d.accept()

            page.on("dialog", on_dialog)
            page.locator(f'#unknown-rows tr[data-cluster="{group_of(RUN_B, 1)}"] button.name-cluster').click()
            expect(flash).to_contain_text("is now Carell", timeout=20_000)
            expect(rows).to_have_count(3, timeout=20_000)
            flash.get_by_role("button", name="Undo").click()
            expect(flash).to_contain_text("undone", timeout=20_000)
            expect(rows).to_have_count(2, timeout=20_000)
            answer["name"] = "Someone"
            page.locator(f'#unknown-rows tr[data-cluster="{group_of(RUN_B, 2)}"] button.name-cluster').click()
            expect(page.locator("#identity-rows tr[data-name]")).to_have_count(2)
            for _ in range(50):
                if said:
                    break
                page.wait_for_timeout(200)
            assert said and "not kept" in said[0], said
            page.remove_listener("dialog", on_dialog)

            # -- the audit page: every review action and its undo ---------------------------------------
            goto(page, base + "/audit")
            expect(page.get_by_role("heading", name="Audit log", level=1)).to_be_visible()
            for action in ("assign", "reject", "merge", "undo"):
                expect(page.locator(f'#audit-rows tr[data-action="{action}"]').first).to_be_visible(timeout=20_000)

            # -- 404s, favicon, API docs ----------------------------------------------------------------
            response = goto(page, base + "/identities/nobody-here")
            assert response is not None and response.status == 404
            expect(page.get_by_role("heading", level=1)).to_contain_text("No identity named")
            response = goto(page, base + "/no/such/page")
            assert response is not None and response.status == 404
            expect(page.get_by_role("heading", name="Page not found", level=1)).to_be_visible()
            problems["/no/such/page"] = _serious(axe, page)
            assert _get(base, key, "/favicon.ico")[0] == 200
            goto(page, base + "/docs")
            expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
            expect(page.locator("body")).not_to_contain_text("Unable to render this definition")

            # -- axe-core: no serious or critical violation on any console page --------------------------
            for path in PAGES:
                goto(page, base + path)
                _ready(page)
                problems[path] = _serious(axe, page)

            # -- a phone: 390 px, nothing wider than the screen, "Log out" reachable ----------------------
            phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=context.storage_state())
            small = phone.new_page()
            for path in PAGES:
                goto(small, base + path)
                _ready(small)
                width = small.evaluate("() => document.documentElement.scrollWidth")
                assert width <= 390, (path, width, small.evaluate(WIDE_JS))
                logout = small.get_by_role("button", name="Log out")
                expect(logout).to_be_visible()
                box = logout.bounding_box()
                assert box is not None and box["x"] + box["width"] <= 390, (path, box)
                small.screenshot(path=str(shots / f"phone{path.replace('/', '-') or '-dashboard'}.png"), full_page=True)
            phone.close()
        finally:
            browser.close()
    bad = {k: v for k, v in problems.items() if v}
    assert not bad, bad


def _state_event(base: str, key: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first ``state`` event of the live-updates stream that is ``wanted`` (then the connection is closed;
    a state is at most a poll interval old, so the one after a change may come a second later)."""
    req = urllib.request.Request(base + "/api/console/events", headers={"X-API-Key": key})
    seen = []
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for raw in r:
            line = raw.decode().strip()
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "state":
                found: dict[str, Any] = json.loads(line.split(":", 1)[1])
                if wanted(found):
                    return found
                seen.append(found)
                if len(seen) > 5:
                    break
    raise AssertionError(f"no wanted state event: {seen}")


def _post_name(base: str, key: str, run_id: str, track: int, name: str) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(f"{base}/api/tracks/{run_id}/{track}/segments/0/assign", method="POST",
                                 data=json.dumps({"name": name, "create": True}).encode(),
                                 headers={"X-API-Key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _login(page: Any, base: str, key: str) -> None:
    from playwright.sync_api import expect

    goto(page, base + "/")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()


@contextmanager
def _dashboard_page(base: str, key: str) -> Iterator[Any]:
    """A logged-in page of the console in Chromium (1280 x 900), closed afterwards."""
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, chromium)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            _login(page, base, key)
            yield page
        finally:
            browser.close()


def test_identity_page_pages_its_photos_and_timeline(served: dict[str, Any]) -> None:
    """Clapton seen in more runs than a page holds, with a face of each enrolled from the console: the
    identity page shows one page of photos and of runs, "older ›" shows the rest, and the pages put
    together are what the API lists (the crops really load)."""
    chromium_or_skip()  # before the set-up: skipped at once without Chromium
    from playwright.sync_api import expect

    from genesis.adapters.db import Repository
    from genesis.identities import review
    from genesis.identities.store import IdentityStore

    base, key, url, faces = served["base"], served["key"], served["url"], served["faces"]
    page_size = 24  # console.js PAGE
    runs = [f"p{i:02d}pagingrun" for i in range(page_size + 2)]
    for run_id in runs:
        _store_run(url, run_id, [(5, 0, "clapton-1", "Clapton", 0.5, True)], faces)
    with Repository(url) as repo:
        store = IdentityStore(repo)
        for run_id in runs:
            review.assign_segment(store, run_id, 5, 0, "Clapton", "test")
    photos = json.loads(_get(base, key, "/api/identities/Clapton/photos?limit=1000")[1])
    timeline = json.loads(_get(base, key, "/api/identities/Clapton/timeline?limit=1000")[1])
    assert photos["total"] == len(runs) + 1 and timeline["total"] == len(runs) + 1  # + the enrolled photo, RUN_A
    assert [r["run_id"] for r in timeline["items"]][:2] == [runs[-1], runs[-2]]  # newest first

    with _dashboard_page(base, key) as page:
        goto(page, base + "/identities/Clapton")
        expect(page.locator("body[data-loaded='1']")).to_have_count(1, timeout=30_000)
        shown = page.locator("#identity-photos img.face")
        heads = page.locator("#identity-timeline li.run-head")
        photo_pager, run_pager = page.locator("#photos-pager"), page.locator("#timeline-pager")

        def srcs() -> list[str]:
            return [str(s) for s in shown.evaluate_all("l => l.map(i => i.getAttribute('src'))")]

        def run_ids() -> list[str]:
            return [str(r) for r in heads.evaluate_all("l => l.map(h => h.dataset.run)")]

        expect(shown).to_have_count(page_size)
        expect(photo_pager).to_be_visible()
        expect(photo_pager).to_contain_text(f"1–{page_size} of {photos['total']}")
        first = srcs()
        photo_pager.get_by_role("button", name="older ›").click()
        expect(shown).to_have_count(photos["total"] - page_size)
        expect(photo_pager).to_contain_text(f"{page_size + 1}–{photos['total']} of {photos['total']}")
        expect(photo_pager.get_by_role("button", name="older ›")).to_be_disabled()
        assert first + srcs() == [f["face"] for f in photos["items"]]
        shown.last.evaluate("i => i.decode()")  # a crop of the second page is a real image
        assert shown.last.evaluate("i => i.naturalWidth") > 0
        photo_pager.get_by_role("button", name="‹ newer").click()
        expect(shown).to_have_count(page_size)
        assert srcs() == first

        expect(heads).to_have_count(page_size)
        expect(run_pager).to_contain_text(f"1–{page_size} of {timeline['total']}")
        newest = run_ids()
        run_pager.get_by_role("button", name="older ›").click()
        expect(heads).to_have_count(timeline["total"] - page_size)
        assert newest + run_ids() == [r["run_id"] for r in timeline["items"]]
        assert RUN_A in run_ids()  # the oldest run, on the last page
        expect(page.locator("#identity-photos img.face")).to_have_count(page_size)  # the photos kept their page


def test_a_new_camera_gets_its_tile_without_a_reload(served: dict[str, Any]) -> None:
    """The dashboard is open; a run starts on a camera nobody has seen: its tile appears (the server's
    tile markup, its id as text), its counters follow the run, its live view and heatmap button work,
    and the page was never reloaded."""
    chromium_or_skip()  # before the set-up: skipped at once without Chromium
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    from genesis.adapters.db import Repository, TrackRecord

    base, key, url = served["base"], served["key"], served["url"]
    camera, run_id = "a-porch_2.b", "newcamerarun1"  # sorts before "door"
    with _dashboard_page(base, key) as page:
        _ready(page)
        tiles = page.locator("#cameras .tile")
        expect(tiles).to_have_count(1)
        rendered = tiles.first.evaluate("t => t.outerHTML")
        page.evaluate("() => { window.sameDocument = true; }")

        with Repository(url) as repo:
            repo.start_run(run_id, camera, "test", {})
            tile = page.locator(f'#cameras .tile[data-camera="{camera}"]')
            expect(tile).to_be_visible(timeout=20_000)
            expect(tile.locator('[data-count="status"]')).to_have_text("running", timeout=20_000)
            repo.save_tracks(run_id, [TrackRecord(camera, 1, 0, 9, 0.0, 1.0, 10, None, 0, 0, None),
                                      TrackRecord(camera, 2, 0, 9, 0.0, 1.0, 10, None, 0, 0, None)])
            repo.finish_run(run_id, "finished", 10, {})
        expect(tile.locator('[data-count="status"]')).to_have_text("finished", timeout=20_000)
        expect(tile.locator('[data-count="tracks"]')).to_have_text("2", timeout=20_000)
        assert page.evaluate("() => window.sameDocument === true"), "the page was reloaded"
        assert [t.get_attribute("data-camera") for t in tiles.all()] == [camera, "door"]

        # The server's markup, filled in as text: its name is its id (a camera first seen in a run is named
        # after it; ids cannot hold markup, names can only come from the configuration, rendered by Jinja).
        expect(tile.locator("h3 .cam-name")).to_have_text(camera)
        assert tile.locator("h3 .cam-name").evaluate("n => n.children.length") == 0
        expect(tile.locator("h3 .cam-id")).to_have_count(0)
        assert tile.locator("img.frame").get_attribute("alt") == f"last stored snapshot of {camera}"
        assert str(tile.locator("img.frame").get_attribute("src")).startswith(f"/api/cameras/{camera}/frame.jpg")
        assert tile.locator("canvas.live").get_attribute("aria-label") == f"live view of {camera}"
        new = tile.evaluate("t => t.outerHTML")
        strip = lambda html: sorted(re.findall(r"<(\w+)[ >]", html))  # noqa: E731
        assert strip(new) == strip(rendered)  # the same elements as a rendered tile
        expect(tile.locator(".live-status")).to_contain_text("no live frame yet", timeout=20_000)
        expect(page.locator("#no-cameras")).to_be_hidden()
        tile.get_by_role("button", name="Heatmap").click()
        expect(page.locator("#heatmap-camera")).to_have_text(camera)
        bad = _serious(Axe(), page)
        assert not bad, bad


def test_a_change_made_before_the_stream_opens_is_shown(served: dict[str, Any]) -> None:
    """The dashboard read its identity list, then a name was given before its live-updates stream delivered a
    first state (a busy server, a slow network): the stream's first state must still refresh the list. The
    stream is held off here by failing its requests until the name is given (EventSource then retries)."""
    chromium_or_skip()
    from playwright.sync_api import expect

    base, key = served["base"], served["key"]
    with _dashboard_page(base, key) as page:
        page.route("**/api/console/events", lambda route: route.abort())
        goto(page, base + "/")
        rows = page.locator("#identity-rows tr[data-name]")
        expect(rows).to_have_count(1, timeout=20_000)  # Clapton
        assert int(page.evaluate("() => Number(document.body.dataset.events || 0)")) == 0
        status, data, _ = _post_name(base, key, RUN_A, 2, "Adams")
        assert status == 200, data
        page.unroute("**/api/console/events")
        page.wait_for_function("() => Number(document.body.dataset.events || 0) > 0", timeout=30_000)
        expect(rows).to_have_count(2, timeout=20_000)
