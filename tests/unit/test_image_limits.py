"""Image bombs are refused from their header, before anything decodes them (issue 13, item 2; the
progressive JPEG of thousands of empty scans: issue 23, item 9)."""

from __future__ import annotations

import resource
import struct
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from genesis.services.enroll import EnrollError, decode_image, read_image
from genesis.services.image_limits import (
    MAX_DECODE_PASSES,
    MAX_JPEG_SCANS,
    MAX_PIXELS,
    ImageRefusedError,
    check_image,
    read_header,
)
from tests.bombs import png_bomb, progressive_jpeg_bomb, rle_bmp_bomb


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


def test_progressive_jpeg_of_thousands_of_scans_is_refused_fast(tmp_path: Path) -> None:
    """30 KB, 36 megapixels (under the pixel cap), 3000 empty scans: each a pass of the decoder over
    the whole coefficient buffer (about 5 ms each here, 100 s on the probe's machine; +300 MB)."""
    bomb = progressive_jpeg_bomb(tmp_path / "scans.jpg")
    data = bomb.read_bytes()
    assert len(data) < 40_000 and read_header(data).pixels < MAX_PIXELS
    assert read_header(data).scans == 3000
    before, t0 = _max_rss_mb(), time.perf_counter()
    with pytest.raises(ImageRefusedError, match=r"too costly to decode .*3000 scans"):
        check_image(data, "bomb")
    with pytest.raises(EnrollError, match="too costly to decode"):
        decode_image(data, "bomb")
    assert time.perf_counter() - t0 < 2.0
    assert _max_rss_mb() - before < 100


def test_fewer_scans_are_refused_by_the_work_they_make(tmp_path: Path) -> None:
    """Under the scan cap, a 36-megapixel file of 60 scans (about 21 passes) is still too much
    work; the same scans over a small image are not (and OpenCV decodes that file: it is a JPEG)."""
    data = progressive_jpeg_bomb(tmp_path / "sixty.jpg", 6000, 60).read_bytes()
    assert read_header(data).scans == 60 < MAX_JPEG_SCANS
    with pytest.raises(ImageRefusedError, match="passes over 36 megapixels"):
        check_image(data, "bomb")
    small = progressive_jpeg_bomb(tmp_path / "small.jpg", 64, 60).read_bytes()
    assert check_image(small, "small").scans == 60
    assert decode_image(small, "small").shape == (64, 64, 3)


def test_scans_after_stray_bytes_are_counted(tmp_path: Path) -> None:
    """The decoder skips bytes between segments to the next marker; the count does too."""
    data = progressive_jpeg_bomb(tmp_path / "b.jpg").read_bytes()
    sos = data.index(b"\xff\xda")
    hidden = data[:sos] + b"\x00\x17garbage" + data[sos:]
    assert read_header(hidden).scans == 3000
    with pytest.raises(ImageRefusedError, match="too costly"):
        check_image(hidden, "hidden")


def test_real_progressive_photos_pass(data_dir: Path) -> None:
    for photo in sorted((data_dir / "faces" / "known").glob("*/*.jpg"))[:4]:
        image = cv2.imread(str(photo))
        for flags in ([cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1,
                                                          cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                                          cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]):
            data = cv2.imencode(".jpg", image, flags)[1].tobytes()
            header = check_image(data, photo.name)
            assert header.scans == 10 and 4 < header.passes < 6, header
        assert check_image(cv2.imencode(".jpg", image)[1].tobytes(), photo.name).scans == 1
    # The largest photo the pixel cap allows, progressive, is within the work bound.
    assert MAX_PIXELS * 6 <= MAX_DECODE_PASSES
