"""Image bombs are refused from their header, before anything decodes them (issue 13, item 2)."""

from __future__ import annotations

import resource
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from genesis.services.enroll import EnrollError, decode_image, read_image
from genesis.services.image_limits import MAX_PIXELS, ImageRefusedError, check_image, read_header
from tests.bombs import png_bomb, rle_bmp_bomb


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bombs")
    return {"png-32000": png_bomb(d / "bomb32k.png", 32000), "png-40000": png_bomb(d / "bomb40k.png", 40000),
            "rle-bmp": rle_bmp_bomb(d / "bomb.bmp")}


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_bombs_are_small_files(bombs: dict[str, Path]) -> None:
    assert bombs["png-32000"].stat().st_size < 200_000
    assert bombs["rle-bmp"].stat().st_size < 2_000


def test_bombs_are_refused_before_decoding(bombs: dict[str, Path]) -> None:
    before = _max_rss_mb()
    for name, path in bombs.items():
        data = path.read_bytes()
        with pytest.raises(ImageRefusedError, match="too large"):
            check_image(data, name)
        with pytest.raises(EnrollError, match="image too large"):
            decode_image(data, name)
        with pytest.raises(EnrollError, match="image too large"):
            read_image(path)
    # Decoding any of them would take 1 GB or more (the 32000 x 32000 PNG: 1 GB grey, 3 GB in colour).
    assert _max_rss_mb() - before < 150, (before, _max_rss_mb())


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp"])
def test_header_sizes_match_the_decoder(data_dir: Path, ext: str) -> None:
    for photo in sorted((data_dir / "faces" / "known").glob("*/*.jpg"))[:6]:
        image = cv2.imread(str(photo))
        if ext == ".webp":  # both WebP flavours
            encodings = [cv2.imencode(ext, image, [cv2.IMWRITE_WEBP_QUALITY, q])[1] for q in (80, 101)]
        else:
            encodings = [cv2.imencode(ext, image)[1]]
        for buf in encodings:
            header = read_header(buf.tobytes())
            assert (header.height, header.width) == image.shape[:2], (photo, ext, header)
            assert decode_image(buf.tobytes(), photo.name).shape[:2] == image.shape[:2] or max(image.shape) > 2048


def test_gif_and_progressive_jpeg_headers() -> None:
    gif = b"GIF89a" + struct.pack("<HH", 640, 480) + b"\x00" * 20
    assert read_header(gif) == read_header(gif) and read_header(gif).pixels == 640 * 480
    image = np.full((300, 500, 3), 127, np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and (read_header(buf.tobytes()).width, read_header(buf.tobytes()).height) == (500, 300)


def test_unknown_formats_and_damaged_headers_are_refused() -> None:
    image = np.zeros((20, 20, 3), np.uint8)
    tiff = cv2.imencode(".tiff", image)[1].tobytes()  # OpenCV decodes TIFF; Genesis does not accept it
    for data in (tiff, b"hello", b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00\x10JFIF", b"BM\x00"):
        with pytest.raises(ImageRefusedError, match="not an image"):
            check_image(data, "x")
        with pytest.raises(EnrollError, match="not an image"):
            decode_image(data, "x")


def test_the_limit_is_the_documented_one() -> None:
    assert MAX_PIXELS == 40_000_000
    side = int(MAX_PIXELS ** 0.5)
    assert check_image(cv2.imencode(".png", np.zeros((10, 10), np.uint8))[1].tobytes(), "ok").pixels == 100
    assert read_header(b"GIF89a" + struct.pack("<HH", side, side)).pixels <= MAX_PIXELS
