"""Sinks of the run loop that an embedded run uses (and observers both modes share).

:class:`LocalSink` is where an embedded run's results go, in the same process: rows to the
repository, alerts stored and delivered by :class:`~genesis.services.alerts.EmbeddedAlerts` (a
background thread), the camera's heatmap background by a
:class:`~genesis.services.heatmap.SnapshotKeeper` (with the privacy blur), and at the end the
tracks, the best face of each track and the run's meta. Its distributed twin, ``CelerySink`` in
:mod:`genesis.tasks.sequence`, sends the same things to the store and alert queues.

:class:`LiveSink` (the live view) and :class:`MqttEventsSink` (MQTT events) observe every frame in
both modes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from genesis.adapters.db import Repository
from genesis.adapters.frame_store import FrameStore
from genesis.config import Settings
from genesis.domain import FrameOutcome, ZoneEvent
from genesis.identities.tracks import save_camera_track_faces
from genesis.pipeline.loop import BaseSink, BatchRows, Image, RunProgress
from genesis.services.alerts import EmbeddedAlerts
from genesis.services.heatmap import SnapshotKeeper
from genesis.services.live import LivePublisher
from genesis.services.mqtt_events import MqttSink
from genesis.services.privacy import FrameView, Redactor, view_of
from genesis.stages.camera import CameraState
from genesis.stages.recognize import TrackRecognizer


class LocalSink(BaseSink):
    def __init__(self, repo: Repository, settings: Settings, run_id: str, alerts: EmbeddedAlerts,
                 snapshots: SnapshotKeeper, frames: FrameStore, redactor: Redactor | None = None) -> None:
        self.repo, self.settings, self.run_id = repo, settings, run_id
        self.alerts, self.snapshots, self.frames, self.redactor = alerts, snapshots, frames, redactor
        self.view = FrameView()
        """The privacy blur's view of the last frame (who is enrolled where)."""
        self.extra_meta: dict[str, Any] = {}
        """Added to the run's meta at the end (a live source's reconnects and outage)."""
        self._last: tuple[bytes, int, int] | None = None

    def _redact(self) -> Callable[[bytes], bytes] | None:
        redactor, view, quality = self.redactor, self.view, self.settings.pipeline.jpeg_quality
        if redactor is None:
            return None
        return lambda jpeg: redactor.jpeg(jpeg, view, quality)

    def on_frame(self, outcome: FrameOutcome, image: Image, camera: CameraState) -> None:
        ref = outcome.tracked.frame
        if self.redactor is not None:
            self.view = view_of(outcome, camera)
        jpeg = self.frames.get(ref.key)
        if jpeg is not None:
            self._last = (jpeg, ref.width, ref.height)
            self.snapshots.offer(jpeg, ref.width, ref.height, redact=self._redact())

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        rows = BatchRows.of(outcomes, closing)
        if rows.analytics:
            self.repo.save_outcome(self.run_id, rows.sightings, rows.attempts, rows.zone_events, rows.crossings,
                                   rows.points, self.settings.analytics.heatmap_cell_px)
        if rows.alerts or rows.samples:
            self.alerts.save(rows.alerts, rows.samples)  # stored, then delivered in the background

    def on_tracks_retired(self, camera: CameraState, retired: TrackRecognizer) -> None:
        self.repo.save_tracks(self.run_id, camera.track_records(retired))
        save_camera_track_faces(self.repo, self.settings, self.run_id, camera, retired)

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        self.on_tracks_retired(camera, camera.recognizer)  # the tracks still held, stored as the retired ones
        self.repo.finish_run(self.run_id, "finished", progress.frames, {**progress.run_meta(), **self.extra_meta})
        if self._last is not None:
            jpeg, width, height = self._last
            self.snapshots.offer(jpeg, width, height, force=True, redact=self._redact())


class LiveSink(BaseSink):
    """Offers every frame to the live view (published only while someone watches the camera)."""

    def __init__(self, publisher: LivePublisher, run_id: str) -> None:
        self.publisher, self.run_id = publisher, run_id

    def on_frame(self, outcome: FrameOutcome, image: Image, camera: CameraState) -> None:
        if outcome.tracked.frame.static:
            return  # a still frame (a marker in the distributed mode, without pixels): the view keeps the last one
        self.publisher.offer(self.run_id, outcome, camera, image)

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        self.publisher.close(camera.camera.id)  # no image of an ended run is kept


class MqttEventsSink(BaseSink):
    """MQTT events in frame order: each frame observed, and the end of the run with the visits it
    closed."""

    def __init__(self, mqtt: MqttSink) -> None:
        self.mqtt = mqtt
        self.closing: list[ZoneEvent] = []

    def on_frame(self, outcome: FrameOutcome, image: Image, camera: CameraState) -> None:
        self.mqtt.observe(outcome, camera, image)

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        self.closing += closing

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        self.mqtt.end(self.closing, camera)
