"""Queue ``recognize`` (or ``gpu``): the ordered per-camera stage, run by whoever holds the lock."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from genesis.adapters.db.alerts import AlertStore
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.frame_store import FrameDecodeError, decode_jpeg
from genesis.adapters.redis_keys import gap_check_key, kick_key, wake_key
from genesis.celery import app
from genesis.config import Settings
from genesis.domain import FrameOutcome, FrameRef, ZoneEvent
from genesis.domain.codec import encode
from genesis.pipeline.loop import BaseSink, BatchRows, CompositeSink, RunProgress
from genesis.pipeline.sequencer import LOCK_TTL_MS, Sequencer, StateError
from genesis.services.alerts import prime
from genesis.services.heatmap import keep_snapshot_distributed
from genesis.stages.camera import CameraState
from genesis.tasks import routing, runtime
from genesis.tasks.alerts import run_time_origin, send_alerts
from genesis.tasks.base import PermanentError, PipelineTask
from genesis.tasks.identities import send_track_faces

log = logging.getLogger(__name__)


class CelerySink(BaseSink):
    """The run loop's sink in distributed mode: each batch's rows to the store queue, its alerts
    to the alert tasks, the heatmap background now and then; at the end the tracks, the track
    faces and the run's meta (the twin of :class:`~genesis.pipeline.sinks.LocalSink`)."""

    def __init__(self, settings: Settings, run_id: str, time_origin: float) -> None:
        self.settings, self.run_id, self.time_origin = settings, run_id, time_origin

    def _send(self, name: str, args: list[Any]) -> None:
        app.send_task(name, args=args, queue=routing.queue_of(self.settings, name))

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        send_alerts(self.run_id, self.time_origin, list(outcomes))
        if outcomes:
            self._keep_snapshot(outcomes[-1].tracked.frame)
        rows = BatchRows.of(outcomes, closing)
        if not rows.analytics:  # frames without people: nothing to store
            return
        payload: dict[str, Any] = {
            "sightings": [encode(x) for x in rows.sightings],
            "attempts": [encode(x) for x in rows.attempts],
            "zone_events": [encode(x) for x in rows.zone_events],
            "crossings": [encode(x) for x in rows.crossings],
            # For the end-to-end latency metric only (the store task does not write it).
            "captured_at": [o.tracked.frame.captured_at for o in outcomes if o.sightings or o.attempts
                            or o.zone_events or o.crossings],
        }
        self._send(routing.SAVE_OUTCOME, [self.run_id, payload])

    def _keep_snapshot(self, ref: FrameRef) -> None:
        """The camera's heatmap background, at most every analytics.snapshot_every_s."""
        try:
            keep_snapshot_distributed(runtime.redis_client(), AnalyticsStore(runtime.repository()),
                                      runtime.frame_store(), ref, self.settings.analytics.snapshot_every_s)
        except Exception:  # a snapshot is best effort: never fail the ordered stage for it
            log.warning("camera %s: snapshot not stored", ref.camera_id, exc_info=True)

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        self._send(routing.SAVE_TRACKS, [self.run_id, [encode(t) for t in camera.track_records()]])
        send_track_faces(app, self.settings, self.run_id, camera)
        self._send(routing.FINISH_RUN, [self.run_id, progress.frames, progress.run_meta()])


@app.task(base=PipelineTask, name=routing.SEQUENCE, bind=True)
def sequence(self: Any, camera_id: str, run_id: str) -> None:
    s = runtime.settings()
    meta = runtime.run_meta(run_id)
    if meta is None:
        raise PermanentError(f"unknown run {run_id}")

    def load_image(ref: FrameRef) -> np.ndarray:
        data = runtime.frame_store().get(ref.key)
        if data is None:
            raise FrameDecodeError(f"frame {ref.key} expired before recognition")
        return decode_jpeg(data)

    time_origin = run_time_origin(run_id)

    def prepare(cam: CameraState) -> None:
        prime(cam, AlertStore(runtime.repository().engine), s, time_origin)

    # Clear the wake flag before reading any result: a detect task that pushes a result after
    # our reads will find it clear and send the next wake.
    runtime.redis_client().delete(wake_key(run_id))
    seq = Sequencer(
        redis=runtime.redis_client(),
        settings=s,
        camera=s.camera(camera_id),
        run_id=run_id,
        run_meta=meta,
        faces=runtime.face_models(run_id),
        load_image=load_image,
        sink=CompositeSink([CelerySink(s, run_id, time_origin)]),  # more consumers: add them here
        prepare=prepare,
    )
    try:
        finished = seq.run()
    except StateError as exc:  # tampered with, or written by another version: never executed
        raise PermanentError(f"run {run_id}: {exc}") from None
    if finished:
        return
    redis = runtime.redis_client()
    if seq.busy:
        # Another worker holds the lock. If it died, nothing may come to wake the run once its
        # lock expires: one delayed look per lock lifetime (not one per detect task).
        ttl_s = LOCK_TTL_MS / 1000
        if redis.set(kick_key(run_id), "1", nx=True, ex=int(ttl_s)):
            self.apply_async(args=[camera_id, run_id], countdown=ttl_s + 1)
    elif seq.waiting_on_gap():
        # Nothing else may come to wake us if the missing frame never arrives: look again once
        # the gap timeout has passed (one pending look per run, not one per pass).
        wait = s.distributed.gap_timeout_s
        if redis.set(gap_check_key(run_id), "1", nx=True, ex=max(1, int(wait))):
            self.apply_async(args=[camera_id, run_id], countdown=wait + 0.5)
