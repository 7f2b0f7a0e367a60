"""Cameras and the zones and lines drawn on them."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from genesis.config._base import StrictModel
from genesis.config.alerts import CameraAlertsConfig
from genesis.config.inference import MotionConfig, TilingConfig
from genesis.config.privacy import BlurMode

Point = tuple[float, float]
Units = Literal["normalized", "pixels"]

CAMERA_ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
"""The camera-id rule (configuration, CLI options, API parameters): it is a Redis key part, an MQTT
topic level (no ``/``, ``+``, ``#``) and a file name (``heatmap_<id>.png``)."""
MAX_CAMERA_ID = 64


def check_camera_id(value: str) -> str:
    """``value`` if it follows :data:`CAMERA_ID_PATTERN` (1 to 64 characters); ValueError, one line, if not."""
    if not 1 <= len(value) <= MAX_CAMERA_ID or not re.fullmatch(CAMERA_ID_PATTERN, value):
        shown = value[:MAX_CAMERA_ID].encode("unicode_escape").decode("ascii")
        raise ValueError(f"invalid camera id {shown!r}: use 1 to {MAX_CAMERA_ID} letters, digits, '_', '.' or '-'")
    return value


def _check_normalised(points: list[Point], units: Units) -> None:
    if units == "normalized":
        for x, y in points:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"point ({x}, {y}) is outside 0..1; set units: pixels for pixel coordinates")


class ZoneConfig(StrictModel):
    name: str = Field(min_length=1, max_length=64)
    points: list[Point] = Field(min_length=3, description="Polygon vertices.")
    units: Units = "normalized"
    restricted: bool = False
    max_occupancy: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> ZoneConfig:
        _check_normalised(self.points, self.units)
        return self

    def pixel_points(self, width: int, height: int) -> list[Point]:
        if self.units == "pixels":
            return list(self.points)
        return [(x * width, y * height) for x, y in self.points]


class LineConfig(StrictModel):
    name: str = Field(min_length=1, max_length=64)
    start: Point
    end: Point
    units: Units = "normalized"
    in_name: str = Field(default="in", description="Name of the crossing direction counted as 'in'.")
    out_name: str = Field(default="out", description="Name of the crossing direction counted as 'out'.")

    @model_validator(mode="after")
    def _check(self) -> LineConfig:
        _check_normalised([self.start, self.end], self.units)
        if self.start == self.end:
            raise ValueError("start and end of a line must differ")
        return self

    def pixel_points(self, width: int, height: int) -> tuple[Point, Point]:
        if self.units == "pixels":
            return self.start, self.end
        return (self.start[0] * width, self.start[1] * height), (self.end[0] * width, self.end[1] * height)


class CameraConfig(StrictModel):
    id: str = Field(min_length=1, max_length=MAX_CAMERA_ID, pattern=CAMERA_ID_PATTERN)
    name: str | None = None
    source: str | None = Field(default=None, description="Video file, RTSP/HTTP URL or webcam index.")
    fps: float | None = Field(default=None, gt=0.0, description="Processing rate for live sources.")
    max_width: int | None = Field(
        default=None, ge=160, le=8192,
        description="Frames wider than this are shrunk to it (aspect kept) as they are read, in both modes: every "
        "stage (detection, faces, zones, live view, stored boxes) sees this size, and a frame costs less to "
        "encode, carry and decode. For cameras larger than the detector needs (a 1080p or 4K stream); faces get "
        "fewer pixels, so keep it at 1280 or more where people must be named. None = as the camera sends.",
    )
    zones: list[ZoneConfig] = Field(default_factory=list)
    lines: list[LineConfig] = Field(default_factory=list)
    alerts: CameraAlertsConfig = Field(default_factory=CameraAlertsConfig, description="Alert rules (docs/alerts.md).")
    blur_faces: BlurMode | None = Field(
        default=None, description="Faces blurred in this camera's stored and shown images: unenrolled, everyone or "
        "off (default: unenrolled when privacy.blur_unenrolled_faces is on, else off). docs/privacy.md",
    )
    tiling: TilingConfig | None = Field(default=None, description="Sliced detection here (None: detector.tiling).")
    motion: MotionConfig | None = Field(default=None, description="Motion gating here (None: detector.motion).")

    @field_validator("zones", "lines")
    @classmethod
    def _unique_names(cls, items: list[ZoneConfig] | list[LineConfig]) -> list[ZoneConfig] | list[LineConfig]:
        names = [i.name for i in items]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate names: {', '.join(dupes)}")
        return items

    @model_validator(mode="after")
    def _check_alerts(self) -> CameraConfig:
        self.alerts.check_zones([z.name for z in self.zones])
        return self
