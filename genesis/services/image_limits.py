"""Image bombs: the dimensions of a photo are read from its header before anything decodes it.

A 124 KB PNG can declare 32000 x 32000 pixels (1 GB once decoded), a 1 KB RLE BMP the same; the
decoder allocates the whole raster before it notices anything. So every photo that enrollment,
search or the CLI decodes goes through :func:`check_image` first: the format is recognised from
its magic bytes (JPEG, PNG, WebP, BMP, GIF — anything else is refused as "not an image", even if
OpenCV could read it), the width and height are read from the header alone, and an image of more than
:data:`MAX_PIXELS` pixels is refused. Decoding itself then runs under :data:`DECODE_SLOTS`, so a
burst of large-but-allowed photos cannot multiply the memory of one decode by the number of
requests.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

MAX_PIXELS = 40_000_000
"""Largest photo accepted (width x height, read from the header)."""
MAX_CONCURRENT_DECODES = 2
DECODE_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)
"""At most this many photos are decoded at once in a process (about 120 MB each at the limit)."""


class ImageRefusedError(ValueError):
    """Not an image of a known format, a damaged header, or too many pixels; the message says which."""


@dataclass(frozen=True, slots=True)
class ImageHeader:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _png(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageRefusedError("not an image (damaged PNG header)")
    return struct.unpack(">II", data[16:24])


def _gif(data: bytes) -> tuple[int, int]:
    if len(data) < 10:
        raise ImageRefusedError("not an image (damaged GIF header)")
    return struct.unpack("<HH", data[6:10])


def _bmp(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise ImageRefusedError("not an image (damaged BMP header)")
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:  # BITMAPCOREHEADER: unsigned 16-bit sides
        w, h = struct.unpack("<HH", data[18:22])
        return w, h
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)  # a negative height is a top-down bitmap


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageRefusedError("not an image (damaged JPEG header)")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2: i + 4])
        if marker in _SOF:
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5: i + 9])
            return w, h
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / start of scan before a frame header
            break
        i += 2 + length
    raise ImageRefusedError("not an image (JPEG without a frame header)")


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    raise ImageRefusedError("not an image (damaged WebP header)")


def read_header(data: bytes) -> ImageHeader:
    """Format and size from the first bytes only (nothing is decoded); ImageRefusedError otherwise."""
    head = bytes(data[:65536]) if len(data) > 65536 else bytes(data)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        fmt, (w, h) = "PNG", _png(head)
    elif head.startswith(b"\xff\xd8\xff"):
        # The frame header may follow large EXIF/ICC segments: scan the whole file if needed.
        fmt, (w, h) = "JPEG", _jpeg(bytes(data))
    elif head.startswith((b"GIF87a", b"GIF89a")):
        fmt, (w, h) = "GIF", _gif(head)
    elif head.startswith(b"BM"):
        fmt, (w, h) = "BMP", _bmp(head)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt, (w, h) = "WebP", _webp(head)
    else:
        raise ImageRefusedError("not an image (cannot decode it)")
    if w <= 0 or h <= 0:
        raise ImageRefusedError(f"not an image (damaged {fmt} header: size {w}x{h})")
    return ImageHeader(fmt, int(w), int(h))


def check_image(data: bytes, what: str, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """The photo's header if it may be decoded; ImageRefusedError (with ``what`` in the message) if not."""
    try:
        header = read_header(data)
    except ImageRefusedError as exc:
        raise ImageRefusedError(f"{what}: {exc}") from None
    if header.pixels > max_pixels:
        raise ImageRefusedError(
            f"{what}: image too large ({header.width}x{header.height} {header.format}, more than "
            f"{max_pixels // 1_000_000} megapixels)")
    return header
