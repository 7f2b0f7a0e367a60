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
        default=200, ge=1, description="Capture drops frames while this many detect messages are waiting "
        "(each holds at most detect_batch_frames frames)."
    )
    detect_batch_frames: int = Field(
        default=8, ge=1, le=64,
        description="Most frames of a file per detect message. Capture batches only while detect messages are "
        "already waiting (the workers are behind, so batching adds no delay); with an idle queue, and for live "
        "sources, every frame is sent at once.",
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
    task_events: bool = Field(
        default=False,
        description="Workers send Celery task events from the start. Off: they cost a round trip to the broker "
        "per task; Flower (and `celery control enable_events`) switches them on in running workers when needed.",
    )
