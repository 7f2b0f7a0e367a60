"""Queue ``recognize`` (or ``gpu``): the ordered per-camera stage, run by whoever holds the lock."""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from genesis.adapters.db.alerts import AlertStore
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.frame_store import FrameDecodeError, decode_jpeg
from genesis.celery import app
from genesis.domain import FrameOutcome, FrameRef, ZoneEvent
from genesis.domain.codec import encode
from genesis.pipeline.liveness import touch_progress
from genesis.pipeline.sequencer import (
    LOCK_TTL_MS,
    Sequencer,
    SequencerState,
    gap_check_key,
    kick_key,
    run_meta_for_report,
    wake_key,
)
from genesis.services.alerts import prime
from genesis.services.heatmap import keep_snapshot_distributed
from genesis.services.live import LivePublisher, RedisLive
from genesis.services.mqtt_events import MQTT_MEMORY_TTL_S, EventMemory, mqtt_memory_key, open_sink
from genesis.services.privacy import FrameView, view_of
from genesis.stages.camera import CameraState
from genesis.tasks import routing, runtime
from genesis.tasks.alerts import run_time_origin, send_alerts
from genesis.tasks.base import PermanentError, PipelineTask
from genesis.tasks.identities import send_track_faces

log = logging.getLogger(__name__)


@functools.cache
def live_publisher() -> LivePublisher:
    """One per worker process: it caches the "someone is watching" flag for a second."""
    return LivePublisher.from_settings(runtime.settings(), RedisLive(runtime.redis_client()))


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

    # MQTT is published from this ordered stage: events come out in frame order, and the retained
    # state (people in view, zone occupancy) is the camera's latest; the analytics queue has no order.
    redis = runtime.redis_client()
    mqtt = open_sink(s, s.camera(camera_id), run_id, time_origin, runtime.mqtt_publisher(),
                     EventMemory.from_json(redis.get(mqtt_memory_key(run_id)))) if s.mqtt.enabled else None
    closed: list[ZoneEvent] = []
    blur = s.blur_mode(s.camera(camera_id)) != "off"
    views: dict[int, FrameView] = {}  # the privacy blur's view of the frame a snapshot may store

    def observe(outcome: FrameOutcome, cam: CameraState) -> None:
        if mqtt is not None:
            mqtt.observe(outcome, cam)
        if blur:
            views.clear()
            views[outcome.tracked.frame.seq] = view_of(outcome, cam)

    def emit(outcomes: list[FrameOutcome], closing: list[ZoneEvent]) -> None:
        closed.extend(closing)
        if mqtt is not None:  # what was announced, for the next pass (maybe on another worker)
            redis.set(mqtt_memory_key(run_id), mqtt.events.memory.to_json(), ex=MQTT_MEMORY_TTL_S)
        send_alerts(run_id, time_origin, outcomes)
        payload = {
            "sightings": [encode(x) for o in outcomes for x in o.sightings],
            "attempts": [encode(x) for o in outcomes for x in o.attempts],
            "zone_events": [encode(x) for o in outcomes for x in o.zone_events] + [encode(x) for x in closing],
            "crossings": [encode(x) for o in outcomes for x in o.crossings],
        }
        if outcomes:
            keep_snapshot(outcomes[-1].tracked.frame)
        if not any(payload.values()):  # frames without people: nothing to store
            return
        # For the end-to-end latency metric only (the store task does not write it).
        payload["captured_at"] = [o.tracked.frame.captured_at for o in outcomes if o.sightings or o.attempts
                                  or o.zone_events or o.crossings]
        app.send_task(routing.SAVE_OUTCOME, args=[run_id, payload], queue=routing.queue_of(s, routing.SAVE_OUTCOME))

    def keep_snapshot(ref: FrameRef) -> None:
        """The camera's heatmap background, at most every analytics.snapshot_every_s."""
        try:
            redactor = runtime.redactor(ref.camera_id)
            view = views.get(ref.seq, FrameView())

            def redact(jpeg: bytes) -> bytes:
                assert redactor is not None
                return redactor.jpeg(jpeg, view, s.pipeline.jpeg_quality)

            keep_snapshot_distributed(runtime.redis_client(), AnalyticsStore(runtime.repository()),
                                      runtime.frame_store(), ref, s.analytics.snapshot_every_s,
                                      redact if redactor is not None else None)
        except Exception:  # a snapshot is best effort: never fail the ordered stage for it
            log.warning("camera %s: snapshot not stored", ref.camera_id, exc_info=True)

    def finish(state: SequencerState) -> None:
        if mqtt is not None:
            mqtt.end(closed, state.camera)
            redis.delete(mqtt_memory_key(run_id))
        tracks = [encode(t) for t in state.camera.track_records()]
        app.send_task(routing.SAVE_TRACKS, args=[run_id, tracks], queue=routing.queue_of(s, routing.SAVE_TRACKS))
        send_track_faces(app, s, run_id, state.camera)
        app.send_task(
            routing.FINISH_RUN, args=[run_id, state.frames, run_meta_for_report(state)],
            queue=routing.queue_of(s, routing.FINISH_RUN),
        )

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
        emit_outcomes=emit,
        finish=finish,
        prepare=prepare,
        observe=observe,
        live=live_publisher(),
    )
    finished = seq.run()
    touch_progress(runtime.redis_client(), run_id, s.distributed.run_stale_after_s)  # the run is alive
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
