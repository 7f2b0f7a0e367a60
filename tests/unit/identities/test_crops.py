"""Track face crops at rest: stored as WebP (smaller), served as JPEG; crops stored as JPEG pass through."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from genesis.identities.crops import as_jpeg, for_storage, is_webp
from genesis.stages.recognize import face_crop_jpeg


def _face_crops(shared_dir: Path) -> list[bytes]:
    """The pipeline's own JPEG crops of the faces YuNet finds in the crowd clip (small, real faces)."""
    models, data_dir = shared_dir / "models", shared_dir / "data"
    yunet = cv2.FaceDetectorYN.create(str(models / "face_detection_yunet_2023mar_int8bq.onnx"), "", (320, 320), 0.8)
    cap = cv2.VideoCapture(str(data_dir / "video" / "opencv4nodejs_people.mp4"))
    crops: list[bytes] = []
    for i in range(0, 200):
        ok, frame = cap.read()
        if not ok:
            break
        if i % 20:
            continue
        yunet.setInputSize((frame.shape[1], frame.shape[0]))
        _, faces = yunet.detect(frame)
        for x, y, w, h, *_ in [] if faces is None else faces:
            crops.append(face_crop_jpeg(frame, (float(x), float(y), float(x + w), float(y + h))))
    cap.release()
    assert len(crops) >= 10
    return crops


def test_stored_crops_are_webp_about_half_the_bytes_and_served_as_the_same_face(shared_dir: Path) -> None:
    jpegs = _face_crops(shared_dir)
    stored = [for_storage(j) for j in jpegs]
    assert all(is_webp(s) for s in stored)
    assert sum(map(len, stored)) <= 0.6 * sum(map(len, jpegs))
    for jpeg, blob in zip(jpegs, stored, strict=True):
        served = as_jpeg(blob)
        assert served[:3] == b"\xff\xd8\xff"
        a = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)
        b = cv2.imdecode(np.frombuffer(served, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)
        assert a.shape == b.shape
        assert float(np.abs(a - b).mean()) < 6.0  # the same face, a few grey levels of compression apart
    assert for_storage(stored[0]) == stored[0]  # already WebP: kept


def test_a_jpeg_crop_stored_before_passes_through() -> None:
    image = np.full((40, 40, 3), 128, np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    assert as_jpeg(buf.tobytes()) == buf.tobytes()


@pytest.mark.parametrize("blob", [b"", b"not an image", b"RIFF\x00\x00\x00\x00WEBPVP8 broken"])
def test_what_is_not_an_image_is_refused(blob: bytes) -> None:
    with pytest.raises(ValueError, match="face crop"):
        for_storage(blob) if not is_webp(blob) else as_jpeg(blob)
