"""Settings of the distributed mode: queues, frame store, backpressure, retries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genesis.config._base import StrictModel

QueueName = Literal["detect", "recognize", "analytics", "store", "gpu"]


class DistributedConfig(StrictModel):
    detect_queue: Literal["detect", "gpu"] = Field(
        default="detect", description="Queue of the person-detection tasks (gpu: consumed by `--gpu N` workers)."
    )
    recognize_queue: Literal["recognize", "gpu"] = Field(
        default="recognize",
        description="Queue of the ordered per-camera stage (tracking, face recognition, zones and lines).",
    )
    frame_ttl_s: int = Field(default=300, ge=5, description="How long frame JPEGs stay in Redis.")
    max_backlog: int = Field(
        default=200, ge=1, description="Capture drops frames while this many detect messages are waiting."
    )
    gap_timeout_s: float = Field(
        default=30.0, gt=0.0,
        description="A missing frame is skipped (and counted) after the next ones waited this long. The message "
        "of a detect worker that died comes back after visibility_timeout_s: to lose no frame then, make this "
        "longer than that; shorter keeps latency low and skips the frames of a dead worker.",
    )
    visibility_timeout_s: int = Field(
        default=3600, ge=10, description="Redis broker: an unacknowledged task is redelivered after this."
    )
    max_retries: int = Field(default=5, ge=0, description="Retries of a task on a transient error.")
    retry_backoff_max_s: int = Field(default=60, ge=1, description="Upper bound of the exponential backoff.")
    store_batch_frames: int = Field(default=25, ge=1, description="Frames per batched database write.")
