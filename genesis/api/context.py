"""What every request of the API shares (``AppServices``): the one object the app builds at start.

Its own module, below both the dependencies (``deps``) and the request guard (``guard``), which use it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from genesis.adapters.db import Repository
from genesis.adapters.db.apikeys import ApiKeyStore, SessionStore
from genesis.adapters.dlq import DeadLetters
from genesis.config import Settings

if TYPE_CHECKING:
    from celery import Celery

    from genesis.backends.faces import Embedder, FaceDetector


@dataclass
class AppServices:
    """What every request shares: settings, the database, Redis, models loaded on first use."""

    settings: Settings
    repo: Repository
    keys: ApiKeyStore
    sessions: SessionStore
    _redis: redis.Redis | None = None
    _letters: DeadLetters | None = None
    _celery: Celery | None = None
    _faces: tuple[FaceDetector, Embedder] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def redis(self) -> redis.Redis:
        with self._lock:
            if self._redis is None:
                self._redis = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=1,
                                                   socket_timeout=2)
            return self._redis

    @property
    def letters(self) -> DeadLetters:
        with self._lock:
            if self._letters is None:
                self._letters = DeadLetters(redis.Redis.from_url(
                    self.settings.redis_url, decode_responses=True, socket_connect_timeout=1, socket_timeout=2))
            return self._letters

    @property
    def celery(self) -> Celery:
        with self._lock:
            if self._celery is None:
                from genesis.tasks.celery_config import make_app

                self._celery = make_app(self.settings)
            return self._celery

    def face_models(self) -> tuple[FaceDetector, Embedder]:
        """The face detector and embedder, loaded once (raises WeightsError when missing)."""
        with self._lock:
            if self._faces is None:
                from genesis.pipeline.model_loader import load_face_models

                self._faces = load_face_models(self.settings)
            return self._faces

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        if self._letters is not None:
            self._letters.redis.close()
        self.repo.close()
