"""Photos the tests search with."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def face_photo(jpeg: bytes, out: Path) -> Path:
    """A photo of one face: a kept face crop (the face and a quarter around it) enlarged 4x on a grey margin. A
    whole frame of a crowd would not do: a search takes the photo's largest face, which there is anyone's."""
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the face crop is not an image"
    big = cv2.resize(image, None, fx=4.0, fy=4.0, interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(out), cv2.copyMakeBorder(big, 48, 48, 48, 48, cv2.BORDER_CONSTANT, value=(128, 128, 128)))
    return out
