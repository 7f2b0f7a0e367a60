"""Settings of the distributed mode: queues, frame store, backpressure, retries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from genesis.config._base import StrictModel

QueueName = Literal["detect", "recognize", "analytics", "store", "gpu"]

GAP_MARGIN_S = 5.0
"""A detect task stopped by its time limit is sent again at once and runs again: this much of the gap timeout
is left for that (task_time_limit_s of the detect queue + this <= gap_timeout_s)."""


class DistributedConfig(StrictModel):
    detect_queue: Literal["detect", "gpu"] = Field(
        default="detect", description="Queue of the person-detection tasks (gpu: consumed by `--gpu N` workers)."
    )
    recognize_queue: Literal["recognize", "gpu"] = Field(
        default="recognize",
        description="Queue of the ordered per-camera stage (tracking, face recognition, zones and lines).",
    )
    frame_ttl_s: int = Field(
        default=300, ge=5,
        description="How long frame JPEGs stay in Redis at most (at least twice max_backlog_s plus gap_timeout_s); "
        "a frame the ordered stage has processed leaves at once.",
    )
    max_backlog: int = Field(
        default=200, ge=1, description="Capture drops frames while this many detect messages are waiting "
        "(each holds at most detect_batch_frames frames)."
    )
    max_backlog_s: float = Field(
        default=120.0, gt=0.0,
        description="Capture drops a live camera's frames (counted, reason backpressure), and holds a file back "
        "(reads no further, loses nothing), while the workers need longer than this "
        "to drain what waits on the detect or recognize queue, at the rate they finished tasks in the last 60 s "
        "(5 at least): a frame that is admitted is processed before it expires (frame_ttl_s), instead of expiring "
        "in a queue. Before any rate is measured only max_backlog applies. Checked at start: twice this plus "
        "gap_timeout_s fits in frame_ttl_s (a frame may wait for detection, then for the ordered stage).",
    )
    frame_memory_limit: float = Field(
        default=0.9, gt=0.0, le=1.0,
        description="Capture stores no frame while the frame store's Redis uses more than this fraction of its "
        "maxmemory: the frames are dropped and counted (reason redis_full), and the rest of the memory stays for "
        "queued tasks, results, run state and end markers. No effect on a Redis without maxmemory.",
    )
    detect_batch_frames: int = Field(
        default=8, ge=1, le=64,
        description="Most frames of a file per detect message. Capture batches only while detect messages are "
        "already waiting (the workers are behind, so batching adds no delay); with an idle queue, and for live "
        "sources, every frame is sent at once.",
    )
    detect_batch_size: int = Field(
        default=32, ge=1, le=256,
        description="Most frames per detector call in a batching detect worker (`workers/detect.py --gpu N`, or "
        "`--batch`): it runs this many detect tasks at once (threads pool) and one inference thread gathers their "
        "frames, from any camera, into one batch (docs/architecture.md, Batched detection). 1: no batching.",
    )
    detect_batch_wait_ms: float = Field(
        default=20.0, ge=0.0, le=1000.0,
        description="Longest wait of a frame for the rest of its batch. The batch runs sooner when it is full or "
        "when every running detect task has handed its frames in, so a worker with one task at a time never waits.",
    )
    gap_timeout_s: float = Field(
        default=30.0, gt=0.0,
        description="A missing frame is skipped (and counted) after the next ones waited this long. The message "
        "of a worker that died is put back on its queue by the live workers worker_dead_after_s after its last "
        "heartbeat, so this must be at least twice worker_dead_after_s (checked at start).",
    )
    visibility_timeout_s: int = Field(
        default=3600, ge=10,
        description="Redis broker: an unacknowledged task is redelivered after this, whatever its holder. Only a "
        "backstop (a hung but living worker, a worker without the Genesis hooks): dead workers' messages come back "
        "after worker_dead_after_s. Must exceed the longest task and countdown.",
    )
    worker_heartbeat_s: float = Field(
        default=2.0, gt=0.0, le=30.0,
        description="Every worker process writes a heartbeat to the broker's Redis this often (a thread: a long "
        "task does not stop it).",
    )
    worker_dead_after_s: float = Field(
        default=10.0, ge=3.0,
        description="A worker whose heartbeat is older than this is dead: the messages it held (taken, not "
        "acknowledged) go back to their queue, put there by any live worker. A slow but living worker keeps "
        "beating and keeps its messages.",
    )
    run_stale_after_s: float = Field(
        default=60.0, ge=10.0,
        description="A distributed run still `running` with no capture heartbeat, no task working on it and no "
        "message waiting for it for this long is abandoned: marked failed (why in its meta) and its Redis keys "
        "expire.",
    )
    site_id: str | None = Field(
        default=None, min_length=1, max_length=255,
        description="Which site this process belongs to. Every distributed run records its site, and the "
        "stale-run check (run_stale_after_s) judges only the runs of its own site: sites that share one database "
        "with Redis servers of their own never fail each other's runs. Unset: the address of redis_url "
        "(host:port/db, without credentials), the same for every process of the site. Set it when two sites "
        "sharing a database write the address of their Redis the same way (e.g. both redis:6379/1).",
    )
    task_time_limit_s: dict[QueueName, float] = Field(
        default_factory=lambda: dict[QueueName, float]({"detect": 15.0, "gpu": 15.0}),
        description="Hard time limit of one task, per queue. A task past it is stopped (its pool child killed) and "
        "sent again at once as a retry with twice the limit (counted against max_retries), not dead-lettered: the "
        "message of a hung worker (a pool child stopped or stuck while its main process keeps beating) comes back "
        "within the limit, well inside gap_timeout_s. A detect worker's children load the detector before they "
        "take work, so the limit covers the frames only. Celery enforces it in prefork pools (the detect and "
        "analytics workers); a solo worker (recognize, store, GPU) cannot be interrupted by it. A queue left out "
        "has no limit. The detect queue's limit must be "
        "at least 5 s shorter than gap_timeout_s (checked at start); raise both with detect_batch_frames.",
    )
    max_retries: int = Field(
        default=8, ge=0,
        description="Retries of a task on a transient error (the database or Redis away). The waits double from "
        "1 s up to retry_backoff_max_s, each a random time between half and all of that: with the defaults a "
        "task outlasts an outage of 91 s at least (a database restart or failover) before its dead letter.",
    )
    retry_backoff_max_s: int = Field(default=60, ge=1, description="Upper bound of the exponential backoff.")
    store_batch_frames: int = Field(default=25, ge=1, description="Frames per batched database write.")
    task_events: bool = Field(
        default=False,
        description="Workers send Celery task events from the start. Off: they cost a round trip to the broker "
        "per task; Flower (and `celery control enable_events`) switches them on in running workers when needed.",
    )

    @model_validator(mode="after")
    def _gap_waits_for_dead_workers(self) -> DistributedConfig:
        if self.gap_timeout_s < 2 * self.worker_dead_after_s:
            raise ValueError(
                f"distributed.gap_timeout_s ({self.gap_timeout_s:g}) must be at least twice "
                f"distributed.worker_dead_after_s ({self.worker_dead_after_s:g}), or the frames of a dead "
                "worker are skipped before they come back"
            )
        if 2 * self.max_backlog_s + self.gap_timeout_s > self.frame_ttl_s:
            raise ValueError(
                f"distributed.frame_ttl_s ({self.frame_ttl_s}) must be at least twice distributed.max_backlog_s "
                f"({self.max_backlog_s:g}) plus distributed.gap_timeout_s ({self.gap_timeout_s:g}), or admitted "
                "frames expire in the queues"
            )
        for queue, queue_limit in self.task_time_limit_s.items():
            if queue_limit <= 0:
                raise ValueError(f"distributed.task_time_limit_s.{queue} must be positive (leave the queue out "
                                 "for no limit)")
        limit = self.task_time_limit_s.get(self.detect_queue)
        if limit is not None and limit + GAP_MARGIN_S > self.gap_timeout_s:
            raise ValueError(
                f"distributed.task_time_limit_s.{self.detect_queue} ({limit:g}) must be at least {GAP_MARGIN_S:g} s "
                f"shorter than distributed.gap_timeout_s ({self.gap_timeout_s:g}), or a hung worker's frames are "
                "skipped before its message comes back and runs again"
            )
        if self.worker_heartbeat_s * 2 > self.worker_dead_after_s:
            raise ValueError(
                f"distributed.worker_heartbeat_s ({self.worker_heartbeat_s:g}) must be at most half of "
                f"distributed.worker_dead_after_s ({self.worker_dead_after_s:g})"
            )
        return self

    def retry_window_s(self) -> tuple[float, float]:
        """The shortest and the longest time a task keeps retrying a transient error: the outage it
        outlasts for sure, and the longest before its dead letter (the waits of
        :class:`genesis.tasks.base.PipelineTask`: half to all of ``min(cap, 2**n)`` s)."""
        waits = [float(min(self.retry_backoff_max_s, 2**n)) for n in range(self.max_retries)]
        return sum(waits) / 2, sum(waits)
