"""Recognition on real photos with the real default models (YuNet + SFace int8).

Enroll half of each identity's photos through the enrollment path and the database, then
identify the other half, the strangers and the group photos.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from genesis.adapters.db import Repository
from genesis.config import Settings
from genesis.pipeline.model_loader import detector_label, load_face_models, load_gallery
from genesis.services.enroll import enroll, read_image
from genesis.stages.recognize import Gallery, identify_faces

IMAGE_EXT = {".jpg", ".jpeg", ".png"}


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT)


def split_identities(data_dir: Path, shared_dir: Path) -> dict[str, tuple[list[Path], list[Path]]]:
    """name -> (enrollment photos, probe photos): every other photo of each identity."""
    out: dict[str, tuple[list[Path], list[Path]]] = {}
    for folder in sorted((data_dir / "faces" / "known").iterdir()):
        ph = photos(folder)
        out[folder.name] = (ph[0::2], ph[1::2])
    extra = shared_dir / "models" / "faces"
    obama_enroll = [extra / "obama.jpg", extra / "obama2.jpg", extra / "obama_small.jpg", extra / "obama1.jpg"]
    out["obama"] = (obama_enroll, photos(data_dir / "faces" / "known" / "obama"))
    out["biden"] = ([extra / "biden.jpg"], [extra / "biden2.jpg"])
    out["kit"] = ([extra / "kit_harington_john1.jpeg"], [extra / "kit_harington_john2.jpeg"])
    out["rose"] = ([extra / "rose_leslie_img1.jpg"], [extra / "rose_leslie_img2.jpg"])
    return out


@pytest.fixture(scope="module")
def enrolled(
    models_dir: Path, data_dir: Path, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, Gallery, dict[str, tuple[list[Path], list[Path]]]]:
    from genesis.config import load_settings

    db = tmp_path_factory.mktemp("recog") / "g.db"
    settings = load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir), "GENESIS_DATABASE_URL": f"sqlite:///{db}"})
    fd, emb = load_face_models(settings)
    split = split_identities(data_dir, shared_dir)
    with Repository(settings.database_url) as repo:
        for name, (train, _) in split.items():
            enroll(repo, name, train, fd, emb, detector_label(settings))
        gallery = load_gallery(repo, settings)
    return settings, gallery, split


def test_top1_on_held_out_photos(enrolled: tuple[Settings, Gallery, dict[str, tuple[list[Path], list[Path]]]]) -> None:
    settings, gallery, split = enrolled
    fd, emb = load_face_models(settings)
    total = correct = 0
    wrong: list[str] = []
    for name, (_, probes) in split.items():
        for p in probes:
            results = identify_faces(read_image(p), fd, emb, gallery)
            total += 1
            got = results[0][1].identity if results else None
            if got == name:
                correct += 1
            else:
                wrong.append(f"{p.name}: {got}")
    assert total >= 25
    assert correct / total >= 0.9, wrong


def test_strangers_stay_unknown(
    enrolled: tuple[Settings, Gallery, dict[str, tuple[list[Path], list[Path]]]], data_dir: Path
) -> None:
    settings, gallery, _ = enrolled
    fd, emb = load_face_models(settings)
    seen = 0
    for p in photos(data_dir / "faces" / "unknown"):
        results = identify_faces(read_image(p), fd, emb, gallery)
        assert results, f"no face found in {p.name}"
        for _, match in results:
            seen += 1
            assert match.identity is None, f"{p.name} matched {match.identity} at {match.distance:.3f}"
    assert seen >= 8


@pytest.mark.parametrize(
    ("photo", "expected", "faces"),
    [
        ("daryl-rick.jpg", {"daryl", "rick"}, 2),
        ("kit_with_rose.jpg", {"kit", "rose"}, 2),
        ("obama_and_biden.jpg", {"obama", "biden"}, 2),
        ("couple.jpg", {"angelina"}, 2),
    ],
)
def test_group_photos_give_one_result_per_face(
    enrolled: tuple[Settings, Gallery, dict[str, tuple[list[Path], list[Path]]]],
    data_dir: Path,
    photo: str,
    expected: set[str],
    faces: int,
) -> None:
    settings, gallery, _ = enrolled
    fd, emb = load_face_models(settings)
    image = read_image(data_dir / "faces" / "group" / photo)
    detected = fd.detect(image)
    results = identify_faces(image, fd, emb, gallery)
    # Some group photos have more people in the background (a girl behind Obama, a man behind
    # Rick): every face found gets exactly one result, the enrolled ones their names.
    assert len(detected) >= faces
    assert len(results) == len(detected)
    names = [m.identity for _, m in results if m.identity]
    assert len(names) == len(set(names)), "one identity given to two faces"
    assert set(names) == expected
