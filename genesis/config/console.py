"""The operator's console: live view and review queue (docs/api.md, Dashboard)."""

from __future__ import annotations

from pydantic import Field

from genesis.config._base import StrictModel


class ConsoleConfig(StrictModel):
    live: bool = Field(default=True, description="Publish each camera's latest frame for the live view "
                       "(only while someone watches it).")
    live_interval_s: float = Field(default=0.5, ge=0.1, le=60, description="At most one live frame per camera "
                                   "this often (0.5: two a second).")
    live_max_side: int = Field(default=960, ge=64, le=4096, description="Live frames are scaled down to at most "
                               "this many pixels on their longest side.")
    live_jpeg_quality: int = Field(default=70, ge=10, le=100, description="JPEG quality of live frames.")
    live_watch_s: float = Field(default=5.0, ge=1, le=120, description="A browser polling a camera keeps it "
                                "'watched' this long; publishing stops this long after the last viewer left.")
    live_stale_s: float = Field(default=5.0, ge=1, le=3600, description="A live frame older than this is not "
                                "shown: the camera card says since when there has been no frame.")
    events_poll_s: float = Field(default=1.0, ge=0.2, le=60, description="The console's live updates "
                                 "(`/api/console/events`, server-sent events) look for changes this often.")
    events_max_s: float = Field(default=300.0, ge=10, le=3600, description="One live-updates stream ends after "
                                "this long (the browser reconnects at once): a session that ended is noticed.")
    review_margin: float = Field(default=0.1, ge=0, le=2, description="The review queue lists named faces whose "
                                 "distance is within this much of the recognition threshold (low margin).")
