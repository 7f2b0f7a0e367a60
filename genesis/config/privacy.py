"""The privacy blur of the images Genesis stores or shows (``privacy``, ``cameras[].blur_faces``).
See docs/privacy.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genesis.config._base import StrictModel

BlurMode = Literal["unenrolled", "everyone", "off"]


class PrivacyConfig(StrictModel):
    """Blur faces in every image Genesis stores or shows (snapshots, heatmap backgrounds,
    ``annotated.mp4``, live view). Recognition itself still sees the real frames."""

    blur_unenrolled_faces: bool = Field(
        default=False, description="Blur the faces of people who are not enrolled (per camera: cameras[].blur_faces).",
    )
    method: Literal["pixelate", "fill"] = Field(
        default="pixelate", description="pixelate: a few coarse blocks, then blurred; fill: one flat colour.",
    )
    blocks: int = Field(default=4, ge=2, le=16, description="Pixelate: blocks across a face (fewer = less left).")
    expand: float = Field(default=0.25, ge=0.0, le=1.0,
                          description="Grow each face box by this fraction of its size on every side.")
    score_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="YuNet score a face needs to be blurred (lower than recognition's: missing a face is worse).",
    )
    min_face_px: int = Field(default=8, ge=8, description="Smallest face side (pixels) that is blurred.")
