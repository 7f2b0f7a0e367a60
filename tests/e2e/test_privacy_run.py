"""The privacy blur on a real embedded run: the stored camera snapshot (the heatmap background),
``annotated.mp4`` and the live view keep the enrolled person's face and nothing YuNet can find of
the stranger's; with ``blur_faces: everyone`` no face is left at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from sqlalchemy import select

from genesis.adapters.db import Repository
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.db.tables_identities import TrackFace
from genesis.backends.faces import FaceDetector, build_face_detector
from genesis.config import FaceDetectorConfig, Settings, load_settings
from genesis.pipeline.embedded import run_embedded
from genesis.pipeline.model_loader import detector_label, load_models
from genesis.services.enroll import enroll
from genesis.services.live import LiveImage, mark_watched, read_latest
from tests.walking_clip import side_by_side_clip

Box = tuple[int, int, int, int]


def settings_for(tmp_path: Path, models_dir: Path, blur: str) -> Settings:
    path = tmp_path / f"{blur}.yaml"
    path.write_text(yaml.safe_dump({"privacy": {"blur_unenrolled_faces": True},
                                    "cameras": [{"id": "hall", "blur_faces": blur}]}))
    return load_settings(path, environ={"GENESIS_MODELS_DIR": str(models_dir),
                                        "GENESIS_DATABASE_URL": f"sqlite:///{tmp_path / (blur + '.db')}"})


def faces_in(detector: FaceDetector, image: np.ndarray, box: Box) -> int:
    x1, y1, x2, y2 = box
    whole = [f for f in detector.detect(image)
             if x1 <= (f.box[0] + f.box[2]) / 2 <= x2 and y1 <= (f.box[1] + f.box[3]) / 2 <= y2]
    return max(len(whole), len(detector.detect(np.ascontiguousarray(image[y1:y2, x1:x2]))))


def last_frame(video: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(video))
    frame = None
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frame = img
    cap.release()
    assert frame is not None
    return frame


@pytest.mark.slow
def test_stored_and_annotated_images_blur_unenrolled_faces(tmp_path: Path, models_dir: Path, data_dir: Path) -> None:
    clip = tmp_path / "pair.mp4"
    daryl, carell = side_by_side_clip(clip, [data_dir / "faces" / "known" / "daryl" / "daryl2.jpg",
                                             data_dir / "faces" / "unknown" / "carell.jpg"])
    checks = [build_face_detector(FaceDetectorConfig(), models_dir),  # as recognition runs it
              build_face_detector(FaceDetectorConfig(score_threshold=0.5, min_face_px=8), models_dir)]
    raw = last_frame(clip)
    for det in checks:  # the premise: both faces are there to find
        assert faces_in(det, raw, daryl) >= 1 and faces_in(det, raw, carell) >= 1
    models = None
    for blur in ("unenrolled", "everyone"):
        settings = settings_for(tmp_path, models_dir, blur)
        models = models or load_models(settings)
        assert models.face_detector is not None and models.embedder is not None
        repo = Repository(settings.database_url)
        known = data_dir / "faces" / "known" / "daryl"
        enroll(repo, "daryl", [known / "daryl1.jpg", known / "daryl3.jpg"], models.face_detector, models.embedder,
               detector_label(settings))
        mark_watched("hall", 600, repo.engine, None)  # a browser watches: the run publishes live frames
        seen: list[LiveImage] = []

        def watch(_: Any, engine: Any = repo.engine, seen: list[LiveImage] = seen) -> None:  # a browser's view
            latest = read_latest("hall", engine, None)
            if latest is not None and latest.jpeg and (not seen or latest.at != seen[-1].at):
                seen.append(latest)

        out = run_embedded(settings, str(clip), settings.camera("hall"), out_dir=tmp_path / blur, annotate=True,
                           models=models, progress=watch)
        assert seen, "no live frame was published while the run was watched"
        live_names = {p["identity"] for frame in seen for p in frame.meta["persons"]}
        with repo.engine.connect() as conn:  # the tracks' face crops kept for the review page
            crops = {tid: crop for tid, crop in conn.execute(select(TrackFace.track_id, TrackFace.crop))}
        named = {t["track_id"] for t in out.report["results"]["tracks"] if t["identity"] != "unknown"}
        assert len(crops) > len(named) >= 1  # the stranger's track has a face too
        names = {i["name"] for i in out.report["results"]["identities"]}
        assert names == {"daryl"}
        snap = AnalyticsStore(repo).snapshot("hall")
        repo.close()
        assert snap is not None
        stored = cv2.imdecode(np.frombuffer(snap[0], dtype=np.uint8), cv2.IMREAD_COLOR)
        annotated = last_frame(tmp_path / blur / "annotated.mp4")
        for image in (stored, annotated):
            for det in checks:
                assert faces_in(det, image, carell) == 0, blur
                if blur == "everyone":
                    assert faces_in(det, image, daryl) == 0
                else:
                    assert faces_in(det, image, daryl) >= 1
        # Face crops: only of enrolled people (unenrolled), none at all (everyone).
        assert {tid for tid, crop in crops.items() if crop} == (set() if blur == "everyone" else named)
        # The live view, every frame published (which ones depends on the 0.5 s rate, so on the machine's speed):
        # the stranger's face never; daryl's only in frames where he is named, and in at least one of them.
        shown_named = 0
        for frame in seen:
            image = cv2.imdecode(np.frombuffer(frame.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
            named_here = blur != "everyone" and "daryl" in {p["identity"] for p in frame.meta["persons"]}
            for det in checks:
                assert faces_in(det, image, carell) == 0, blur
                if not named_here:
                    assert faces_in(det, image, daryl) == 0, blur
            shown_named += named_here and all(faces_in(det, image, daryl) >= 1 for det in checks)
        if blur != "everyone":
            assert shown_named >= 1 or "daryl" not in live_names
