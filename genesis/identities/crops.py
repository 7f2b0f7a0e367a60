"""Track faces at rest: the crop of a segment's best face is kept as WebP and served as JPEG.

The pipeline makes each face crop as a JPEG (at most ``FACE_CROP_PX``, quality 85: what MQTT snapshots and the
sequencer's state carry). At 60-120 px most of a JPEG is its own tables (about 600 bytes of quantisation and
Huffman tables per file); WebP at quality 80 holds the same face in about half the bytes, and on PostgreSQL a
``track_faces`` row then stays under the 2 kB above which the crop is moved to the TOAST table (measured in
docs/benchmarks.md, "Face crops as WebP"). Readers get JPEG whatever the row holds: crops stored before this
change are JPEG and pass through as they are.
"""

from __future__ import annotations

import cv2
import numpy as np

STORED_QUALITY = 80
"""WebP quality of a stored crop (0-100)."""
SERVED_QUALITY = 90
"""JPEG quality of a stored WebP crop served to a reader."""


def is_webp(blob: bytes) -> bool:
    return len(blob) >= 12 and blob[:4] == b"RIFF" and blob[8:12] == b"WEBP"


def _decode(blob: bytes, what: str) -> np.ndarray:
    try:
        image = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), cv2.IMREAD_COLOR) if blob else None
    except cv2.error:
        image = None
    if image is None:
        raise ValueError(f"the face crop is not a readable {what}")
    return image


def for_storage(jpeg: bytes) -> bytes:
    """The crop to store: WebP, or the JPEG itself where WebP is not smaller (ValueError: not an image)."""
    if is_webp(jpeg):
        return jpeg
    image = _decode(jpeg, "image")
    ok, buf = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, STORED_QUALITY])
    if not ok:
        raise ValueError("the face crop could not be encoded as WebP")
    webp = buf.tobytes()
    return webp if len(webp) < len(jpeg) else jpeg


def as_jpeg(blob: bytes) -> bytes:
    """A stored crop as JPEG: a WebP one re-encoded, a JPEG one (stored before WebP, or where it was smaller) as
    it is."""
    if not is_webp(blob):
        return blob
    ok, buf = cv2.imencode(".jpg", _decode(blob, "WebP"), [cv2.IMWRITE_JPEG_QUALITY, SERVED_QUALITY])
    if not ok:
        raise ValueError("the face crop could not be encoded as JPEG")
    return buf.tobytes()
