"""Queue ``store``: the best face of each track of a finished run (stored encrypted, unknown ones clustered)."""

from __future__ import annotations

from typing import Any

from genesis.celery import app
from genesis.config import Settings
from genesis.identities.store import IdentityStore
from genesis.identities.tracks import TrackFaceRecord, camera_track_faces, cluster_threshold, save_track_faces
from genesis.tasks import routing, runtime
from genesis.tasks.base import PipelineTask, bad_input


def send_track_faces(celery_app: Any, settings: Settings, run_id: str, camera: Any, recognizer: Any = None) -> None:
    """Called by the sequencer when a run ends (``camera`` is its `CameraState`), and with the tracks it retired
    (``recognizer``) during the run."""
    records = camera_track_faces(settings, camera, recognizer)
    if records:
        celery_app.send_task(routing.SAVE_TRACK_FACES, args=[run_id, [r.to_json() for r in records]],
                             queue=routing.queue_of(settings, routing.SAVE_TRACK_FACES))


@app.task(base=PipelineTask, name=routing.SAVE_TRACK_FACES, bind=True)
def save_faces(self: Any, run_id: str, faces: list[dict[str, Any]]) -> None:
    with bad_input("track faces"):
        records = [TrackFaceRecord.from_json(f) for f in faces]
    s = runtime.settings()
    save_track_faces(IdentityStore(runtime.repository()), run_id, records, cluster_threshold(s))
