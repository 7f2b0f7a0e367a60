"""MQTT from a real embedded run (YOLO, ByteTrack, YuNet, SFace) to a real Mosquitto subscriber.

The clip: an enrolled person (daryl, a photo not used to enroll him) and a stranger walk, one after
the other, from the left to the right of the frame, across a vertical line, inside a zone that
covers the frame; daryl is on the watch list. A subscriber must see every event kind with the
documented payload (docs/mqtt.md), the retained per-camera state, the availability topic, the
passage lifecycle (its ids are the run's stored passages) and the snapshots. With the broker down
the run gives the same results and counts the messages it could not send. A second clip makes the
person detection flicker: the debounced count changes once per hold time at most.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from genesis.adapters.db import Repository
from genesis.config import Settings, load_settings
from genesis.ops.metrics import sample_values
from genesis.pipeline.embedded import run_embedded
from genesis.pipeline.model_loader import detector_label, load_models
from genesis.services.enroll import enroll
from tests.mqtt_broker import Broker, Subscriber
from tests.ports import free_port
from tests.walking_clip import flicker_clip, walking_clip

EVENT_KEYS = {"id", "type", "camera_id", "run_id", "track_id", "seq", "ts", "at", "identity"}


def make_settings(tmp_path: Path, models_dir: Path, port: int, db: str) -> Settings:
    config = {
        "mqtt": {"enabled": True, "port": port, "topic_prefix": "home/genesis", "discovery": True},
        "cameras": [{
            "id": "door",
            "zones": [{"name": "front yard", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
            "lines": [{"name": "gate", "start": [0.5, 1.0], "end": [0.5, 0.0], "in_name": "arriving",
                       "out_name": "leaving"}],
            "alerts": {"watchlist": ["daryl"], "rules": ["watchlist"]},
        }],
    }
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path, environ={"GENESIS_MODELS_DIR": str(models_dir),
                                        "GENESIS_DATABASE_URL": f"sqlite:///{tmp_path / db}"})


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("mqtt") / "walk.mp4"
    walking_clip(path, [data_dir / "faces" / "known" / "daryl" / "daryl2.jpg",
                        data_dir / "faces" / "unknown" / "carell.jpg"])
    return path


def enrolled(settings: Settings, data_dir: Path) -> Any:
    models = load_models(settings)
    assert models.face_detector is not None and models.embedder is not None
    repo = Repository(settings.database_url)
    known = data_dir / "faces" / "known" / "daryl"
    enroll(repo, "daryl", [known / "daryl1.jpg", known / "daryl3.jpg"], models.face_detector, models.embedder,
           detector_label(settings))
    repo.close()
    return models


def dropped_total() -> float:
    return sum(sample_values("genesis_mqtt_dropped_total").values())


@pytest.mark.slow
def test_a_subscriber_sees_every_event_kind_and_a_down_broker_changes_nothing(
        tmp_path: Path, models_dir: Path, data_dir: Path, clip: Path) -> None:
    broker = Broker(tmp_path).start()
    settings = make_settings(tmp_path, models_dir, broker.port, "up.db")
    models = enrolled(settings, data_dir)
    sub = Subscriber(broker.port, ["home/genesis/#", "homeassistant/#"])
    try:
        out = run_embedded(settings, str(clip), settings.camera("door"), models=models)
        report = out.report
        assert report["run"]["mqtt"]["dropped"] == 0
        sub.wait_for(1, "/state", timeout=5)
        msgs = list(sub.messages)
        late = Subscriber(broker.port, ["home/genesis/door/person/snapshot"])  # retained for a newcomer
        retained_shot = late.wait_for(1, timeout=5)
        late.close()
    finally:
        sub.close()
        broker.stop()
    results = report["results"]
    run_id = out.run_id

    def events(kind: str) -> list[dict[str, Any]]:
        docs = [m.json() for m in msgs if m.topic == f"home/genesis/door/event/{kind}"]
        for d in docs:
            assert set(d) >= EVENT_KEYS, d
            assert d["type"] == kind and d["camera_id"] == "door" and d["run_id"] == run_id
            assert d["at"].endswith("+00:00")
        return docs

    (recognised,) = events("recognised")
    assert recognised["identity"] == "daryl" and recognised["votes"] >= settings.recognition.min_votes
    assert recognised["previous_identity"] is None and 0 <= recognised["distance"] < 0.593
    daryl_track = recognised["track_id"]
    (unknown,) = events("unknown_face")
    assert unknown["identity"] is None and unknown["track_id"] != daryl_track
    assert unknown["attempts"] >= settings.recognition.unknown_votes_to_stop and len(unknown["face_box"]) == 4

    enters, exits = events("zone_enter"), events("zone_exit")
    (zone,) = results["zones"]
    assert len(enters) == zone["entries"] == 2 and len(exits) == zone["exits"] == 2
    assert {e["zone"] for e in enters + exits} == {"front yard"} and all(e["occupancy"] is not None for e in enters)
    assert {e["track_id"] for e in enters} == {daryl_track, unknown["track_id"]}
    daryl_exit = next(e for e in exits if e["track_id"] == daryl_track)
    assert daryl_exit["identity"] == "daryl"

    crossings = events("line_cross")
    (line,) = results["lines"]
    assert len(crossings) == line["in"] + line["out"] >= 2
    assert {(c["line"], c["direction"], c["direction_name"]) for c in crossings} <= {
        ("gate", "in", "arriving"), ("gate", "out", "leaving")}
    assert [c["identity"] for c in crossings if c["track_id"] == daryl_track] == ["daryl"]

    (alert,) = events("alert")
    stored = results["alerts"]["items"]
    assert [(a["kind"], a["identity"]) for a in stored] == [("watchlist", "daryl")]
    assert alert["kind"] == "watchlist" and alert["identity"] == "daryl" and alert["track_id"] == daryl_track
    assert alert["seq"] == stored[0]["seq"] and alert["message"] == stored[0]["message"]

    # every event id is unique; the ids are stable (a reprocessed frame publishes the same id)
    ids = [m.json()["id"] for m in msgs if "/event/" in m.topic]
    assert len(ids) == len(set(ids))

    # retained state: people in view and zone occupancy, ending empty
    states = [m.json() for m in msgs if m.topic == "home/genesis/door/state"]
    assert max(s["people"] for s in states) == 1
    assert any(s["identities"] == ["daryl"] for s in states)
    assert any(s["unknown"] == 1 and s["identities"] == [] for s in states)
    assert states[-1]["people"] == 0 and states[-1]["active"] is False and states[-1]["zones"] == {"front yard": 0}
    people = [m.payload for m in msgs if m.topic == "home/genesis/door/people"]
    assert b"1" in people and people[-1] == b"0"
    occupancy = [m.payload for m in msgs if m.topic == "home/genesis/door/zone/front_yard/occupancy"]
    assert b"1" in occupancy and occupancy[-1] == b"0"
    # Home Assistant discovery of both sensors and the snapshot camera, all with the availability topic
    configs = {m.topic: m.json() for m in msgs if m.topic.startswith("homeassistant/")}
    assert set(configs) == {"homeassistant/sensor/genesis_door_people/config",
                            "homeassistant/sensor/genesis_door_zone_front_yard/config",
                            "homeassistant/camera/genesis_door_person_snapshot/config"}
    assert configs["homeassistant/sensor/genesis_door_people/config"]["state_topic"] == "home/genesis/door/people"
    assert {c["availability_topic"] for c in configs.values()} == {"home/genesis/available"}
    # availability: online while the run publishes, offline once it has closed
    assert [m.payload for m in msgs if m.topic == "home/genesis/available"] == [b"online", b"offline"]

    # The passage lifecycle: one id per passage (a segment of a track, a row of the tracks table),
    # each with one new and one end, in that order, ending with the identity the run stored.
    life = [m.json() for m in msgs if m.topic == "home/genesis/events"]
    passages = {f"{run_id}-{t['track_id']}-{t['segment']}": t for t in results["tracks"]}
    assert {d["after"]["id"] for d in life} == set(passages) and len(passages) >= 2
    for pid, t in passages.items():
        mine = [d for d in life if d["after"]["id"] == pid]
        kinds = [d["type"] for d in mine]
        assert kinds[0] == "new" and kinds[-1] == "end" and kinds.count("new") == kinds.count("end") == 1
        end = mine[-1]["after"]
        assert (end["identity"] or "unknown") == t["identity"] and end["track_id"] == t["track_id"]
        assert end["end_time"] - end["start_time"] == pytest.approx(t["last_seen"] - t["first_seen"], abs=0.01)
        assert end["entered_zones"] == ["front yard"] and end["camera"] == "door"
        for d in mine:
            assert d["before"]["id"] == d["after"]["id"]
    daryl_passages = [pid for pid, t in passages.items() if t["identity"] == "daryl"]
    (named,) = [d for d in life if d["type"] == "update" and d["after"]["identity"] == "daryl"
                and d["before"]["identity"] is None]
    assert named["after"]["id"] in daryl_passages and named["after"]["sub_label"] == "daryl"

    # Snapshots: one per recognition (daryl, then the stranger), a small JPEG; daryl's face is in his
    # (no privacy blur on this camera)
    shots = [m for m in msgs if m.topic == "home/genesis/door/person/snapshot"]
    assert len(shots) == 2
    assert [(m.payload, m.retain) for m in retained_shot] == [(shots[-1].payload, True)]
    images = [cv2.imdecode(np.frombuffer(m.payload, dtype=np.uint8), cv2.IMREAD_COLOR) for m in shots]
    assert all(img is not None and max(img.shape[:2]) <= 320 for img in images)
    assert models.face_detector.detect(images[0]), "daryl's snapshot shows his face"
    assert any(d["after"]["has_snapshot"] and d["after"]["snapshot"]["crop"] == "person" for d in life)

    # The same run with nobody listening on the broker's port: same results, drops counted.
    down = make_settings(tmp_path, models_dir, free_port(), "down.db")
    enrolled(down, data_dir)
    before = dropped_total()
    out_down = run_embedded(down, str(clip), down.camera("door"), models=models)
    assert out_down.report["results"] == results
    assert out_down.report["run"]["mqtt"]["published"] == 0
    lost = out_down.report["run"]["mqtt"]["dropped"]
    sent_events = [m for m in msgs if "/event/" in m.topic]
    assert lost >= len(sent_events) > 0  # every event, and the retained state left in the buffer
    assert dropped_total() - before == lost


@pytest.mark.slow
def test_the_people_count_over_a_flickering_detection_changes_at_most_once_per_hold_time(
        tmp_path: Path, models_dir: Path, data_dir: Path) -> None:
    """A person stands in view while the detection drops out one frame in three for two seconds
    (the count the tracker gives flickers 1-0-1 every 0.3 s): with the shipped hold (1 s) the
    retained count changes once when he is settled and once when he leaves, never faster than the
    hold. Nobody is enrolled: no face search, a cheap run."""
    clip = tmp_path / "flicker.mp4"
    shown = flicker_clip(clip, data_dir / "faces" / "unknown" / "carell.jpg")
    broker = Broker(tmp_path).start()
    settings = make_settings(tmp_path, models_dir, broker.port, "flicker.db")
    assert settings.mqtt.state_hold_s == 1.0
    sub = Subscriber(broker.port, ["home/genesis/#"])
    try:
        out = run_embedded(settings, str(clip), settings.camera("door"))
        sub.wait_for(1, "/state", timeout=5)
        msgs = list(sub.messages)
    finally:
        sub.close()
        broker.stop()
    (track,) = out.report["results"]["tracks"]  # one passage, seen only in the frames it was in view
    assert 20 <= track["frames"] <= shown < 40, (track, shown)  # the tracker's count did flicker
    assert [m.payload for m in msgs if m.topic == "home/genesis/door/people"] == [b"1", b"0"]
    states = [m.json() for m in msgs if m.topic == "home/genesis/door/state"]
    assert [s["people"] for s in states] == [1, 0]
    assert states[1]["ts"] - states[0]["ts"] >= settings.mqtt.state_hold_s
    life = [m.json() for m in msgs if m.topic == "home/genesis/events"]
    assert [d["type"] for d in life if d["type"] != "update"] == ["new", "end"]
    assert {d["after"]["id"] for d in life} == {f"{out.run_id}-{track['track_id']}-0"}


def _decoded(payload: bytes) -> np.ndarray:
    assert payload[:3] == b"\xff\xd8\xff", "not a JPEG"
    image = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian: detail left in an image (a blurred face keeps almost none)."""
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def _face_run(tmp_path: Path, models_dir: Path, data_dir: Path, clip: Path, blur: str,
              models: Any) -> tuple[list[Any], list[dict[str, Any]], dict[str, dict[str, Any]], Any, Settings]:
    """The walking clip with `snapshot.crop: face` and the camera's blur: (snapshot messages, lifecycle
    documents, the recognised / unknown_face events by kind, the run, the settings)."""
    (tmp_path / blur).mkdir()
    broker = Broker(tmp_path / blur).start()
    settings = make_settings(tmp_path / blur, models_dir, broker.port, "faces.db")
    config = settings.model_dump(mode="json")
    config["mqtt"]["snapshot"]["crop"] = "face"
    config["cameras"][0]["blur_faces"] = blur
    settings = Settings.model_validate(config)
    enrolled(settings, data_dir)
    sub = Subscriber(broker.port, ["home/genesis/#"])
    try:
        out = run_embedded(settings, str(clip), settings.camera("door"), models=models)
        sub.wait_for(1, "/state", timeout=5)
        msgs = list(sub.messages)
    finally:
        sub.close()
        broker.stop()
    shots = [m for m in msgs if m.topic == "home/genesis/door/person/snapshot"]
    life = [m.json() for m in msgs if m.topic == "home/genesis/events"]
    events = {kind: next(m.json() for m in msgs if m.topic == f"home/genesis/door/event/{kind}")
              for kind in ("recognised", "unknown_face")}
    return shots, life, events, out, settings


@pytest.mark.slow
def test_face_snapshots_are_face_crops_and_blurred_where_privacy_says(
        tmp_path: Path, models_dir: Path, data_dir: Path, clip: Path) -> None:
    """`snapshot.crop: face` through a real run and a real Mosquitto: without blur, each snapshot is the
    passage's face (a JPEG about 1.5 times the detected face box, a small part of the 640x480 frame, with
    a face in it); with `blur_faces: unenrolled`, daryl (enrolled, named) still gets his face, the
    stranger gets the person crop instead with the face blurred (no face found in it, and the face's
    region keeps a fraction of the detail of the same face unblurred)."""
    models = load_models(Settings.model_validate({"models": {"dir": str(models_dir)}}))
    assert models.face_detector is not None
    plain, plain_life, plain_events, out, settings = _face_run(tmp_path, models_dir, data_dir, clip, "off", models)
    run = Repository(settings.database_url)
    meta = run.run(out.run_id).meta  # type: ignore[union-attr]
    run.close()
    frame_w, frame_h = int(meta["width"]), int(meta["height"])
    assert len(plain) == 2
    shots = {d["after"]["track_id"]: d["after"]["snapshot"] for d in plain_life if d["after"]["has_snapshot"]}
    daryl, stranger = plain_events["recognised"]["track_id"], plain_events["unknown_face"]["track_id"]
    assert {t: s["crop"] for t, s in shots.items()} == {daryl: "face", stranger: "face"}
    faces = [_decoded(m.payload) for m in plain]  # daryl first, then the stranger
    face_box = plain_events["unknown_face"]["face_box"]
    fw, fh = face_box[2] - face_box[0], face_box[3] - face_box[1]
    for image in faces:
        h, w = image.shape[:2]
        assert max(h, w) <= 160 and w * h < 0.1 * frame_w * frame_h, (image.shape, frame_w, frame_h)
        person = shots[stranger]["box"]
        assert h < 0.8 * (person[3] - person[1])  # a face, not the person
        assert models.face_detector.detect(image), "a face snapshot shows a face"
    # The stranger's crop: his face box grown by a quarter each way (at most 160 px a side); its best face
    # may come from another frame than the decision's, so about.
    h, w = faces[1].shape[:2]
    fit = min(1.0, 160 / (1.5 * max(fw, fh)))
    assert (w, h) == (pytest.approx(1.5 * fw * fit, rel=0.25), pytest.approx(1.5 * fh * fit, rel=0.25)), (w, h, fw, fh)

    blurred, life, events, _, _ = _face_run(tmp_path, models_dir, data_dir, clip, "unenrolled", models)
    assert len(blurred) == 2
    shots = {d["after"]["track_id"]: d["after"]["snapshot"] for d in life if d["after"]["has_snapshot"]}
    assert {t: s["crop"] for t, s in shots.items()} == {daryl: "face", stranger: "person"}
    assert blurred[0].payload == plain[0].payload  # daryl is enrolled: his face, not blurred
    person = _decoded(blurred[1].payload)
    assert not models.face_detector.detect(person), "the stranger's face is blurred"
    # The stranger's face box in the person crop's pixels (grown 5 %, then scaled to at most 320 px).
    box = shots[stranger]["box"]
    mx, my = (box[2] - box[0]) * 0.05, (box[3] - box[1]) * 0.05
    ox, oy = max(0, int(np.floor(box[0] - mx))), max(0, int(np.floor(box[1] - my)))
    cw, ch = min(frame_w, int(np.ceil(box[2] + mx))) - ox, min(frame_h, int(np.ceil(box[3] + my))) - oy
    scale = min(1.0, 320 / max(cw, ch))
    assert person.shape[:2] == (round(ch * scale), round(cw * scale))
    fb = events["unknown_face"]["face_box"]
    x1, y1 = int((fb[0] - ox) * scale), int((fb[1] - oy) * scale)
    x2, y2 = int(np.ceil((fb[2] - ox) * scale)), int(np.ceil((fb[3] - oy) * scale))
    region = person[max(0, y1):y2, max(0, x1):x2]
    assert region.size > 0
    unblurred = cv2.resize(faces[1], (region.shape[1], region.shape[0]), interpolation=cv2.INTER_AREA)
    assert _sharpness(region) < 0.3 * _sharpness(unblurred), (_sharpness(region), _sharpness(unblurred))
    assert np.abs(region.astype(np.float32) - unblurred.astype(np.float32)).mean() > 5
