"""Enrollment from several real photos with the real models (YuNet + SFace int8, Dlib for re-embed):
rejections with their reasons, the quality gate, stored model/detector/dim, kept (encrypted) faces,
re-embed after a model switch, and encryption at rest."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import text

from genesis.adapters.db import Repository
from genesis.backends.faces import build_embedder
from genesis.config import EmbedderConfig, Settings, load_settings
from genesis.config.identities import EnrollQualityConfig
from genesis.identities.crypto import KEY_ENV, BiometricCipher, BiometricKeyError
from genesis.identities.store import IdentityStore
from genesis.pipeline.model_loader import detector_label, load_face_models, load_gallery
from genesis.services.enroll import EnrollError, enroll, read_image
from genesis.services.reembed import re_embed
from genesis.stages.recognize import identify_faces


@pytest.fixture(scope="module")
def face_models(models_dir: Path) -> tuple[object, object]:
    settings = load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir)})
    return load_face_models(settings)


def _enroll(settings: Settings, face_models: tuple[object, object], name: str, photos: list[Path],
            quality: EnrollQualityConfig | None = None) -> object:
    fd, emb = face_models
    with Repository(settings.database_url) as repo:
        return enroll(repo, name, photos, fd, emb, detector_label(settings), quality)  # type: ignore[arg-type]


def _count(settings: Settings, table: str) -> int:
    with Repository(settings.database_url) as repo, repo.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_several_photos_stored_with_model_detector_dim_and_kept_faces(
    settings: Settings, face_models: tuple[object, object], data_dir: Path
) -> None:
    photos = sorted((data_dir / "faces" / "known" / "scarlett").glob("*.jpg"))[:3]
    res = _enroll(settings, face_models, "scarlett", photos)
    assert res.added == 3 and res.photos == 3  # type: ignore[attr-defined]
    with Repository(settings.database_url) as repo, repo.engine.connect() as conn:
        rows = conn.execute(text("SELECT model, detector, dim, photo_name FROM face_embeddings ORDER BY id")).all()
        assert [(r[0], r[1], r[2]) for r in rows] == [("SFace", detector_label(settings), 128)] * 3
        assert [r[3] for r in rows] == [p.name for p in photos]
        crops = conn.execute(text("SELECT face, quality FROM face_photos")).all()
        assert len(crops) == 3
        actions = [r[0] for r in conn.execute(text("SELECT action FROM audit_log"))]
        assert actions == ["enroll"]
    # Enrolling the same photos again adds nothing.
    assert _enroll(settings, face_models, "scarlett", photos).added == 0  # type: ignore[attr-defined]


def test_rejections_have_reasons_and_store_nothing(
    settings: Settings, face_models: tuple[object, object], data_dir: Path, shared_dir: Path, tmp_path: Path
) -> None:
    from skimage import data as skdata

    good = sorted((data_dir / "faces" / "known" / "jack").glob("*.jpg"))[0]
    cat = tmp_path / "cat.png"
    cv2.imwrite(str(cat), cv2.cvtColor(skdata.cat(), cv2.COLOR_RGB2BGR))
    with pytest.raises(EnrollError, match=r"cat\.png: no face found"):
        _enroll(settings, face_models, "jack", [good, cat])
    with pytest.raises(EnrollError, match=r"two_people\.jpg: 2 faces of similar size"):
        _enroll(settings, face_models, "jack", [good, shared_dir / "models" / "faces" / "two_people.jpg"])
    blurred = tmp_path / "blurred.jpg"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(read_image(good), (0, 0), 12))
    with pytest.raises(EnrollError, match=r"blurred\.jpg: face too blurred"):
        _enroll(settings, face_models, "jack", [good, blurred])
    small = tmp_path / "small.jpg"
    img = read_image(good)
    cv2.imwrite(str(small), cv2.resize(img, (img.shape[1] // 4, img.shape[0] // 4), interpolation=cv2.INTER_AREA))
    with pytest.raises(EnrollError, match=r"small\.jpg: face too small"):
        _enroll(settings, face_models, "jack", [good, small])
    with pytest.raises(EnrollError, match="reserved"):
        _enroll(settings, face_models, "unknown-3", [good])
    assert _count(settings, "face_embeddings") == 0 and _count(settings, "identities") == 0
    assert _count(settings, "face_photos") == 0
    # The gate's thresholds are configuration: a lenient gate lets the small face through, with a warning.
    res = _enroll(settings, face_models, "jack", [small], EnrollQualityConfig(min_face_px=16, warn_face_px=96))
    assert any("small face" in w for w in res.warnings)  # type: ignore[attr-defined]


def test_reembed_after_a_model_switch(
    settings: Settings, face_models: tuple[object, object], data_dir: Path, models_dir: Path
) -> None:
    known = data_dir / "faces" / "known"
    split = {n: sorted((known / n).glob("*.jpg")) for n in ("angelina", "jack", "scarlett")}
    for name, photos in split.items():
        _enroll(settings, face_models, name, photos[0::2])
    dlib = load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir), "GENESIS_DATABASE_URL": settings.database_url,
                                  "GENESIS_RECOGNITION__EMBEDDER__MODEL": "Dlib"})
    with Repository(settings.database_url) as repo:
        sface_before = load_gallery(repo, settings)
        # Embeddings of another model are never compared: the Dlib gallery is empty before re-embed.
        assert load_gallery(repo, dlib).names == ()
        store = IdentityStore(repo)
        emb_dlib = build_embedder(EmbedderConfig(model="Dlib"), models_dir)
        res = re_embed(store, emb_dlib, "test")
        assert res.embeddings == len(sface_before.names) and res.without_crop == []
        gallery = load_gallery(repo, dlib)
        assert gallery.names == sface_before.names and gallery.matrix.shape[1] == 128
        # Re-embedding SFace from the kept crops gives (nearly) the embeddings of the photos.
        re_embed(store, face_models[1], "test")  # type: ignore[arg-type]
        sface_after = load_gallery(repo, settings)
        cos = np.sum(sface_before.matrix * sface_after.matrix, axis=1)
        assert cos.min() > 0.9, cos
    fd = face_models[0]
    hits = [identify_faces(read_image(p), fd, emb_dlib, gallery)[0][1].identity == name  # type: ignore[arg-type]
            for name, photos in split.items() for p in photos[1::2]]
    assert sum(hits) >= len(hits) - 1, hits


def test_encrypted_at_rest_and_key_rotation(
    settings: Settings, face_models: tuple[object, object], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = BiometricCipher.new_key(), BiometricCipher.new_key()
    monkeypatch.setenv(KEY_ENV, old)
    photos = sorted((data_dir / "faces" / "known" / "mark").glob("*.jpg"))[:2]
    _enroll(settings, face_models, "mark", photos)
    fd, emb = face_models
    plain = emb.embed(read_image(photos[0]), fd.detect(read_image(photos[0]))[:1])[0].astype("<f4").tobytes()  # type: ignore[attr-defined]
    with Repository(settings.database_url) as repo:
        with repo.engine.connect() as conn:
            blobs = [bytes(r[0]) for r in conn.execute(text("SELECT vector FROM face_embeddings"))]
            crops = [bytes(r[0]) for r in conn.execute(text("SELECT crop FROM face_photos"))]
        assert blobs and crops
        # Neither the float32 vector nor the JPEG can be found in the stored bytes: each is the marker and a Fernet
        # token's bytes (version byte 0x80 first), which decrypt to the vector and to the JPEG.
        cipher = BiometricCipher([old.encode()])
        assert all(plain[:64] not in b and len(cipher.decrypt(b)) == len(plain) for b in blobs)
        assert all(b[:4] == b"GF2\x80" and len(b) == 3 + 57 + len(plain) + 16 for b in blobs)  # no base64 text
        jpegs = [cipher.decrypt(c) for c in crops]
        assert all(c[:4] == b"GF2\x80" and j[:3] == b"\xff\xd8\xff" and j[:64] not in c
                   for c, j in zip(crops, jpegs, strict=True))
        with pytest.raises(BiometricKeyError, match="encrypted"):
            IdentityStore(repo, BiometricCipher([])).gallery("SFace")
        with pytest.raises(BiometricKeyError, match="wrong key"):
            IdentityStore(repo, BiometricCipher([new.encode()])).gallery("SFace")
        names, matrix = IdentityStore(repo).gallery("SFace")
        assert names == ["mark", "mark"] and np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)
        # Rotation: NEW first, OLD still accepted; afterwards NEW alone reads everything.
        n = IdentityStore(repo, BiometricCipher([new.encode(), old.encode()])).rotate_key("test")
        assert n == 4
        names2, matrix2 = IdentityStore(repo, BiometricCipher([new.encode()])).gallery("SFace")
        assert names2 == names and np.array_equal(matrix, matrix2)
        with pytest.raises(BiometricKeyError):
            IdentityStore(repo, BiometricCipher([old.encode()])).photos()
