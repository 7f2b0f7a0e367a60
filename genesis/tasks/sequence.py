"""Queue ``recognize`` (or ``gpu``): the ordered per-camera stage, run by whoever holds the lock."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from celery import signals

from genesis.adapters.broker import queue_wait_s
from genesis.adapters.db.alerts import AlertStore
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.frame_store import FrameDecodeError, decode_jpeg
from genesis.adapters.redis_keys import gap_check_key, kick_key, mqtt_memory_key, wake_key
from genesis.celery import app
from genesis.config import Settings
from genesis.domain import FrameOutcome, FrameRef, ZoneEvent
from genesis.domain.codec import encode
from genesis.pipeline.liveness import touch_progress
from genesis.pipeline.loop import BaseSink, BatchRows, CompositeSink, Image, RunProgress, Sink
from genesis.pipeline.sequencer import LOCK_TTL_MS, Sequencer, StateError
from genesis.pipeline.sinks import LiveSink, MqttEventsSink
from genesis.services.alerts import prime
from genesis.services.heatmap import keep_snapshot_distributed
from genesis.services.live import LivePublisher, RedisLive
from genesis.services.mqtt_events import MQTT_MEMORY_TTL_S, EventMemory, MqttSink, open_sink
from genesis.services.privacy import FrameView, live_encoder, view_of
from genesis.stages.camera import CameraState
from genesis.stages.recognize import TrackRecognizer
from genesis.tasks import routing, runtime
from genesis.tasks.alerts import run_time_origin, send_alerts
from genesis.tasks.base import PermanentError, PipelineTask
from genesis.tasks.dispatch import resend_missing
from genesis.tasks.identities import send_track_faces

log = logging.getLogger(__name__)


def _import_the_ordered_stage(**_: Any) -> None:
    """A worker of the ordered stage imports what it tracks and counts with (supervision, deferred in
    ``genesis.stages.analytics`` so that the other processes never load it) before it takes work, in the main
    process, so prefork children inherit it: its first frame does not pay for the import, and its memory is
    from the start what it will stay (the soak's flat-memory check)."""
    if not runtime.consumes(app, routing.SEQUENCE):
        return
    import supervision  # noqa: F401


signals.worker_init.connect(_import_the_ordered_stage, weak=False, dispatch_uid="genesis-sequence-preload")


# A pool child (prefork) or the worker itself (solo/threads) that stops flushes its MQTT buffer.
signals.worker_process_shutdown.connect(runtime.close_mqtt, weak=False, dispatch_uid="genesis-mqtt-close-child")
signals.worker_shutdown.connect(runtime.close_mqtt, weak=False, dispatch_uid="genesis-mqtt-close")


@functools.cache
def live_publisher() -> LivePublisher:
    """One per worker process: it caches the "someone is watching" flag for a second."""
    publisher = LivePublisher.from_settings(runtime.settings(), RedisLive(runtime.redis_client()))
    publisher.encode = live_encoder(runtime.redactor)  # each camera's privacy blur, if any
    return publisher


class CelerySink(BaseSink):
    """The run loop's sink in distributed mode: each batch's rows to the store queue, its alerts
    to the alert tasks, the heatmap background now and then (with the privacy blur); at the end
    the tracks, the track faces and the run's meta (the twin of
    :class:`~genesis.pipeline.sinks.LocalSink`)."""

    def __init__(self, settings: Settings, run_id: str, time_origin: float, blur: bool = False) -> None:
        self.settings, self.run_id, self.time_origin, self.blur = settings, run_id, time_origin, blur
        self.view = FrameView()
        """The privacy blur's view of the last frame (the one a snapshot may store)."""

    def on_frame(self, outcome: FrameOutcome, image: Image, camera: CameraState) -> None:
        if self.blur:
            self.view = view_of(outcome, camera)

    def _send(self, name: str, args: list[Any]) -> None:
        app.send_task(name, args=args, queue=routing.queue_of(self.settings, name))

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        send_alerts(self.run_id, self.time_origin, list(outcomes))
        moving = [o for o in outcomes if not o.tracked.frame.static]  # a still frame's pixels are not stored
        if moving:
            self._keep_snapshot(moving[-1].tracked.frame)
        rows = BatchRows.of(outcomes, closing)
        if not rows.analytics:  # frames without people: nothing to store
            return
        payload: dict[str, Any] = {
            "sightings": [encode(x) for x in rows.sightings],  # summed into the heatmap grid, not stored
            "points": [encode(x) for x in rows.points],
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
            redactor = runtime.redactor(ref.camera_id)
            view, quality = self.view, self.settings.pipeline.jpeg_quality

            def redact(jpeg: bytes) -> bytes:
                assert redactor is not None
                return redactor.jpeg(jpeg, view, quality)

            keep_snapshot_distributed(runtime.redis_client(), AnalyticsStore(runtime.repository()),
                                      runtime.frame_store(), ref, self.settings.analytics.snapshot_every_s,
                                      redact if redactor is not None else None)
        except Exception:  # a snapshot is best effort: never fail the ordered stage for it
            log.warning("camera %s: snapshot not stored", ref.camera_id, exc_info=True)

    def on_tracks_retired(self, camera: CameraState, retired: TrackRecognizer) -> None:
        self._send(routing.SAVE_TRACKS, [self.run_id, [encode(t) for t in camera.track_records(retired)]])
        send_track_faces(app, self.settings, self.run_id, camera, retired)

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        self.on_tracks_retired(camera, camera.recognizer)  # the tracks still held, sent as the retired ones
        self._send(routing.FINISH_RUN, [self.run_id, progress.frames, progress.run_meta()])


class RedisMqttSink(MqttEventsSink):
    """MQTT events from the ordered stage (frame order; the retained state is the camera's latest),
    with what was announced kept in Redis for the next pass, maybe on another worker."""

    def __init__(self, mqtt: MqttSink, redis: Any, run_id: str) -> None:
        super().__init__(mqtt)
        self.redis, self.run_id = redis, run_id

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        super().on_batch(outcomes, closing)
        self.redis.set(mqtt_memory_key(self.run_id), self.mqtt.events.memory.to_json(), ex=MQTT_MEMORY_TTL_S)

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        super().on_finish(camera, progress)
        self.redis.delete(mqtt_memory_key(self.run_id))


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

    redis = runtime.redis_client()
    camera = s.camera(camera_id)
    sinks: list[Sink] = [CelerySink(s, run_id, time_origin, blur=s.blur_mode(camera) != "off"),
                         LiveSink(live_publisher(), run_id)]
    if s.mqtt.enabled:
        mqtt = open_sink(s, camera, run_id, time_origin, runtime.mqtt_publisher(),
                         EventMemory.from_json(redis.get(mqtt_memory_key(run_id))), runtime.redactor(camera_id))
        if mqtt is not None:
            sinks.append(RedisMqttSink(mqtt, redis, run_id))

    def resend(after_seq: int, missing_seq: int) -> float | None:
        sent = resend_missing(app, s, redis, run_id, after_seq, missing_seq)
        if not sent:
            return None
        # Behind a backlog (an overloaded site) the messages sent again wait their turn: the gap's second wait
        # starts when they are expected to leave the queue, at most what admission control lets wait there.
        queued_s = queue_wait_s(app, routing.queue_of(s, routing.DETECT), s.distributed.max_backlog_s)
        log.warning("run %s: frames %d-%d missing for %g s: their detect messages (last frames %s) sent "
                    "again (%.0f s of backlog ahead of them)", run_id, after_seq + 1, missing_seq,
                    s.distributed.gap_timeout_s, sent, queued_s)
        return queued_s

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
        sink=CompositeSink(sinks),  # more consumers of frames or batches: add them to ``sinks``
        prepare=prepare,
        resend=resend,
        release=runtime.frame_store().delete_many,  # processed frames leave the frame store at once
    )
    try:
        finished = seq.run()
    except StateError as exc:  # tampered with, or written by another version: never executed
        raise PermanentError(f"run {run_id}: {exc}") from None
    touch_progress(redis, run_id, s.distributed.run_stale_after_s)  # the run is alive
    if finished:
        return
    if seq.more:  # its turn ended with results left: another turn, behind the other cameras' waiting tasks
        self.apply_async(args=[camera_id, run_id])
    elif seq.busy:
        # Another worker holds the lock. If it died, nothing may come to wake the run once its
        # lock expires: one delayed look per lock lifetime (not one per detect task).
        ttl_s = LOCK_TTL_MS / 1000
        if redis.set(kick_key(run_id), "1", nx=True, ex=int(ttl_s)):
            self.apply_async(args=[camera_id, run_id], countdown=ttl_s + 1)
    elif seq.waiting_on_gap():
        # Nothing else may come to wake us if the missing frame never arrives: look again once
        # the gap's wait has passed (one pending look per run, not one per pass).
        wait = seq.gap_due_in_s()
        if redis.set(gap_check_key(run_id), "1", nx=True, ex=max(1, int(wait))):
            self.apply_async(args=[camera_id, run_id], countdown=wait + 0.5)
