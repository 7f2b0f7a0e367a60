"""The local sink of the run loop: where an embedded run's results go, in the same process.

Rows to the repository, alerts stored and delivered by :class:`~genesis.services.alerts.EmbeddedAlerts`
(a background thread), the camera's heatmap background by a :class:`~genesis.services.heatmap.SnapshotKeeper`,
and at the end the tracks, the best face of each track and the run's meta. Its distributed twin,
``CelerySink`` in :mod:`genesis.tasks.sequence`, sends the same things to the store and alert
queues.
"""

from __future__ import annotations

from collections.abc import Sequence

from genesis.adapters.db import Repository
from genesis.adapters.frame_store import FrameStore
from genesis.config import Settings
from genesis.domain import FrameOutcome, ZoneEvent
from genesis.identities.tracks import save_camera_track_faces
from genesis.pipeline.loop import BaseSink, BatchRows, Image, RunProgress
from genesis.services.alerts import EmbeddedAlerts
from genesis.services.heatmap import SnapshotKeeper
from genesis.stages.camera import CameraState


class LocalSink(BaseSink):
    def __init__(self, repo: Repository, settings: Settings, run_id: str, alerts: EmbeddedAlerts,
                 snapshots: SnapshotKeeper, frames: FrameStore) -> None:
        self.repo, self.settings, self.run_id = repo, settings, run_id
        self.alerts, self.snapshots, self.frames = alerts, snapshots, frames
        self._last: tuple[bytes, int, int] | None = None

    def on_frame(self, outcome: FrameOutcome, image: Image) -> None:
        ref = outcome.tracked.frame
        jpeg = self.frames.get(ref.key)
        if jpeg is not None:
            self._last = (jpeg, ref.width, ref.height)
            self.snapshots.offer(jpeg, ref.width, ref.height)

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        rows = BatchRows.of(outcomes, closing)
        if rows.analytics:
            self.repo.save_outcome(self.run_id, rows.sightings, rows.attempts, rows.zone_events, rows.crossings)
        if rows.alerts or rows.samples:
            self.alerts.save(rows.alerts, rows.samples)  # stored, then delivered in the background

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        self.repo.save_tracks(self.run_id, camera.track_records())
        save_camera_track_faces(self.repo, self.settings, self.run_id, camera)
        self.repo.finish_run(self.run_id, "finished", progress.frames, progress.run_meta())
        if self._last is not None:
            self.snapshots.offer(*self._last, force=True)
