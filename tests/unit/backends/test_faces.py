"""The face backends with the real models on real photos: YuNet, five-point alignment, SFace and Dlib.

Photos: scikit-image's astronaut (one face) and cat (none), ../shared/models/faces (Obama, Biden,
Kit Harington, Rose Leslie, and two_people.jpg with Obama and Biden). ArcFace and Facenet512 have
no offline weights: building them must fail at once with an error that says which file to provide,
without touching the network.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from skimage import data

from genesis.backends.faces import (
    ARCFACE_TEMPLATE,
    DeepFaceEmbedder,
    Embedder,
    FaceDetector,
    align_face,
    build_embedder,
    build_face_detector,
)
from genesis.backends.weights import WeightsError, deepface_home
from genesis.config import EmbedderConfig, FaceDetectorConfig
from genesis.domain import Face

SFACE_INT8 = "face_recognition_sface_2021dec_int8bq_ort.onnx"
SFACE_FP32 = "face_recognition_sface_2021dec.onnx"  # also the name deepface looks for
LOOPBACK = ("127.", "::1", "localhost")


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Any connection to (or name lookup of) a non-loopback address is refused and recorded."""
    attempts: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def _host(address: Any) -> str:
        return str(address[0]) if isinstance(address, tuple) else str(address)

    def _local(host: str) -> bool:
        return host.startswith(LOOPBACK) or host.startswith("/")  # unix sockets are local

    def connect(self: socket.socket, address: Any) -> None:
        if not _local(_host(address)):
            attempts.append(f"connect {address}")
            raise OSError(f"network access in a test: connect to {address}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _local(_host(address)):
            attempts.append(f"connect_ex {address}")
            raise OSError(f"network access in a test: connect to {address}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _local(str(host)):
            attempts.append(f"getaddrinfo {host}")
            raise OSError(f"network access in a test: name lookup of {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert not attempts, f"the test tried the network: {attempts}"


@pytest.fixture()
def restore_deepface_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building an embedder sets DEEPFACE_HOME; put the old value back after the test."""
    monkeypatch.delenv("DEEPFACE_HOME", raising=False)


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> FaceDetector:
    return build_face_detector(FaceDetectorConfig(), models_dir)


@pytest.fixture(scope="module")
def sface(models_dir: Path) -> Embedder:
    return build_embedder(EmbedderConfig(model="SFace"), models_dir)


def _skimage_bgr(name: str) -> np.ndarray:
    return np.ascontiguousarray(getattr(data, name)()[..., ::-1])  # skimage gives RGB, cv2 BGR


def _photo(shared_dir: Path, name: str) -> np.ndarray:
    path = shared_dir / "models" / "faces" / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return image


def _largest(detector: FaceDetector, image: np.ndarray) -> Face:
    faces = detector.detect(image)
    assert faces, "no face found"
    return faces[0]


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1.0 - a @ b)


# ---- YuNet --------------------------------------------------------------------------------


def test_astronaut_has_one_face(detector: FaceDetector) -> None:
    faces = detector.detect(_skimage_bgr("astronaut"))
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    # Eileen Collins' face is in the upper middle of the 512 x 512 picture.
    assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 200
    assert faces[0].score >= 0.8


def test_cat_has_no_face(detector: FaceDetector) -> None:
    assert detector.detect(_skimage_bgr("cat")) == []


def test_two_people_has_two_faces(detector: FaceDetector, shared_dir: Path) -> None:
    faces = detector.detect(_photo(shared_dir, "two_people.jpg"))
    assert len(faces) == 2
    assert _iou(faces[0].box, faces[1].box) == 0.0


@pytest.mark.parametrize("photo", ["astronaut", "two_people.jpg", "obama.jpg", "biden.jpg", "rose_leslie_img1.jpg"])
def test_landmarks_lie_inside_the_face_box(detector: FaceDetector, shared_dir: Path, photo: str) -> None:
    image = _skimage_bgr(photo) if photo == "astronaut" else _photo(shared_dir, photo)
    faces = detector.detect(image)
    assert faces
    for face in faces:
        x1, y1, x2, y2 = face.box
        assert len(face.landmarks) == 5
        for x, y in face.landmarks:
            assert x1 <= x <= x2 and y1 <= y <= y2, (face.box, face.landmarks)
        (rex, rey), (lex, ley), (_, ny), (rmx, rmy), (lmx, lmy) = face.landmarks
        # An upright face: eyes above the nose above the mouth; the first eye is on the image's left.
        assert rex < lex and rmx < lmx
        assert max(rey, ley) < ny < min(rmy, lmy)


def test_faces_come_largest_first(detector: FaceDetector) -> None:
    """The same face at full and at half size side by side: the full-size one comes first, wherever it is."""
    astro = _skimage_bgr("astronaut")
    half = cv2.resize(astro, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 768, 3), 127, dtype=np.uint8)
    canvas[:256, :256] = half
    canvas[:, 256:] = astro
    faces = detector.detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > 3 * faces[1].area
    assert faces[0].box[0] > 256 > faces[1].box[2]
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)


def test_tiny_images_give_no_face(detector: FaceDetector) -> None:
    assert detector.detect(np.zeros((4, 4, 3), dtype=np.uint8)) == []
    assert detector.detect(np.full((12, 20, 3), 200, dtype=np.uint8)) == []


def test_huge_image_still_finds_the_face(detector: FaceDetector) -> None:
    astro = _skimage_bgr("astronaut")
    small = _largest(detector, astro)
    big = cv2.resize(astro, (4000, 3000), interpolation=cv2.INTER_LINEAR)  # x7.8 wide, x5.9 high
    faces = detector.detect(big)
    assert len(faces) == 1
    sx, sy = 4000 / 512, 3000 / 512
    expected = (small.box[0] * sx, small.box[1] * sy, small.box[2] * sx, small.box[3] * sy)
    assert _iou(faces[0].box, expected) > 0.7
    for (x, y), (ex, ey) in zip(faces[0].landmarks, small.landmarks, strict=True):
        assert abs(x - ex * sx) < 0.05 * 4000 and abs(y - ey * sy) < 0.05 * 3000


# ---- alignment ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(112, 112), (150, 150), (96, 128)])
def test_aligned_crop_has_the_model_input_size(detector: FaceDetector, size: tuple[int, int]) -> None:
    astro = _skimage_bgr("astronaut")
    crop = align_face(astro, _largest(detector, astro), size)
    assert crop.shape == (size[1], size[0], 3)  # size is (width, height)
    assert crop.dtype == np.uint8


def test_alignment_is_deterministic(detector: FaceDetector, shared_dir: Path) -> None:
    image = _photo(shared_dir, "two_people.jpg")
    for face in detector.detect(image):
        assert np.array_equal(align_face(image, face, (112, 112)), align_face(image, face, (112, 112)))


def _landmarks_after_alignment(image_shape: tuple[int, ...], face: Face, size: tuple[int, int]) -> np.ndarray:
    """Where align_face sends each landmark: warp a small blob drawn on it, take the blob's centroid."""
    h, w = image_shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for x, y in face.landmarks:
        blob = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 3.0**2))
        img = np.repeat((blob * 255).astype(np.uint8)[..., None], 3, axis=2)
        warped = align_face(img, face, size)[..., 0].astype(np.float64)
        assert warped.sum() > 0, "the landmark left the aligned crop"
        wy, wx = np.mgrid[0 : warped.shape[0], 0 : warped.shape[1]]
        out.append(((warped * wx).sum() / warped.sum(), (warped * wy).sum() / warped.sum()))
    return np.array(out)


@pytest.mark.parametrize("photo", ["astronaut", "obama.jpg", "biden.jpg", "kit_harington_john1.jpeg"])
def test_eyes_land_on_the_template(detector: FaceDetector, shared_dir: Path, photo: str) -> None:
    image = _skimage_bgr(photo) if photo == "astronaut" else _photo(shared_dir, photo)
    if max(image.shape[:2]) > 700:  # keep the blob images small
        scale = 700 / max(image.shape[:2])
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    face = _largest(detector, image)
    moved = _landmarks_after_alignment(image.shape, face, (112, 112))
    eyes_error = np.abs(moved[:2] - ARCFACE_TEMPLATE[:2]).max()
    # A similarity transform fitted to five points cannot put every one exactly on the template
    # (measured: eyes 2.0 to 3.4 px off, the other points up to 4 px, on these four faces).
    assert eyes_error < 4.5, moved
    assert np.abs(moved - ARCFACE_TEMPLATE).max() < 6.0, moved


def test_redetected_eyes_sit_on_the_template(detector: FaceDetector) -> None:
    """YuNet run again on the aligned crop (at 4x, so it needs no upscaling) finds the eyes where they belong."""
    astro = _skimage_bgr("astronaut")
    crop = align_face(astro, _largest(detector, astro), (448, 448))
    again = _largest(detector, crop)
    eyes = np.array(again.landmarks[:2]) / 4.0
    assert np.abs(eyes - ARCFACE_TEMPLATE[:2]).max() < 4.0, eyes


def _turn(image: np.ndarray, face: Face, degrees: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned and scaled about the face centre, and that transform (2 x 3)."""
    cx = (face.box[0] + face.box[2]) / 2
    cy = (face.box[1] + face.box[3]) / 2
    matrix = cv2.getRotationMatrix2D((cx, cy), degrees, scale)
    h, w = image.shape[:2]
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE), matrix


def test_alignment_undoes_rotation_and_scale(detector: FaceDetector) -> None:
    """Landmarks moved with the face (25 degrees, x0.7): the aligned crop is nearly the upright one."""
    astro = _skimage_bgr("astronaut")
    face = _largest(detector, astro)
    turned, matrix = _turn(astro, face, 25.0, 0.7)
    points = matrix @ np.array([[x, y, 1.0] for x, y in face.landmarks]).T  # (2, 5)
    moved = Face(box=face.box, landmarks=tuple((float(x), float(y)) for x, y in points.T), score=face.score)
    upright = align_face(astro, face, (112, 112)).astype(np.float32)
    undone = align_face(turned, moved, (112, 112)).astype(np.float32)
    assert float(np.abs(upright - undone).mean()) < 6.0


def test_slightly_turned_face_gives_the_same_embedding(detector: FaceDetector, sface: Embedder) -> None:
    """Through the real detector: a face turned by 10 degrees stays far inside the SFace threshold.

    (YuNet's landmarks follow in-plane rotation only partly: at 20 degrees the eye line it finds is
    turned by far less than the face, and the aligned crop keeps most of the tilt; see docs/recognition.md.)
    """
    astro = _skimage_bgr("astronaut")
    face = _largest(detector, astro)
    turned, _ = _turn(astro, face, 10.0, 0.8)
    va = sface.embed(astro, [face])[0]
    vb = sface.embed(turned, [_largest(detector, turned)])[0]
    assert _distance(va, vb) < 0.15


# ---- SFace --------------------------------------------------------------------------------


def test_sface_vectors(detector: FaceDetector, sface: Embedder, shared_dir: Path) -> None:
    image = _photo(shared_dir, "two_people.jpg")
    faces = detector.detect(image)
    vectors = sface.embed(image, faces)
    assert sface.model_name == "SFace" and sface.dim == 128
    assert vectors.shape == (2, 128) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = sface.embed(image, faces)
    assert np.array_equal(vectors, again)
    # A batch gives what one face at a time gives.
    one = np.concatenate([sface.embed(image, [f]) for f in faces])
    assert np.allclose(vectors, one, atol=1e-6)
    assert sface.embed(image, []).shape == (0, 128)


def test_sface_same_person_is_closer(detector: FaceDetector, sface: Embedder, shared_dir: Path) -> None:
    vec = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "biden2.jpg"):
        image = _photo(shared_dir, name)
        vec[name] = sface.embed(image, [_largest(detector, image)])[0]
    same = _distance(vec["obama.jpg"], vec["obama2.jpg"])
    other = _distance(vec["obama.jpg"], vec["biden.jpg"])
    assert same < other
    threshold = EmbedderConfig(model="SFace").cosine_threshold
    assert same < threshold < other
    assert _distance(vec["biden.jpg"], vec["biden2.jpg"]) < threshold < _distance(vec["obama2.jpg"], vec["biden2.jpg"])


# ---- Dlib ---------------------------------------------------------------------------------


def test_dlib_loads_offline_and_separates_people(
    detector: FaceDetector,
    models_dir: Path,
    shared_dir: Path,
    no_network: list[str],
    restore_deepface_home: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deepface.modules import modeling

    # deepface keeps one instance per model name for the whole process: forget it, so that this
    # test really loads the file (and the cached one comes back afterwards).
    cache = getattr(modeling, "cached_models", None)
    if cache is not None:
        monkeypatch.delitem(cache["facial_recognition"], "Dlib", raising=False)
    embedder = build_embedder(EmbedderConfig(model="Dlib"), models_dir)
    assert isinstance(embedder, DeepFaceEmbedder)
    assert embedder.weights == models_dir / "dlib_face_recognition_resnet_model_v1.dat"
    link = Path(os.environ["DEEPFACE_HOME"]) / ".deepface" / "weights" / "dlib_face_recognition_resnet_model_v1.dat"
    assert link.resolve() == embedder.weights.resolve()
    assert embedder.dim == 128 and embedder.input_size == (150, 150)

    vec = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "biden2.jpg", "rose_leslie_img1.jpg",
                 "rose_leslie_img2.jpg", "kit_harington_john1.jpeg", "kit_harington_john2.jpeg"):
        image = _photo(shared_dir, name)
        vec[name] = embedder.embed(image, [_largest(detector, image)])[0]
    assert np.allclose([np.linalg.norm(v) for v in vec.values()], 1.0, atol=1e-5)
    # (same person, same person, someone else)
    for a, b, c in [
        ("obama.jpg", "obama2.jpg", "biden.jpg"),
        ("biden.jpg", "biden2.jpg", "obama2.jpg"),
        ("rose_leslie_img1.jpg", "rose_leslie_img2.jpg", "kit_harington_john1.jpeg"),
        ("kit_harington_john2.jpeg", "kit_harington_john1.jpeg", "biden.jpg"),
    ]:
        assert _distance(vec[a], vec[b]) < _distance(vec[a], vec[c]), (a, b, c)


# ---- models without offline weights -------------------------------------------------------


@pytest.mark.parametrize(("model", "file"), [("ArcFace", "arcface_weights.onnx"),
                                             ("Facenet512", "facenet512_weights.onnx")])
@pytest.mark.parametrize("folder", ["empty", "test models"])
def test_missing_weights_fail_fast_without_network(
    model: str,
    file: str,
    folder: str,
    models_dir: Path,
    tmp_path: Path,
    no_network: list[str],
    restore_deepface_home: None,
) -> None:
    target = tmp_path if folder == "empty" else models_dir
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as info:
        build_embedder(EmbedderConfig(model=model), target)  # type: ignore[arg-type]
    assert time.perf_counter() - t0 < 2.0
    message = str(info.value)
    assert file in message
    assert str(target) in message
    assert "genesis models pull" in message  # how to provide it
    assert not no_network


def test_the_network_guard_catches_a_connection(no_network: list[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(OSError, match="network access"):
        s.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed
    assert no_network == ["connect ('192.0.2.1', 443)"]
    no_network.clear()


# ---- DEEPFACE_HOME ------------------------------------------------------------------------


def test_deepface_home_links_the_configured_sface_build(
    models_dir: Path, tmp_path: Path, restore_deepface_home: None
) -> None:
    """Both SFace builds in the folder: deepface's single name points at whichever is configured."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copyfile(models_dir / SFACE_INT8, folder / SFACE_INT8)
    shutil.copyfile(models_dir / SFACE_INT8, folder / SFACE_FP32)  # stands in for the fp32 build
    link = folder / ".deepface-home" / ".deepface" / "weights" / SFACE_FP32

    home = deepface_home(folder, [SFACE_INT8])
    assert home == folder / ".deepface-home"
    assert link.is_symlink() and link.resolve() == (folder / SFACE_INT8).resolve()

    deepface_home(folder, [SFACE_FP32])
    assert link.resolve() == (folder / SFACE_FP32).resolve()

    # Through the embedder: the default (int8) and then the fp32 name given in the configuration.
    int8 = build_embedder(EmbedderConfig(model="SFace"), folder)
    assert isinstance(int8, DeepFaceEmbedder)
    assert int8.weights == folder / SFACE_INT8
    assert os.environ["DEEPFACE_HOME"] == str(home)
    assert link.resolve() == (folder / SFACE_INT8).resolve()

    fp32 = build_embedder(EmbedderConfig(model="SFace", weights=SFACE_FP32), folder)
    assert isinstance(fp32, DeepFaceEmbedder)
    assert fp32.weights == folder / SFACE_FP32
    assert link.resolve() == (folder / SFACE_FP32).resolve()
