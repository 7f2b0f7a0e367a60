"""The embedded pipeline: every stage in one process, an in-memory frame store, SQLite (or any
SQLAlchemy URL). It only wires the stages together; the stages are the ones the workers run.
"""

from __future__ import annotations

import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import genesis
from genesis.adapters.db import Repository
from genesis.adapters.db.alerts import AlertStore
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.frame_store import MemoryFrameStore, decode_jpeg, encode_jpeg
from genesis.adapters.redis_keys import frame_key
from genesis.adapters.video import ReconnectingSource, VideoSource, open_video
from genesis.config import CameraConfig, Settings
from genesis.domain import (
    FrameOutcome,
    FrameRef,
)
from genesis.domain.redact import redact
from genesis.identities.cache import GalleryCache, LiveFaces
from genesis.pipeline.lease import AbandonedRun, reap_abandoned_embedded, this_process
from genesis.pipeline.loop import BaseSink, CompositeSink, Image, RunLoop, RunProgress, RunState, truncated
from genesis.pipeline.model_loader import LoadedModels, load_models
from genesis.pipeline.report import build_results, write_bytes_atomic, write_json_atomic
from genesis.pipeline.sinks import LiveSink, LocalSink, MqttEventsSink
from genesis.pipeline.upkeep import Upkeep
from genesis.services.alerts import EmbeddedAlerts, prime
from genesis.services.heatmap import SnapshotKeeper, grid_image, heatmap_image
from genesis.services.live import LivePublisher, SqlLive
from genesis.services.mqtt_events import MqttSink, open_sink
from genesis.services.privacy import Redactor, live_encoder, redactor_for, view_of
from genesis.stages.camera import CameraState, FaceModels
from genesis.stages.detect import camera_tiling, detect_frame
from genesis.stages.motion import motion_gate
from genesis.stages.regions import gate_window, window_size

ProgressFn = Callable[["Progress"], None]
SAVE_EVERY = 25


@dataclass(slots=True)
class Progress:
    frames: int
    total: int | None
    people: int
    fps: float


@dataclass(slots=True)
class RunOutput:
    run_id: str
    report: dict[str, Any]
    out_dir: Path | None
    files: list[Path] = field(default_factory=list)
    abandoned: list[AbandonedRun] = field(default_factory=list)
    """Runs of this host whose process was gone, marked failed before this one started."""


def versions() -> dict[str, str]:
    import onnxruntime
    import supervision

    out = {
        "genesis": genesis.__version__,
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
        "supervision": supervision.__version__,
    }
    try:
        from importlib.metadata import version

        out["deepface"] = version("deepface")
        out["trackers"] = version("trackers")
    except Exception:
        pass
    return out


class Annotator(BaseSink):
    """Writes an annotated copy of the processed frames (boxes, ids, names, zones, lines), with the
    camera's privacy blur (``redactor``) applied first: an observer of the run loop."""

    def __init__(self, path: Path, fps: float, width: int, height: int, redactor: Redactor | None = None) -> None:
        self.path = path
        self.redactor = redactor
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
        if not self._writer.isOpened():
            raise OSError(f"cannot write {path}")

    def on_frame(self, outcome: FrameOutcome, image: Image, camera: CameraState) -> None:
        self.write(image() if callable(image) else image, outcome, camera)

    def write(self, image: np.ndarray, outcome: FrameOutcome, state: CameraState) -> None:
        img = self.redactor.image(image, view_of(outcome, state)) if self.redactor else image.copy()
        for zone in state.zones:
            cv2.polylines(img, [zone.polygon.reshape(-1, 1, 2).astype(np.int32)], True, (255, 200, 0), 2)
            x, y = zone.polygon[0]
            cv2.putText(img, f"{zone.name}: {zone.occupancy}", (int(x) + 4, int(y) + 18),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 200, 0), 2)
        for line in state.lines:
            (sx, sy), (ex, ey) = line.points
            cv2.line(img, (int(sx), int(sy)), (int(ex), int(ey)), (0, 200, 255), 2)
        for p in outcome.tracked.persons:
            name = state.recognizer.identity(p.track_id).identity
            colour = (0, 200, 0) if name else (200, 200, 200)
            x1, y1, x2, y2 = (int(v) for v in p.box)
            cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2)
            cv2.putText(img, f"#{p.track_id} {name or ''}".strip(), (x1, max(12, y1 - 5)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 2)
        self._writer.write(img)

    def close(self) -> None:
        self._writer.release()


def run_embedded(
    settings: Settings,
    source: str,
    camera: CameraConfig,
    out_dir: Path | None = None,
    annotate: bool = False,
    stride: int | None = None,
    max_frames: int | None = None,
    progress: ProgressFn | None = None,
    models: LoadedModels | None = None,
) -> RunOutput:
    """Run one source through every stage and store what it saw; returns the report.

    The source and the models are checked before anything is written; a failure during the
    run removes the run's rows, so the database never holds half a run. A run whose process was
    killed never gets to do that: the run records its process (genesis.pipeline.lease), and the
    next run on the host marks such runs failed (abandoned) and removes their rows first.
    """
    stride = stride or settings.pipeline.frame_stride
    video = open_video(source, camera.max_width)  # a live source reconnects with backoff when it drops
    try:
        models = models or load_models(settings)
        repo = Repository(settings.database_url)
        try:
            abandoned = reap_abandoned_embedded(repo)
            output = _run(settings, video, camera, repo, models, out_dir, annotate, stride, max_frames, progress)
            output.abandoned = abandoned
            return output
        finally:
            repo.close()
    finally:
        video.close()


def _run(
    settings: Settings,
    video: VideoSource | ReconnectingSource,
    camera: CameraConfig,
    repo: Repository,
    models: LoadedModels,
    out_dir: Path | None,
    annotate: bool,
    stride: int,
    max_frames: int | None,
    progress: ProgressFn | None,
) -> RunOutput:
    info = video.info
    faces: FaceModels | None = None
    gallery_size = 0
    live: LiveFaces | None = None
    if models.face_detector is not None and models.embedder is not None:
        live = LiveFaces(models.face_detector, models.embedder, GalleryCache(repo, settings))
        faces = live.get()  # refreshed below when the gallery changes (enroll, forget ...)
        gallery_size = len(faces.gallery.identities) if faces is not None else 0
    state = CameraState(settings, camera, info.width, info.height, info.fps, faces, stride)
    store = MemoryFrameStore(max_frames=4)
    run_id = uuid.uuid4().hex
    started = datetime.now(UTC)
    repo.start_run(run_id, camera.id, redact(info.source),
                   {"width": info.width, "height": info.height, "fps": info.fps}, holder=this_process().to_json())
    alert_sink = EmbeddedAlerts(AlertStore(repo.engine), settings, run_id, started.timestamp())
    prime(state, alert_sink.store, settings, started.timestamp())
    total = None
    if info.frame_count:
        total = -(-info.frame_count // stride)
        if max_frames is not None:
            total = min(total, max_frames)
    progress_state = RunProgress(stride=stride, fps=info.fps, declared_frames=total)
    snapshots = SnapshotKeeper(AnalyticsStore(repo), camera.id, settings.analytics.snapshot_every_s)
    # The privacy blur of what this run stores (snapshots, annotated.mp4, the heatmap background).
    redactor = redactor_for(settings, camera)
    local = LocalSink(repo, settings, run_id, alert_sink, snapshots, store, redactor)
    mqtt: MqttSink | None = open_sink(settings, camera, run_id, started.timestamp(), redactor=redactor)
    live_view = LivePublisher.from_settings(settings, SqlLive(repo.engine))
    if redactor is not None:  # the live view shows what is stored: blurred
        live_view.encode = live_encoder(lambda _camera_id: redactor)
    # The run's consumers: the store first, then the observers of each frame.
    sinks = CompositeSink([local, LiveSink(live_view, run_id)])
    if mqtt is not None:
        sinks.sinks.append(MqttEventsSink(mqtt))
    loop = RunLoop(RunState(state, progress_state), sinks, SAVE_EVERY)
    report_extra: dict[str, Any] = {}
    annotator: Annotator | None = None
    t0 = time.perf_counter()
    detect_ms = 0.0
    snapshot: np.ndarray | None = None
    gate, tiling = motion_gate(settings, camera), camera_tiling(settings, camera)  # see genesis.stages.motion
    region_size = window_size(settings.detector)  # region detection: genesis.stages.regions
    window_frames = 0
    upkeep = Upkeep(repo, settings)  # what beat does in the distributed mode: retention, heat hours merged
    upkeep.tick()
    try:
        if annotate and out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            annotator = Annotator(out_dir / "annotated.mp4", info.fps / stride, info.width, info.height, redactor)
            sinks.sinks.append(annotator)
        try:
            for raw in video.frames(stride=stride, max_frames=max_frames):
                key = frame_key(camera.id, run_id, raw.seq)
                static = gate.check(raw.image, raw.ts) if gate is not None else False
                window = gate_window(gate.changed, raw.image.shape[1], raw.image.shape[0], region_size, gate.config) \
                    if gate is not None else None
                if static:  # a still frame: no stage reads its pixels (the annotator draws the source's)
                    image = raw.image
                else:  # the pixels the distributed mode's stages read: the same JPEG round trip
                    store.put(key, encode_jpeg(raw.image, settings.pipeline.jpeg_quality))
                    data = store.get(key)
                    assert data is not None
                    image = decode_jpeg(data)
                ref = FrameRef(camera.id, raw.seq, raw.ts, key, image.shape[1], image.shape[0], static=static,
                               window=window)
                window_frames += window is not None
                detections = detect_frame(models.detector, ref, image, tiling, settings.detector.iou)
                detect_ms += detections.inference_ms
                if live is not None:
                    state.faces = live.get()
                outcome = loop.feed(detections, image)
                snapshot = image
                upkeep.tick()
                if progress is not None:
                    elapsed = time.perf_counter() - t0
                    progress(Progress(state.frames, total, len(outcome.tracked.persons),
                                      state.frames / elapsed if elapsed > 0 else 0.0))
        except KeyboardInterrupt:
            if video.info.kind == "file":
                raise
            # A live source ends when the operator stops it: keep what was seen.
            progress_state.declared_frames = None
        if isinstance(video, ReconnectingSource):  # the gaps of a live source, counted
            local.extra_meta.update(reconnects=video.reconnects, outage_s=round(video.outage_s, 3))
        else:  # the damaged places of a file, read past and counted
            progress_state.damaged, progress_state.damaged_places = video.damage.frames, video.damage.places
        meta = loop.close()
        elapsed = time.perf_counter() - t0
        if snapshot is not None and redactor is not None:  # the heatmap background below
            snapshot = redactor.image(snapshot, local.view)
        delivery = alert_sink.drain()
        if mqtt is not None:
            mqtt.publisher.close()  # waits flush_timeout_s at most, and only while connected
            report_extra["mqtt"] = {"published": mqtt.publisher.published, "dropped": mqtt.publisher.dropped}
    except BaseException:
        if mqtt is not None:
            mqtt.publisher.close(0.0)
        alert_sink.drain(0.0)
        if annotator is not None:
            annotator.close()
            annotator.path.unlink(missing_ok=True)
        repo.delete_run(run_id)  # on SQLite the writes stop with room left for this (Repository._keep_room)
        raise
    if annotator is not None:
        annotator.close()
    run = repo.run(run_id)
    assert run is not None
    results = build_results(repo, run, camera)
    report: dict[str, Any] = {
        "results": results,
        "run": {
            "run_id": run_id,
            "mode": "embedded",
            "source": redact(info.source),
            "source_kind": info.kind,
            "width": info.width,
            "height": info.height,
            "source_fps": round(info.fps, 3),
            "stride": stride,
            "frames_processed": state.frames,
            **({k: meta[k] for k in ("frames_declared", "frames_read", "frames_damaged", "damaged_places")
                if k in meta}),
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "elapsed_s": round(elapsed, 3),
            "fps": round(state.frames / elapsed, 2) if elapsed > 0 else 0.0,
            "detect_ms_mean": round(detect_ms / state.frames, 2) if state.frames else 0.0,
            "static_frames": gate.static_frames if gate is not None else 0,
            "window_frames": window_frames,
            "models": {
                "detector": f"{settings.detector.backend}:{Path(settings.detector.weights).name}",
                "face_detector": settings.recognition.face_detector.weights if faces else None,
                "embedder": settings.recognition.embedder.model if faces else None,
                "threshold": settings.recognition.embedder.cosine_threshold if faces else None,
            },
            "gallery_identities": gallery_size,
            "upkeep": upkeep.summary(),
            "alert_delivery": {"alerts": delivery.alerts, "delivered": delivery.delivered,
                               "failed": delivery.failed, "pending": delivery.pending},
            **({"warning": warning} if (warning := truncated(meta)) else {}),
            "recognition": "on" if faces else ("no identities enrolled" if models.embedder else "disabled"),
            "database": _safe_url(settings.database_url),
            "versions": versions(),
            **report_extra,
        },
    }
    files: list[Path] = []
    if out_dir is not None:
        files = write_out_files(out_dir, report, repo, run_id, camera.id, snapshot, info.width, info.height,
                                settings.analytics.heatmap_cell_px, annotator)
    return RunOutput(run_id=run_id, report=report, out_dir=out_dir, files=files)


class OutFilesError(OSError):
    """The run is stored, but its --out files could not be written (none of them is left behind)."""


def write_out_files(out_dir: Path, report: dict[str, Any], repo: Repository, run_id: str, camera_id: str,
                    snapshot: np.ndarray | None, width: int, height: int, cell_px: int,
                    annotator: Annotator | None) -> list[Path]:
    """The heatmap and report.json in ``out_dir`` (and the annotated video already there), each
    written whole or not at all; on a failure (a full disk) none of them is left: OutFilesError."""
    stored = AnalyticsStore(repo).heat_grid(camera_id, None, None, [run_id])
    heat = (grid_image(stored, snapshot) if stored is not None
            else heatmap_image([], snapshot, width, height, cell_px)[0])
    heat_path = out_dir / f"heatmap_{camera_id}.png"
    report_path = out_dir / "report.json"
    files = [heat_path, *([annotator.path] if annotator is not None else [])]
    report["run"]["files"] = [p.name for p in [*files, report_path]]
    try:
        ok, png = cv2.imencode(".png", heat)
        if not ok:
            raise OSError(f"cannot encode {heat_path.name}")
        write_bytes_atomic(heat_path, png.tobytes())
        write_json_atomic(report_path, report)
    except OSError as exc:
        for path in (*files, report_path):
            path.unlink(missing_ok=True)
        raise OutFilesError(exc.errno, f"run {run_id} is stored, but its files in {out_dir} could not be written "
                            f"(none was kept): {exc.strerror or exc}") from exc
    return [*files, report_path]


def _safe_url(url: str) -> str:
    """The database URL without a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url
