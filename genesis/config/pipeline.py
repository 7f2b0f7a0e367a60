"""Tracking and analytics settings shared by every camera."""

from __future__ import annotations

from pydantic import Field

from genesis.config._base import StrictModel

_DAY_S = 86400.0


class TrackerConfig(StrictModel):
    """supervision/roboflow `trackers` ByteTrack settings."""

    lost_track_buffer: int = Field(default=30, ge=0, description="Frames (at 30 fps) a lost track is kept.")
    track_activation_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    high_conf_det_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    minimum_iou_threshold: float = Field(default=0.1, gt=0.0, lt=1.0)
    minimum_consecutive_frames: int = Field(default=2, ge=1)


class PathConfig(StrictModel):
    """How a track's trajectory is sampled into stored points (``genesis.stages.path``): the first
    sighting of each track, then at most one point every ``interval_s`` seconds of media time, plus
    the sighting of every zone event or line crossing and of every change of direction."""

    interval_s: float = Field(
        default=1.0, gt=0, le=60,
        description="At most one time-sampled point per track per this many seconds (events and turns add more).",
    )
    turn_deg: float = Field(
        default=45.0, gt=0, le=180,
        description="A change of the walking direction beyond this angle (degrees) keeps a point.",
    )
    min_move_px: float = Field(
        default=16.0, ge=0,
        description="Foot-point moves shorter than this (pixels) never count as a change of direction.",
    )


class AnalyticsConfig(StrictModel):
    heatmap_cell_px: int = Field(default=8, ge=1, le=64, description="Heatmap grid cell size in pixels.")
    line_min_frames: int = Field(
        default=2, ge=1,
        description="Frames a track must stay on the new side of a line before a crossing counts (anti-flicker).",
    )
    snapshot_every_s: float = Field(
        default=60.0, gt=0,
        description="A camera's stored snapshot (the heatmap background) is refreshed at most this often.",
    )
    path: PathConfig = Field(default_factory=PathConfig, description="Trajectory points stored per track.")


class PipelineConfig(StrictModel):
    frame_stride: int = Field(default=1, ge=1, description="Process every Nth frame of the source.")
    jpeg_quality: int = Field(default=90, ge=10, le=100, description="JPEG quality of stored frames.")


class RetentionConfig(StrictModel):
    sightings_days: int = Field(default=30, ge=1)
    events_days: int = Field(default=365, ge=1)
    unknown_faces_days: int = Field(default=30, ge=1)
    pack_after_days: int = Field(
        default=1, ge=0,
        description="The segments, zone events and crossings of a UTC day's tracks that carry no name are packed, "
                    "per run and day, into one compressed row this many days later (read as before by reports, "
                    "lists, sightings and rollups; docs/analytics.md). A named track stays a row; naming a packed "
                    "one (review, clustering) takes it out of its pack first. 0: never.")

    def packed_after_days(self) -> int | None:
        """Days after which passages are packed (None: never)."""
        return self.pack_after_days or None

    def pack_cutoff(self, now: float) -> float | None:
        """The absolute time before which a track must have ended to be packed at ``now``: the start of the UTC
        day ``pack_after_days - 1`` days ago (a day's tracks are packed together, ``pack_after_days`` days after
        that day; None: never)."""
        if not self.pack_after_days:
            return None
        return (now // _DAY_S - self.pack_after_days + 1) * _DAY_S
