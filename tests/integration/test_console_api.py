"""The operator's console API on a real PostgreSQL database and real Redis, over real embedded runs.

A real embedded run (real detector, tracker, face models on a real video; nobody enrolled, so every
face is clustered as unknown) is watched through the live-view endpoint while it runs; then the
faces, the review actions, the identity summary and forget are exercised through HTTP, and the
answers are compared with the stored rows and with `report.json`'s own function.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from sqlalchemy import text

from genesis.adapters.db import Repository
from genesis.adapters.frame_store import decode_jpeg
from genesis.adapters.video import VideoSource
from genesis.config import Settings
from genesis.domain import FrameRef
from genesis.identities.crops import as_jpeg, for_storage
from genesis.identities.crypto import KEY_ENV, BiometricCipher, is_encrypted
from genesis.pipeline.embedded import run_embedded
from genesis.pipeline.model_loader import load_models
from genesis.pipeline.report import build_results
from genesis.services import live
from genesis.stages.camera import CameraState
from genesis.stages.detect import detect_frame
from tests.integration.workers import fresh_postgres_database
from tests.services import redis_url

REDIS_DB = 10
CAMERA = "hall"


@pytest.fixture(scope="module")
def key_env() -> Iterator[str]:
    """Biometric data encrypted at rest for the whole module (the API and the runs share the key)."""
    import os

    old = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = BiometricCipher.new_key()
    yield os.environ[KEY_ENV]
    if old is None:
        os.environ.pop(KEY_ENV, None)
    else:
        os.environ[KEY_ENV] = old


@pytest.fixture(scope="module")
def console_settings(key_env: str, models_dir: Path) -> Iterator[Settings]:
    redis.Redis.from_url(redis_url(REDIS_DB)).flushdb()
    with fresh_postgres_database() as url:
        yield Settings.model_validate({
            "database_url": url, "redis_url": redis_url(REDIS_DB), "broker_url": redis_url(REDIS_DB),
            "models": {"dir": str(models_dir)},
            "identities": {"unknowns_without_gallery": True},
            "cameras": [{"id": CAMERA,
                         "zones": [{"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
                         "lines": [{"name": "mid", "start": [0.5, 0], "end": [0.5, 1], "in_name": "east",
                                    "out_name": "west"}]}],
        })


@pytest.fixture(scope="module")
def served_settings(console_settings: Settings) -> Settings:
    """What the API of this module serves (tests/integration/conftest.py: repo, keys, app, client)."""
    return console_settings


@pytest.fixture(scope="module")
def key_prefix() -> str:
    return "console"


def h(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"X-API-Key": keys[role]}


@pytest.fixture(scope="module")
def watched_run(console_settings: Settings, client: TestClient, keys: dict[str, str],
                data_dir: Path) -> dict[str, Any]:
    """A real embedded run while a client polls the camera's live frame (as the dashboard does)."""
    v = h(keys, "viewer")
    first = client.get(f"/api/cameras/{CAMERA}/live/frame", headers=v)
    assert first.status_code == 200 and first.json()["available"] is False, first.text
    video = str(data_dir / "video" / "opencv4nodejs_people.mp4")
    out: dict[str, Any] = {}

    def work() -> None:
        out["run"] = run_embedded(console_settings, video, console_settings.camera(CAMERA), stride=3, max_frames=40)

    thread = threading.Thread(target=work)
    t0 = time.monotonic()
    thread.start()
    polls: list[dict[str, Any]] = []
    while thread.is_alive():
        r = client.get(f"/api/cameras/{CAMERA}/live/frame", headers=v)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        polls.append(r.json())
        time.sleep(0.25)
    thread.join()
    out["elapsed"] = time.monotonic() - t0
    out["polls"] = polls
    return out


def test_live_view_while_an_embedded_run_is_watched(watched_run: dict[str, Any], repo: Repository,
                                                    client: TestClient, keys: dict[str, str]) -> None:
    run_id = watched_run["run"].run_id
    run = repo.run(run_id)
    assert run is not None
    frames = [p for p in watched_run["polls"] if p["image"]]
    seqs = sorted({p["frame"]["seq"] for p in frames})
    assert len(seqs) >= 3, [p.get("frame") for p in watched_run["polls"]]
    # At most two a second (console.live_interval_s = 0.5), and the run's own frames.
    assert len(seqs) <= 2 * watched_run["elapsed"] + 2
    # The database keeps sampled trajectories (issue 21): a live box is compared with the stored point of
    # the same frame where there is one; every live track is a stored one.
    stored = {(s.seq, s.track_id): s.box for s in repo.points(run_id)}
    tracks = {t for _, t in stored}
    boxes = 0
    for p in frames:
        meta = p["frame"]
        assert meta["run_id"] == run_id and meta["camera_id"] == CAMERA
        assert (meta["width"], meta["height"]) == (run.meta["width"], run.meta["height"])
        assert p["image"].startswith("data:image/jpeg;base64,")
        image = decode_jpeg(base64.b64decode(p["image"].split(",", 1)[1]))
        assert image.shape[1] <= 960 and image.shape[0] > 0
        for person in meta["persons"]:
            # The boxes are the sightings of that frame (drawn by the browser, not on the image).
            assert person["track_id"] in tracks, person
            if (meta["seq"], person["track_id"]) in stored:
                assert np.allclose(person["box"], stored[(meta["seq"], person["track_id"])], atol=0.06), person
            boxes += 1
    assert boxes > 0
    # The run has ended: its last live image (and who was in it) is not kept; the camera says since when.
    with repo.engine.connect() as conn:
        jpeg, meta = conn.execute(text("SELECT jpeg, meta FROM live_frames WHERE camera_id = :c"), {"c": CAMERA}).one()
    assert bytes(jpeg) == b"" and meta["persons"] == [] and meta["run_id"] == run_id and meta["seq"] >= max(seqs)
    r = client.get(f"/api/cameras/{CAMERA}/live/frame", headers=h(keys, "viewer")).json()
    assert r["available"] is True and r["stale"] is True and r["image"] is None and r["at"] == meta["at"].replace(
        "+00:00", "Z")


def test_distributed_backend_publishes_to_redis_only_while_watched(console_settings: Settings, data_dir: Path,
                                                                  client: TestClient, keys: dict[str, str]) -> None:
    """The sequencer's backend: real frames through the real stages, published to Redis with a TTL."""
    r = redis.Redis.from_url(console_settings.redis_url)
    models = load_models(console_settings)
    cam = "dist-cam"
    camera = console_settings.camera(cam)
    publisher = live.LivePublisher.from_settings(console_settings, live.RedisLive(r))
    video = VideoSource(str(data_dir / "video" / "opencv4nodejs_people.mp4"))
    published: list[bool] = []
    watched_at = 0.0
    try:
        state = None
        for i, raw in enumerate(video.frames(stride=3, max_frames=14)):
            if state is None:
                state = CameraState(console_settings, camera, raw.image.shape[1], raw.image.shape[0], 25.0, None, 3)
            ref = FrameRef(cam, raw.seq, raw.ts, f"k{raw.seq}", raw.image.shape[1], raw.image.shape[0])
            outcome = state.process(detect_frame(models.detector, ref, raw.image), raw.image)
            if i == 4:  # somebody opens the camera from here on
                live.mark_watched(cam, 5.0, None, r)
                watched_at = time.monotonic()
            published.append(publisher.offer("run-x", outcome, state, raw.image))
            time.sleep(0.1)
    finally:
        video.close()
    watching = time.monotonic() - watched_at
    assert published[:4] == [False] * 4 and any(published[4:])
    assert sum(published) <= 2 * watching + 1  # the gate shared by the workers: at most one per 0.5 s
    assert 0 < r.ttl(live.frame_key(cam)) <= live.REDIS_FRAME_TTL_S
    got = live.read_latest(cam, None, r)
    assert got is not None and got.meta["run_id"] == "run-x" and got.meta["camera_id"] == cam
    # Once the frame has expired, the time of the last one is still known ("no frame since ...").
    r.delete(live.frame_key(cam))
    gone = live.read_latest(cam, None, r)
    assert gone is not None and gone.jpeg == b"" and gone.at == got.at and gone.meta["persons"] == []
    assert decode_jpeg(got.jpeg).shape[2] == 3


def _faces(repo: Repository, run_id: str) -> list[Any]:
    with repo.engine.connect() as conn:
        return list(conn.execute(text("SELECT track_id, cluster_id, crop, segment FROM track_faces WHERE run_id = :r "
                                      "ORDER BY track_id, segment"), {"r": run_id}).all())


def test_face_crops_are_encrypted_and_never_served_without_a_key(watched_run: dict[str, Any], repo: Repository,
                                                                 client: TestClient, keys: dict[str, str]) -> None:
    run_id = watched_run["run"].run_id
    faces = _faces(repo, run_id)
    assert len(faces) >= 2 and all(f[2] is not None for f in faces)
    cipher = BiometricCipher.from_env()
    for track_id, _, crop, segment in faces:
        raw = bytes(crop)
        assert is_encrypted(raw) and b"\xff\xd8\xff" not in raw  # ciphertext at rest, no JPEG marker
        url = f"/api/tracks/{run_id}/{track_id}/segments/{segment}/face.jpg"
        # From a client address and with a key id of its own: the failed-authentication allowance is per client
        # and per key id.
        stranger = TestClient(client.app, raise_server_exceptions=False, client=(f"10.9.0.{track_id % 250 + 1}", 1))
        for headers in ({}, {"X-API-Key": f"gk_{track_id:08x}_nope"}, {"X-API-Key": "not-a-key"}):
            r = stranger.get(url, headers=headers)
            assert r.status_code == 401 and r.headers["content-type"].startswith("application/json"), r.text
        r = client.get(url, headers=h(keys, "viewer"))
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert r.headers["cache-control"] == "no-store"
        assert r.content == as_jpeg(cipher.decrypt(raw))  # kept as WebP, served as JPEG
        image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and max(image.shape[:2]) <= 160
    assert client.get(f"/api/tracks/{run_id}/999999/face.jpg", headers=h(keys, "viewer")).status_code == 404
    assert client.get(f"/api/tracks/{run_id}/{faces[0][0]}/segments/999/face.jpg",
                      headers=h(keys, "viewer")).status_code == 404
    assert client.get("/api/photos/999999/face.jpg", headers=h(keys, "viewer")).status_code == 404
    assert TestClient(client.app, client=("10.9.1.1", 1)).get("/api/photos/1/face.jpg").status_code == 401


def test_review_assign_merge_identity_page_reject_forget(watched_run: dict[str, Any], repo: Repository,
                                                         client: TestClient, keys: dict[str, str],
                                                         console_settings: Settings, data_dir: Path) -> None:
    run_id = watched_run["run"].run_id
    v, op, adm = h(keys, "viewer"), h(keys, "operator"), h(keys, "admin")
    faces = _faces(repo, run_id)
    clusters = client.get("/api/unknowns?limit=1000", headers=v).json()["items"]
    assert len(clusters) >= 2
    # Each cluster's faces, the most typical first; the face URLs are the stored crops.
    for u in clusters:
        page = client.get(f"/api/unknowns/{u['id']}/faces", headers=v).json()
        assert page["total"] == u["size"] == len(page["items"])
        dists = [f["centroid_distance"] for f in page["items"]]
        assert dists == sorted(dists) and all(f["face"] and f["unknown"] == u["id"] for f in page["items"])
    assert client.get("/api/unknowns/unknown-999999/faces", headers=v).status_code == 404

    # The review queue: with nobody enrolled, every stored face of the runs is unrecognised.
    with repo.engine.connect() as conn:
        stored = int(conn.execute(text("SELECT count(*) FROM track_faces")).scalar_one())
    queue = client.get("/api/review?limit=1000", headers=v).json()
    assert queue["total"] == len(queue["items"]) == stored
    assert {i["reason"] for i in queue["items"]} == {"unrecognised"}

    # Merge two clusters.
    a, b = clusters[0], clusters[1]
    url = f"/api/unknowns/{a['id']}/merge"
    assert client.post(url, headers=v, json={"into": b["id"]}).status_code == 403
    for body, status in (({"into": a["id"]}, 409), ({"into": "unknown-999999"}, 404), ({"into": "x"}, 422)):
        assert client.post(url, headers=op, json=body).status_code == status, body
    r = client.post(url, headers=op, json={"into": b["id"]})
    assert r.status_code == 200 and {k: r.json()[k] for k in ("cluster", "merged", "size")} == {
        "cluster": b["id"], "merged": a["id"], "size": a["size"] + b["size"]}
    assert client.get(f"/api/unknowns/{a['id']}/faces", headers=v).status_code == 404
    merged = client.get(f"/api/unknowns/{b['id']}/faces", headers=v).json()
    assert merged["total"] == a["size"] + b["size"]
    # A merge keeps the real last-seen time (the later of the two), not the time of the merge.
    after = {u["id"]: u for u in client.get("/api/unknowns?limit=1000", headers=v).json()["items"]}
    assert after[b["id"]]["last_seen"] == max(a["last_seen"], b["last_seen"])
    assert after[b["id"]]["first_seen"] == min(a["first_seen"], b["first_seen"])
    # Undo restores both clusters as they were; a second undo is refused; then merge again.
    entry = r.json()["entry"]
    assert client.post(f"/api/audit/{entry}/undo", headers=v).status_code == 403
    u = client.post(f"/api/audit/{entry}/undo", headers=op)
    assert u.status_code == 200 and u.json()["undone"] == entry, u.text
    back = {x["id"]: x for x in client.get("/api/unknowns?limit=1000", headers=v).json()["items"]}
    assert (back[a["id"]], back[b["id"]]) == (a, b)
    assert client.post(f"/api/audit/{entry}/undo", headers=op).status_code == 409
    assert client.post("/api/audit/999999/undo", headers=op).status_code == 404
    assert client.post(f"/api/audit/{u.json()['entry']}/undo", headers=op).status_code == 409  # an undo itself
    assert client.post(url, headers=op, json={"into": b["id"]}).status_code == 200

    # Assign one face of the merged cluster to a new identity, then another to it.
    first, second = merged["items"][0], merged["items"][1]
    assert first["run_id"] == second["run_id"] == run_id  # one run so far
    assign = f"/api/tracks/{run_id}/{first['track_id']}/segments/{first['segment']}/assign"
    assert client.post(assign, headers=v, json={"name": "Visitor", "create": True}).status_code == 403
    for body, status in (({"name": "Visitor", "create": False}, 404), ({"name": "unknown-4", "create": True}, 422),
                         ({"name": "", "create": True}, 422), ({"name": "a\x00b", "create": True}, 422)):
        assert client.post(assign, headers=op, json=body).status_code == status, body
    assert client.post(f"/api/tracks/{run_id}/999999/segments/0/assign", headers=op,
                       json={"name": "Visitor", "create": True}).status_code == 404
    r = client.post(assign, headers=op, json={"name": "Visitor", "create": True})
    assert r.status_code == 200 and {k: r.json()[k] for k in ("run_id", "track_id", "segment", "identity")} == {
        "run_id": run_id, "track_id": first["track_id"], "segment": first["segment"], "identity": "Visitor"}
    # Undo: the identity it created goes, the face is back in its cluster; then assign again.
    assert client.post(f"/api/audit/{r.json()['entry']}/undo", headers=op).status_code == 200
    assert client.get("/api/identities/Visitor/photos", headers=v).status_code == 404
    assert client.get(f"/api/unknowns/{b['id']}/faces", headers=v).json()["total"] == merged["total"]
    assert client.post(assign, headers=op, json={"name": "Visitor", "create": True}).status_code == 200
    second_url = f"/api/tracks/{run_id}/{second['track_id']}/segments/{second['segment']}/assign"
    assert client.post(second_url, headers=op, json={"name": "Visitor", "create": True}).status_code == 409
    assert client.post(second_url, headers=op, json={"name": "Visitor"}).status_code == 200
    left = client.get(f"/api/unknowns/{b['id']}/faces", headers=v)
    if merged["total"] == 2:
        assert left.status_code == 404, left.text
    else:
        assert left.json()["total"] == merged["total"] - 2, (left.text, merged)
    photos = client.get("/api/identities/Visitor/photos", headers=v).json()["items"]
    assert sorted(p["face"] for p in photos) == sorted(
        f"/api/tracks/{run_id}/{f['track_id']}/segments/{f['segment']}/face.jpg" for f in (first, second))
    # Named by the operator, not by recognition: not a low-margin face to review.
    queue = client.get("/api/review?limit=1000", headers=v).json()
    assert queue["total"] == stored - 2

    # The identity page's numbers are the run's report.json entry for the identity.
    summary = client.get("/api/identities/Visitor/summary", headers=v).json()
    run = repo.run(run_id)
    assert run is not None
    entry = next(i for i in build_results(repo, run, console_settings.camera(CAMERA))["identities"]
                 if i["name"] == "Visitor")
    assert summary["runs"][0]["report"] == entry
    assert (summary["visits"], summary["dwell_s"], summary["crossings"], summary["sightings"]) == \
        (entry["visits"], entry["dwell_s"], entry["crossings"], entry["sightings"])
    assert summary["cameras"] == [CAMERA] and summary["tracks"] == 2 and summary["runs_total"] == 1
    assert summary["first_seen"] <= summary["last_seen"]
    tracks = client.get(f"/api/tracks?identity=Visitor&run={run_id}", headers=v).json()
    assert sorted(t["track_id"] for t in tracks["items"]) == sorted(entry["tracks"])
    assert all(ev["face"] for ev in summary["runs"][0]["timeline"])
    assert client.get("/api/identities/nobody/summary", headers=v).status_code == 404

    # "Not this person" on one of them.
    r = client.post(f"/api/tracks/{run_id}/{second['track_id']}/segments/{second['segment']}/reject", headers=op)
    assert r.status_code == 200 and r.json()["identity"] == "Visitor"

    # Enroll a photo too: its kept crop is listed and served.
    daryl = data_dir / "faces" / "known" / "daryl" / "daryl1.jpg"
    r = client.post("/api/identities", headers=op, data={"name": "daryl"},
                    files=[("photos", (daryl.name, daryl.read_bytes(), "image/jpeg"))])
    assert r.status_code == 201, r.text
    kept = client.get("/api/identities/daryl/photos", headers=v).json()["items"]
    assert len(kept) == 1 and kept[0]["id"] and kept[0]["photo"]
    assert client.get(kept[0]["face"], headers=v).headers["content-type"] == "image/jpeg"

    # The audit log has every console action with the operator's key.
    audit = client.get("/api/audit?limit=1000", headers=adm).json()["items"]
    acts = {(x["action"], x["target"]): x["actor"] for x in audit}
    assert acts[("merge", b["id"])].startswith("api-key:console-operator#")
    assert acts[("assign", "Visitor")].startswith("api-key:console-operator#")
    assert acts[("reject", "Visitor")].startswith("api-key:console-operator#")

    # Forget: the crops go with the faces.
    for name in ("Visitor", "daryl"):
        assert client.delete(f"/api/identities/{name}", headers=adm).status_code == 204
    assert client.get(first["face"], headers=v).status_code == 404
    assert client.get(kept[0]["face"], headers=v).status_code == 404
    with repo.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM face_photos")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM track_faces WHERE run_id = :r AND track_id = :t"),
                            {"r": run_id, "t": first["track_id"]}).scalar_one() == 0
    assert len(_faces(repo, run_id)) < len(faces)
    with repo.engine.connect() as conn:  # the live view's last frame may have shown them: gone too
        assert conn.execute(text("SELECT count(*) FROM live_frames")).scalar_one() == 0


def test_nothing_is_published_when_nobody_watches(watched_run: dict[str, Any], console_settings: Settings,
                                                  client: TestClient, keys: dict[str, str], data_dir: Path,
                                                  repo: Repository) -> None:
    time.sleep(console_settings.console.live_watch_s + 0.5)  # the watch flag of the polls above ran out
    query = text("SELECT at, meta FROM live_frames WHERE camera_id = :c")
    with repo.engine.connect() as conn:
        before = conn.execute(query, {"c": CAMERA}).all()
    video = str(data_dir / "video" / "opencv4nodejs_people.mp4")
    quiet = run_embedded(console_settings, video, console_settings.camera(CAMERA), stride=3, max_frames=6)
    with repo.engine.connect() as conn:
        after = conn.execute(query, {"c": CAMERA}).all()
    assert after == before and all(row[1]["run_id"] != quiet.run_id for row in after)
    r = client.get(f"/api/cameras/{CAMERA}/live/frame", headers=h(keys, "viewer")).json()
    assert r["image"] is None and r["stale"] is True
    assert client.get("/api/cameras/nowhere/live/frame", headers=h(keys, "viewer")).status_code == 404
    assert client.get(f"/api/cameras/{CAMERA}/live/frame").status_code == 401


def test_dashboard_pages_need_a_session(client: TestClient, keys: dict[str, str], watched_run: dict[str, Any],
                                        repo: Repository) -> None:
    from tests.integration.test_api import dashboard_login

    for path in ("/review", "/search", "/identities/somebody", "/audit"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", path
    c = TestClient(client.app, raise_server_exceptions=False)
    assert c.get("/review", headers={"Cookie": f"genesis_session={keys['viewer']}"},
                 follow_redirects=False).status_code == 303  # a raw key is no session
    assert dashboard_login(c, keys["operator"]).status_code == 303
    for path, status in (("/review", 200), ("/search", 200), ("/audit", 403),
                         ("/identities/%3Cimg%20src%3Dx%20onerror%3D%22alert(1)%22%3E", 404)):
        r = c.get(path)
        assert r.status_code == status and r.headers["cache-control"] == "no-store", path
        assert "<img src=x" not in r.text
    # An identity nobody has: the 404 page names it, escaped.
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in r.text and "No identity named" in r.text
    # A browser's unknown address: the 404 page (no key or session named); an API client's: the JSON error.
    r = c.get("/no/such/page", headers={"Accept": "text/html"})
    assert r.status_code == 404 and "Page not found" in r.text and "text/html" in r.headers["content-type"]
    r = c.get("/api/no/such/route", headers={"Accept": "text/html"})
    assert r.status_code in (401, 404) and "error" in r.json()
    assert c.get("/favicon.ico").headers["content-type"].startswith("image/svg+xml")
    # Crops load with the session (as <img> does); a change needs the page's CSRF token.

    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', c.get("/review").text)
    assert token and token.group(1)
    with repo.engine.connect() as conn:
        track = conn.execute(text("SELECT track_id FROM track_faces WHERE run_id = :r AND crop IS NOT NULL"),
                             {"r": watched_run["run"].run_id}).scalars().first()
    assert c.get(f"/api/tracks/{watched_run['run'].run_id}/{track}/face.jpg").headers["content-type"] == "image/jpeg"
    url = f"/api/tracks/{watched_run['run'].run_id}/{track}/assign"
    assert c.post(url, json={"name": "Nobody Yet"}).status_code == 403
    r = c.post(url, json={"name": "Nobody Yet"}, headers={"X-CSRF-Token": token.group(1)})
    assert r.status_code == 404 and "no identity" in r.json()["error"]["message"]


def test_retention_purge_removes_the_crops(watched_run: dict[str, Any], repo: Repository, client: TestClient,
                                          keys: dict[str, str]) -> None:
    """`genesis identities purge`: the faces of unrecognised tracks past the retention go, crops with them."""
    from datetime import timedelta

    from genesis.adapters.db.tables import utcnow
    from genesis.identities.store import IdentityStore
    from genesis.identities.tracks import purge

    with repo.engine.connect() as conn:
        kept = conn.execute(text("SELECT run_id, track_id FROM track_faces WHERE crop IS NOT NULL")).all()
    assert kept
    urls = [f"/api/tracks/{r}/{t}/face.jpg" for r, t in kept]
    assert all(client.get(u, headers=h(keys, "viewer")).status_code == 200 for u in urls)
    counts = purge(IdentityStore(repo), 1, "test", now=utcnow() + timedelta(days=2))
    assert counts["track_faces"] == len(kept)  # nobody is named any more: every face is an unknown's
    assert all(client.get(u, headers=h(keys, "viewer")).status_code == 404 for u in urls)
    with repo.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM track_faces")).scalar_one() == 0


# -- schemathesis over the console's operations -----------------------------------------------

SCHEMA_EXAMPLES = 12


def test_no_server_error_on_generated_console_requests(app: FastAPI, watched_run: dict[str, Any],
                                                       keys: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    console = [op for op in operations if "console" in (op.definition.raw.get("tags") or [])]
    labels = {f"{op.method.upper()} {op.path}" for op in console}
    assert labels == {
        "GET /api/tracks/{run}/{track}/face.jpg", "GET /api/photos/{photo}/face.jpg",
        "GET /api/identities/{name}/photos", "GET /api/identities/{name}/summary",
        "GET /api/identities/{name}/timeline", "GET /api/unknowns/{cluster}/faces",
        "POST /api/unknowns/{cluster}/merge", "GET /api/review", "POST /api/tracks/{run}/{track}/assign",
        "GET /api/cameras/{camera}/live/frame", "GET /api/tracks/{run}/{track}/segments/{segment}/face.jpg",
        "POST /api/tracks/{run}/{track}/segments/{segment}/assign",
        "POST /api/tracks/{run}/{track}/segments/{segment}/reject", "POST /api/audit/{entry}/undo"}, labels
    statuses: dict[int, int] = {}
    for operation in console:
        @given(case=operation.as_strategy())
        @settings(max_examples=SCHEMA_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def check(case: Any) -> None:
            response = case.call(headers={"X-API-Key": keys["admin"]})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            where = (case.method, case.formatted_path, case.query, response.text[:300])
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}, where

        check()
    print("schemathesis statuses", sorted(statuses.items()))
    assert any(200 <= code < 300 for code in statuses) and any(400 <= code < 500 for code in statuses)


# -- an identity's photos and timeline, page by page -------------------------------------------------


def test_identity_photos_and_timeline_page(repo: Repository, client: TestClient, keys: dict[str, str],
                                           app: FastAPI) -> None:
    """Five runs, each with a track segment of "Pager" whose face was enrolled from the console: the
    photos and the timeline come in pages (limit/offset, `total`), the pages put together are the whole
    list in order, and bad bounds are 422 (documented in the OpenAPI document)."""
    from genesis.adapters.db import TrackRecord
    from genesis.identities import review
    from genesis.identities.store import IdentityStore
    from genesis.identities.tracks import TrackFaceRecord, save_track_faces

    store = IdentityStore(repo)
    rng = np.random.default_rng(7)
    ok, crop = cv2.imencode(".jpg", rng.integers(0, 255, (40, 32, 3), dtype=np.uint8))
    assert ok
    runs = [f"pager{i}run" for i in range(5)]
    for i, run_id in enumerate(runs):
        repo.start_run(run_id, CAMERA, "test", {})
        repo.save_tracks(run_id, [TrackRecord(CAMERA, 3, 0, 9, 0.0, 1.0, 10, None, 0, 3, 0.8)])
        vector = rng.normal(size=128)
        save_track_faces(store, run_id, [TrackFaceRecord(CAMERA, 3, 0.5, "SFace", [float(x) for x in vector], None,
                                                         0.8, bytes(crop))], 0.593)
        repo.finish_run(run_id, "finished", 10, {})
        review.assign_segment(store, run_id, 3, 0, "Pager", "test", create=i == 0)
    v = h(keys, "viewer")

    def pages(path: str, size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        whole = client.get(f"{path}?limit=1000", headers=v).json()
        got: list[dict[str, Any]] = []
        for offset in range(0, whole["total"] + size, size):
            r = client.get(f"{path}?limit={size}&offset={offset}", headers=v)
            assert r.status_code == 200, r.text
            page = r.json()
            assert (page["total"], page["limit"], page["offset"]) == (whole["total"], size, offset)
            assert len(page["items"]) == max(0, min(size, whole["total"] - offset))
            got += page["items"]
        return whole["items"], got

    whole, paged = pages("/api/identities/Pager/photos", 2)
    assert len(whole) == 5 and paged == whole
    assert sorted(p["face"] for p in whole) == sorted(f"/api/tracks/{r}/3/segments/0/face.jpg" for r in runs)
    assert client.get(whole[4]["face"], headers=v).content == as_jpeg(for_storage(bytes(crop)))  # WebP at rest
    assert client.get("/api/identities/Pager/photos", headers=v).json()["limit"] == 100  # the default

    whole, paged = pages("/api/identities/Pager/timeline", 2)
    assert [r["run_id"] for r in whole] == runs[::-1]  # newest first
    assert paged == whole
    assert all(r["tracks"] == [{"track_id": 3, "label": f"run {r['run_id'][:8]} · track 3", "segment": 0,
                                "face": f"/api/tracks/{r['run_id']}/3/segments/0/face.jpg"}] for r in whole)
    summary = client.get("/api/identities/Pager/summary", headers=v).json()
    assert summary["runs_total"] == 5 and summary["runs"] == whole and summary["tracks"] == 5
    assert client.get("/api/identities/Pager/timeline", headers=v).json()["limit"] == 20

    for path in ("/api/identities/Pager/photos", "/api/identities/Pager/timeline"):
        for query in ("limit=0", "limit=1001", "offset=-1", "offset=2147483649", "limit=x", "offset=1.5"):
            r = client.get(f"{path}?{query}", headers=v)
            assert r.status_code == 422 and set(r.json()) == {"error"}, (path, query, r.text)
        assert client.get(path.replace("Pager", "Nobody"), headers=v).status_code == 404
        assert TestClient(app, client=("10.9.1.2", 1)).get(path).status_code == 401
    spec = client.get("/openapi.json").json()["paths"]
    for path in ("/api/identities/{name}/photos", "/api/identities/{name}/timeline"):
        params = {p["name"]: p["schema"] for p in spec[path]["get"]["parameters"] if p["in"] == "query"}
        assert params["limit"]["minimum"] == 1 and params["limit"]["maximum"] == 1000, params
        assert params["offset"]["minimum"] == 0, params
