"""Image bombs: the dimensions of a photo are read from its header before anything decodes it.

A 124 KB PNG can declare 32000 x 32000 pixels (1 GB once decoded), a 1 KB RLE BMP the same; the
decoder allocates the whole raster before it notices anything. So every photo that enrollment,
search or the CLI decodes goes through :func:`check_image` first: the format is recognised from
its magic bytes (JPEG, PNG, WebP, BMP, GIF — anything else is refused as "not an image", even if
OpenCV could read it), the width and height are read from the header alone, and an image of more than
:data:`MAX_PIXELS` pixels is refused. Pixels are not the whole cost: a 30 KB progressive JPEG of
6000 x 6000 with 3000 empty scans makes the decoder pass over its 100 MB of coefficients 3000
times (about 100 s). So a JPEG's markers are walked to the end, its scans counted and weighted
by the components each one covers, and more than :data:`MAX_JPEG_SCANS` scans or
:data:`MAX_DECODE_PASSES` pixel-passes is refused too (:func:`too_costly`). Decoding itself then
runs under :data:`DECODE_SLOTS`, so a burst of large-but-allowed photos cannot multiply the memory
of one decode by the number of requests.
"""

from __future__ import annotations

import re
import struct
import threading
from dataclasses import dataclass

MAX_PIXELS = 40_000_000
"""Largest photo accepted (width x height, read from the header)."""
MAX_JPEG_SCANS = 100
"""Most scans a JPEG may have: a progressive JPEG has about ten (libjpeg: 10, mozjpeg: a few more);
each scan is one more pass of the decoder over the whole coefficient buffer."""
MAX_DECODE_PASSES = 12 * MAX_PIXELS
"""Most decoding work of one JPEG, in pixels x passes (a scan of one component of three counts a
third of a pass): a 40-megapixel progressive photo (about 5 passes) is well within it; a
6000 x 6000 file of 3000 empty scans (about 100 s of decoding) is not."""
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
    scans: int = 1
    """JPEG: the scans of the file (each a pass over its coefficients); 1 for the other formats."""
    passes: float = 1.0
    """JPEG: the scans weighted by the share of the image their components cover."""

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
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
"""The marker that ends a scan's entropy-coded data (``FF 00`` is a stuffed byte, ``FF D0-D7`` a restart)."""


@dataclass(frozen=True, slots=True)
class _JpegLayout:
    width: int
    height: int
    scans: int
    passes: float


def _jpeg(data: bytes) -> _JpegLayout:
    """Size from the frame header; then every scan counted, each as the share of the image's
    coefficient blocks its components hold (a scan of all components is one pass over the image)."""
    i, n = 2, len(data)
    size: tuple[int, int] | None = None
    shares: dict[int, float] = {}
    scans, passes = 0, 0.0
    while i + 4 <= n:
        if data[i] != 0xFF:
            if size is None:
                raise ImageRefusedError("not an image (damaged JPEG header)")
            # Bytes between segments: the decoder skips them to the next marker, so does the count.
            found = _ENTROPY_END.search(data, i)
            if found is None:
                break
            i = found.start()
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        if marker == 0xD9:  # end of image
            break
        (length,) = struct.unpack(">H", data[i + 2: i + 4])
        if length < 2:
            break
        if marker in _SOF and size is None:
            if i + 10 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5: i + 9])
            size = (w, h)
            count = data[i + 9]
            comps = [(data[j], data[j + 1]) for j in range(i + 10, min(i + 10 + 3 * count, n - 1), 3)]
            blocks = {cid: (hv >> 4) * (hv & 0x0F) for cid, hv in comps}
            total = sum(blocks.values()) or 1
            shares = {cid: b / total for cid, b in blocks.items()}
        elif marker == 0xDA:  # start of scan: its components, then entropy-coded data up to the next marker
            if size is None:
                break
            count = data[i + 4] if i + 4 < n else 0
            ids = {data[j] for j in range(i + 5, min(i + 5 + 2 * count, n), 2)}
            scans += 1
            passes += sum(shares.get(cid, 0.0) for cid in ids) if shares else 1.0
            end = _ENTROPY_END.search(data, i + 2 + length)
            if end is None:
                break
            i = end.start()
            continue
        i += 2 + length
    if size is None:
        raise ImageRefusedError("not an image (JPEG without a frame header)")
    return _JpegLayout(size[0], size[1], scans, passes)


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
    scans, passes = 1, 1.0
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        fmt, (w, h) = "PNG", _png(head)
    elif head.startswith(b"\xff\xd8\xff"):
        # The frame header may follow large EXIF/ICC segments, and every scan is counted: the whole file.
        jpeg = _jpeg(bytes(data))
        fmt, (w, h), scans, passes = "JPEG", (jpeg.width, jpeg.height), jpeg.scans, jpeg.passes
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
    return ImageHeader(fmt, int(w), int(h), scans, passes)


def too_costly(header: ImageHeader, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why decoding this image is refused (too many pixels, too many JPEG scans or passes), else None."""
    size = f"{header.width}x{header.height} {header.format}"
    if header.pixels > max_pixels:
        return f"image too large ({size}, more than {max_pixels // 1_000_000} megapixels)"
    if header.scans > MAX_JPEG_SCANS:
        return f"image too costly to decode ({size} of {header.scans} scans, at most {MAX_JPEG_SCANS})"
    if header.pixels * header.passes > MAX_DECODE_PASSES:
        return (f"image too costly to decode ({size} of {header.scans} scans: {header.passes:.1f} passes over "
                f"{header.pixels / 1e6:.0f} megapixels, at most {MAX_DECODE_PASSES / 1e6:.0f} megapixel-passes)")
    return None


def check_image(data: bytes, what: str, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """The photo's header if it may be decoded; ImageRefusedError (with ``what`` in the message) if not."""
    try:
        header = read_header(data)
    except ImageRefusedError as exc:
        raise ImageRefusedError(f"{what}: {exc}") from None
    reason = too_costly(header, max_pixels)
    if reason is not None:
        raise ImageRefusedError(f"{what}: {reason}")
    return header
