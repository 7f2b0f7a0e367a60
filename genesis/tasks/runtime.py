"""What a worker process keeps between tasks: settings, connections, models (loaded on first use; a
detect worker's prefork children load the detector before they take work, see genesis.tasks.detect)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Any

from genesis.adapters.db import Repository
from genesis.adapters.redis_frames import RedisFrameStore
from genesis.backends.detectors import PersonDetector, build_detector
from genesis.backends.detectors.batching import BatchingDetector
from genesis.backends.faces import FaceDetector
from genesis.config import Settings
from genesis.identities.cache import GalleryCache, LiveFaces
from genesis.ops.metrics import model_loaded, observe_detector_batch
from genesis.ops.timing import TimedEmbedder, TimedFaceDetector
from genesis.pipeline.model_loader import load_face_models
from genesis.services.mqtt import MqttPublisher
from genesis.services.privacy import Redactor, privacy_detector, redactor_for
from genesis.stages.camera import FaceModels

_lock = threading.Lock()
_faces: dict[str, LiveFaces] = {}


def settings() -> Settings:
    from genesis.celery import app

    s: Settings = app.conf.genesis_settings
    return s


def consumes(app: Any, task_name: str) -> bool:
    """Whether this worker (``app`` as its ``-Q`` left it) consumes the queue that ``task_name`` is routed to:
    what a worker hook preloads depends on the work it takes."""
    from genesis.tasks import routing

    return routing.queue_of(settings(), task_name) in set(app.amqp.queues.consume_from or ())


@cache
def redis_client() -> Any:
    import redis

    return redis.Redis.from_url(settings().redis_url)


@cache
def frame_store() -> RedisFrameStore:
    return RedisFrameStore.from_settings(settings())


@cache
def repository() -> Repository:
    return Repository(settings().database_url)


_detector_lock = threading.Lock()
_detector: list[PersonDetector] = []


def detector() -> PersonDetector:
    """This process's person detector, loaded once (threads of a batching worker share it); with
    ``distributed.detect_batch_size`` > 1 behind a :class:`BatchingDetector`, which batches the
    frames of the tasks running at once in this process (a threads pool) and costs no wait where
    one task runs at a time (prefork, solo)."""
    if _detector:
        return _detector[0]
    with _detector_lock:
        if not _detector:
            s = settings()
            built = build_detector(s.detector, s.models.path)
            model_loaded("detector")
            d = s.distributed
            if d.detect_batch_size > 1:
                built = BatchingDetector(built, d.detect_batch_size, d.detect_batch_wait_ms / 1000.0,
                                         on_batch=observe_detector_batch)
            _detector.append(built)
    return _detector[0]


def detector_session() -> AbstractContextManager[None]:
    """A detect task's batching session (see :meth:`BatchingDetector.client`); nothing without batching."""
    found = detector()
    return found.client() if isinstance(found, BatchingDetector) else nullcontext()


@cache
def _face_backends() -> tuple[Any, Any]:
    detector_, embedder = load_face_models(settings())
    model_loaded("face_detector")
    model_loaded("face_embedder")
    return TimedFaceDetector(detector_), TimedEmbedder(embedder)


@cache
def mqtt_publisher() -> MqttPublisher:
    """This process's broker connection (``mqtt.enabled``); created on first use, in the pool child."""
    return MqttPublisher(settings().mqtt, name=f"genesis-{settings().ops.role or 'worker'}")


def close_mqtt(**_: Any) -> None:
    """Flush (at most ``mqtt.flush_timeout_s``, only while connected) and close this process's
    broker connection, if it has one (a worker process that shuts down)."""
    if mqtt_publisher.cache_info().currsize:
        mqtt_publisher().close()


@cache
def _privacy_detector() -> FaceDetector:
    return privacy_detector(settings())


def redactor(camera_id: str) -> Redactor | None:
    """The privacy blur of a camera's stored images (None when its faces are not blurred)."""
    s = settings()
    camera = s.camera(camera_id)
    if s.blur_mode(camera) == "off":
        return None
    return redactor_for(s, camera, _privacy_detector())


_run_meta: dict[str, dict[str, Any]] = {}


def run_meta(run_id: str) -> dict[str, Any] | None:
    """The meta the capture wrote when the run started (it does not change while frames flow):
    read from the database once per process and run, not once per sequencer pass."""
    with _lock:
        if run_id in _run_meta:
            return _run_meta[run_id]
    run = repository().run(run_id)
    if run is None:
        return None
    with _lock:
        if len(_run_meta) > 256:
            _run_meta.clear()
        _run_meta[run_id] = run.meta
    return run.meta


def face_models(run_id: str) -> FaceModels | None:
    """Face models plus the current gallery (cached per process; refreshed when its version in
    Redis moves, looked at most once per ``identities.gallery_check_s``); None when recognition is
    off or nobody is enrolled."""
    with _lock:
        s = settings()
        if not s.recognition.enabled:
            return None
        live = _faces.get("live")
        if live is None:
            detector_, embedder = _face_backends()
            live = _faces["live"] = LiveFaces(detector_, embedder, GalleryCache(repository(), s, redis_client()))
        result: FaceModels | None = live.get()
        return result
