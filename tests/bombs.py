"""Image bombs for the upload tests: tiny files that declare huge rasters (written, never decoded here)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, side: int) -> Path:
    """A valid 1-bit greyscale PNG of ``side`` x ``side`` black pixels (32000: about 124 KB)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
                     + _chunk(b"IEND", b""))
    return path


def rle_bmp_bomb(path: Path, side: int = 32000) -> Path:
    """An 8-bit RLE BMP of ``side`` x ``side`` pixels in about 1 KB (the pixels: one end-of-bitmap)."""
    palette = b"\x00\x00\x00\x00" * 256
    pixels = b"\x00\x01"  # end of bitmap
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    path.write_bytes(header + info + palette + pixels)
    return path


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def progressive_jpeg_bomb(path: Path, side: int = 6000, scans: int = 3000) -> Path:
    """A progressive JPEG of ``side`` x ``side`` (3 components, no subsampling) made of ``scans``
    empty scans: a DC scan, then AC scans over one component at a time (6000, 3000: about 30 KB).
    The decoder accepts it (warnings only: premature end of each scan) and passes over the whole
    coefficient buffer once per scan: 3000 scans of 6000 x 6000 take about 100 s."""
    dqt = _segment(0xDB, b"\x00" + b"\x01" * 64)
    sof = _segment(0xC2, struct.pack(">BHHB", 8, side, side, 3) + b"".join(bytes([c, 0x11, 0]) for c in (1, 2, 3)))
    one_code = bytes([1] + [0] * 15) + b"\x00"  # one symbol (0: DC diff 0 / AC end of block), code "0"
    dht = _segment(0xC4, b"\x00" + one_code + b"\x10" + one_code)
    dc = _segment(0xDA, bytes([3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 0, 0]))
    ac = [_segment(0xDA, bytes([1, 1 + k % 3, 0x00, 1, 63, 0])) for k in range(scans - 1)]
    path.write_bytes(b"\xff\xd8" + dqt + sof + dht + dc + b"".join(ac) + b"\xff\xd9")
    return path
