"""The privacy blur with the real YuNet on real photos composited on a real video frame: an
unenrolled face leaves nothing YuNet can find, an enrolled person's face stays untouched (in
stored frames and in the MQTT snapshots)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from genesis.adapters.db import Repository
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.frame_store import MemoryFrameStore, encode_jpeg
from genesis.backends.faces import FaceDetector, build_face_detector
from genesis.config import CameraConfig, FaceDetectorConfig, Settings, load_settings
from genesis.domain import BBox, FrameRef, TrackedPerson
from genesis.services.heatmap import keep_snapshot_distributed, snapshot_key
from genesis.services.mqtt_events import encode_snapshot, person_crop
from genesis.services.privacy import FrameView, Redactor, privacy_detector, redactor_for
from tests.services import redis_url


@pytest.fixture(scope="module")
def settings(models_dir: Path) -> Settings:
    return load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir), "GENESIS_PRIVACY__BLUR_UNENROLLED_FACES": "1"})


@pytest.fixture(scope="module")
def detectors(settings: Settings) -> dict[str, FaceDetector]:
    """YuNet as recognition runs it (0.8), and as the blur runs it (0.5)."""
    return {"recognition": build_face_detector(FaceDetectorConfig(), settings.models.path),
            "privacy": privacy_detector(settings)}


def paste(canvas: np.ndarray, photo: Path, x: int, height: int) -> BBox:
    img = cv2.imread(str(photo))
    assert img is not None, photo
    w = round(img.shape[1] * height / img.shape[0])
    img = cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)
    y = canvas.shape[0] - height - 10
    canvas[y : y + height, x : x + w] = img
    return (float(x), float(y), float(x + w), float(y + height))


@pytest.fixture(scope="module")
def scene(data_dir: Path) -> tuple[np.ndarray, BBox, BBox]:
    """A frame of the overhead walkway clip with daryl (enrolled) and carell (a stranger) in front."""
    cap = cv2.VideoCapture(str(data_dir / "video" / "seeed_people-walking_overhead.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    frame = cv2.resize(frame, (1280, 720))
    daryl = paste(frame, data_dir / "faces" / "known" / "daryl" / "daryl2.jpg", 60, 420)
    carell = paste(frame, data_dir / "faces" / "unknown" / "carell.jpg", 700, 420)
    return frame, daryl, carell


def faces_in(detector: FaceDetector, image: np.ndarray, box: BBox) -> int:
    """Faces YuNet finds whose centre is in ``box``: on the whole image and on the box alone."""
    x1, y1, x2, y2 = (int(v) for v in box)
    whole = [f for f in detector.detect(image)
             if x1 <= (f.box[0] + f.box[2]) / 2 <= x2 and y1 <= (f.box[1] + f.box[3]) / 2 <= y2]
    crop = detector.detect(np.ascontiguousarray(image[y1:y2, x1:x2]))
    return max(len(whole), len(crop))


def view(daryl: BBox, carell: BBox, daryl_name: str | None = "daryl") -> FrameView:
    return FrameView((TrackedPerson(1, daryl, 0.9), TrackedPerson(2, carell, 0.9)), {1: daryl_name, 2: None})


def test_unenrolled_face_is_gone_and_enrolled_face_stays(settings: Settings, scene: tuple[np.ndarray, BBox, BBox],
                                                        detectors: dict[str, FaceDetector]) -> None:
    frame, daryl, carell = scene
    for det in detectors.values():  # the test's premise: both faces are there to find
        assert faces_in(det, frame, daryl) >= 1 and faces_in(det, frame, carell) >= 1
    redactor = redactor_for(settings, CameraConfig(id="cam"))
    assert redactor is not None and redactor.mode == "unenrolled"
    out = redactor.image(frame, view(daryl, carell))
    for det in detectors.values():
        assert faces_in(det, out, carell) == 0
        assert faces_in(det, out, daryl) >= 1
    x1, y1, x2, y2 = (int(v) for v in daryl)
    assert np.array_equal(out[y1:y2, x1:x2], frame[y1:y2, x1:x2])  # untouched
    assert not np.array_equal(out, frame)
    # Nobody named yet (or recognition off): both are blurred.
    out = redactor.image(frame, view(daryl, carell, daryl_name=None))
    assert faces_in(detectors["privacy"], out, daryl) == 0 and faces_in(detectors["privacy"], out, carell) == 0


def test_everyone_mode_and_faces_outside_any_person_box(settings: Settings, scene: tuple[np.ndarray, BBox, BBox],
                                                        detectors: dict[str, FaceDetector]) -> None:
    frame, daryl, carell = scene
    camera = CameraConfig(id="lobby", blur_faces="everyone")
    redactor = redactor_for(settings, camera)
    assert redactor is not None
    out = redactor.image(frame, view(daryl, carell))
    for det in detectors.values():
        assert faces_in(det, out, daryl) == 0 and faces_in(det, out, carell) == 0
    # no track at all (a face the person detector missed): blurred too
    plain = redactor_for(settings, CameraConfig(id="cam"))
    assert plain is not None
    out = plain.image(frame, FrameView())
    assert faces_in(detectors["privacy"], out, daryl) == 0 and faces_in(detectors["privacy"], out, carell) == 0
    assert redactor_for(settings, CameraConfig(id="off", blur_faces="off")) is None
    assert redactor_for(settings.model_copy(update={"privacy": settings.privacy.model_copy(
        update={"blur_unenrolled_faces": False})}), CameraConfig(id="cam")) is None


def test_a_face_in_both_an_enrolled_and_an_unknown_box_is_blurred(settings: Settings,
                                                                 scene: tuple[np.ndarray, BBox, BBox]) -> None:
    frame, daryl, _ = scene
    redactor = redactor_for(settings, CameraConfig(id="cam"))
    assert redactor is not None
    bystander = TrackedPerson(3, (daryl[0] - 20, daryl[1] - 20, daryl[2] + 20, daryl[3] + 20), 0.5)
    crowded = FrameView((TrackedPerson(1, daryl, 0.9), bystander), {1: "daryl", 3: None})
    out = redactor.image(frame, crowded)
    assert faces_in(redactor.detector, out, daryl) == 0


@pytest.mark.parametrize("photo", ["selfie-many-people.jpg", "kit_with_rose.jpg", "daryl-rick.jpg"])
def test_group_photos_keep_no_face(settings: Settings, data_dir: Path, detectors: dict[str, FaceDetector],
                                   photo: str) -> None:
    img = cv2.imread(str(data_dir / "faces" / "group" / photo))
    assert img is not None
    redactor = Redactor(detectors["privacy"], settings.privacy, "everyone")
    assert redactor.faces(img), "the photo has faces to blur"
    out = redactor.image(img)
    whole = (0.0, 0.0, float(img.shape[1]), float(img.shape[0]))
    for det in detectors.values():
        assert faces_in(det, out, whole) == 0, photo


def test_distributed_snapshot_is_stored_blurred(settings: Settings, scene: tuple[np.ndarray, BBox, BBox],
                                                detectors: dict[str, FaceDetector], tmp_path: Path) -> None:
    frame, daryl, carell = scene
    client = redis.Redis.from_url(redis_url(12))
    client.delete(snapshot_key("cam"))
    frames = MemoryFrameStore()
    frames.put("k", encode_jpeg(frame, 90))
    repo = Repository(f"sqlite:///{tmp_path / 'g.db'}")
    store = AnalyticsStore(repo)
    redactor = redactor_for(settings, CameraConfig(id="cam"))
    assert redactor is not None
    ref = FrameRef("cam", 7, 0.7, "k", frame.shape[1], frame.shape[0])
    try:
        assert keep_snapshot_distributed(client, store, frames, ref, 60.0,
                                         lambda jpeg: redactor.jpeg(jpeg, view(daryl, carell)))
        snap = store.snapshot("cam")
        assert snap is not None and snap[3] <= datetime.now(UTC)
        stored = cv2.imdecode(np.frombuffer(snap[0], dtype=np.uint8), cv2.IMREAD_COLOR)
        for det in detectors.values():
            assert faces_in(det, stored, carell) == 0
            assert faces_in(det, stored, daryl) >= 1
    finally:
        client.delete(snapshot_key("cam"))
        repo.close()


def test_an_mqtt_snapshot_is_blurred_as_the_camera_says(settings: Settings, scene: tuple[np.ndarray, BBox, BBox],
                                                        detectors: dict[str, FaceDetector]) -> None:
    """The MQTT snapshot (docs/mqtt.md): the person crop, 320 px at most, through the camera's blur."""
    frame, daryl, carell = scene
    config = settings.mqtt.snapshot
    check = detectors["privacy"]  # YuNet at the blur's own threshold (0.5)

    def shot(box: BBox, redactor: Redactor | None, daryl_name: str | None = "daryl") -> np.ndarray:
        jpeg = encode_snapshot(person_crop(frame, box, view(daryl, carell, daryl_name), redactor), config)
        img = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and max(img.shape[:2]) <= config.max_side
        return img

    unenrolled = redactor_for(settings, CameraConfig(id="door"))
    everyone = redactor_for(settings, CameraConfig(id="lobby", blur_faces="everyone"))
    assert unenrolled is not None and unenrolled.mode == "unenrolled" and everyone is not None
    assert len(check.detect(shot(carell, None))) >= 1  # the premise: without a blur his face is there
    assert len(check.detect(shot(daryl, unenrolled))) >= 1  # enrolled and named: shown
    assert check.detect(shot(carell, unenrolled)) == []  # a stranger: blurred
    assert check.detect(shot(daryl, unenrolled, daryl_name=None)) == []  # not named (yet): blurred
    assert check.detect(shot(daryl, everyone)) == []
