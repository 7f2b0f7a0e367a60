"""The live view: each camera's latest frame and its JSON (boxes, track ids, names), published
by the run loop for the dashboard, which draws the boxes itself (nothing is drawn on the image).

Both modes: the embedded runner (`genesis run`) writes to its database (table ``live_frames``),
which a `genesis serve` beside it reads; the distributed sequencer writes to Redis (a key per
camera with a TTL). Publishing costs nothing while nobody watches: the server marks a camera
"watched" for ``console.live_watch_s`` whenever a browser asks for its frame, and the publisher
looks at that flag at most once a second before it encodes anything. At most one frame per
``console.live_interval_s`` per camera is encoded and written.

:func:`encode_live_frame` is the one place a live frame's image is encoded (the privacy blur
wraps it).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import cv2
import numpy as np

from genesis.adapters.db import Engine
from genesis.adapters.db import live as live_rows
from genesis.adapters.redis_keys import live_frame_key, live_gate_key, live_last_key, live_watch_key
from genesis.config import Settings
from genesis.domain import FrameOutcome

WATCH_CHECK_S = 1.0
"""How often the publisher looks at the "someone is watching" flag of a camera."""
REDIS_FRAME_TTL_S = 60
"""A live frame in Redis expires this long after it was written (a stopped pipeline leaves nothing)."""


frame_key, watch_key, gate_key, last_key = live_frame_key, live_watch_key, live_gate_key, live_last_key
"""The live view's keys (the scheme is :mod:`genesis.adapters.redis_keys`'s)."""
LAST_TTL_S = 7 * 24 * 3600


def encode_live_frame(image: np.ndarray, meta: dict[str, Any], max_side: int = 960, quality: int = 70) -> bytes:
    """The JPEG of a live frame, scaled down to ``max_side``. ``meta`` is the frame's JSON (its
    persons' boxes in source pixels), for a wrapper that needs it (privacy blur)."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cannot encode the live frame")
    return buf.tobytes()


Encoder = Callable[[np.ndarray, dict[str, Any], int, int], bytes]


def frame_meta(run_id: str, outcome: FrameOutcome, name_of: Callable[[int], str | None]) -> dict[str, Any]:
    """The JSON the browser draws from: the frame, its persons (track id, box in source pixels, name)."""
    f = outcome.tracked.frame
    return {
        "camera_id": f.camera_id, "run_id": run_id, "seq": f.seq, "ts": round(f.ts, 3),
        "width": f.width, "height": f.height, "at": datetime.now(UTC).isoformat(),
        "persons": [{"track_id": p.track_id, "box": [round(float(v), 1) for v in p.box],
                     "identity": name_of(p.track_id)} for p in outcome.tracked.persons],
        "occupancy": dict(outcome.occupancy),
    }


class LiveBackend(Protocol):
    def watched(self, camera_id: str) -> bool: ...

    def claim(self, camera_id: str, interval_s: float) -> bool:
        """True when this frame may be published (the last one is ``interval_s`` old)."""
        ...

    def write(self, camera_id: str, meta: dict[str, Any], jpeg: bytes) -> None: ...

    def clear(self, camera_id: str) -> None:
        """Drop the camera's image and who was in it (its time stays: "no frame since ...")."""
        ...


class SqlLive:
    """The embedded mode's backend: the run's database (one row per camera, overwritten)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.clock = clock
        self._last: dict[str, float] = {}

    def watched(self, camera_id: str) -> bool:
        until = live_rows.watched_until(self.engine, camera_id)
        return until is not None and until > datetime.now(UTC)

    def claim(self, camera_id: str, interval_s: float) -> bool:
        now = self.clock()
        last = self._last.get(camera_id)
        if last is not None and now - last < interval_s:
            return False
        self._last[camera_id] = now
        return True

    def write(self, camera_id: str, meta: dict[str, Any], jpeg: bytes) -> None:
        live_rows.write_frame(self.engine, camera_id, datetime.fromisoformat(meta["at"]), meta, jpeg)

    def clear(self, camera_id: str) -> None:
        live_rows.clear_frame(self.engine, camera_id)


class RedisLive:
    """The distributed mode's backend: Redis keys with a TTL; the gate is shared by every worker."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def watched(self, camera_id: str) -> bool:
        return bool(self.client.exists(watch_key(camera_id)))

    def claim(self, camera_id: str, interval_s: float) -> bool:
        return bool(self.client.set(gate_key(camera_id), "1", nx=True, px=max(1, int(interval_s * 1000))))

    def write(self, camera_id: str, meta: dict[str, Any], jpeg: bytes) -> None:
        key = frame_key(camera_id)
        pipe = self.client.pipeline()
        pipe.hset(key, mapping={"meta": json.dumps(meta), "jpeg": jpeg})
        pipe.expire(key, REDIS_FRAME_TTL_S)
        pipe.set(last_key(camera_id), meta["at"], ex=LAST_TTL_S)
        pipe.execute()

    def clear(self, camera_id: str) -> None:
        """Nothing: the frame expires on its own within ``REDIS_FRAME_TTL_S`` (and a worker that ends a run
        may not be the last to publish for the camera)."""


@dataclass
class LivePublisher:
    """``offer`` every processed frame; only a watched camera's frame, at most once per interval,
    is encoded and written. Never raises: the live view is best effort, the run loop is not."""

    backend: LiveBackend
    interval_s: float = 0.5
    max_side: int = 960
    quality: int = 70
    enabled: bool = True
    encode: Encoder = encode_live_frame
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._watch: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()
        self.published = 0
        self.errors = 0

    @classmethod
    def from_settings(cls, settings: Settings, backend: LiveBackend) -> LivePublisher:
        c = settings.console
        return cls(backend, c.live_interval_s, c.live_max_side, c.live_jpeg_quality, c.live)

    def _watched(self, camera_id: str) -> bool:
        now = self.clock()
        with self._lock:
            seen = self._watch.get(camera_id)
            if seen is not None and now - seen[0] < WATCH_CHECK_S:
                return seen[1]
        watched = self.backend.watched(camera_id)
        with self._lock:
            self._watch[camera_id] = (now, watched)
        return watched

    def offer(self, run_id: str, outcome: FrameOutcome, state: Any,
              image: np.ndarray | Callable[[], np.ndarray]) -> bool:
        """Publish this frame if someone watches its camera and the last one is old enough.

        ``state`` is the camera's `CameraState` (the names of its tracks); ``image`` the frame or a
        function that loads it (called only when the frame is published). True if published."""
        if not self.enabled:
            return False
        camera_id = outcome.tracked.frame.camera_id
        try:
            if not self._watched(camera_id) or not self.backend.claim(camera_id, self.interval_s):
                return False
            meta = frame_meta(run_id, outcome, lambda tid: state.recognizer.identity(tid).identity)
            pixels = image() if callable(image) else image
            self.backend.write(camera_id, meta, self.encode(pixels, meta, self.max_side, self.quality))
        except Exception:  # never stop the pipeline for the live view
            self.errors += 1
            return False
        self.published += 1
        return True

    def close(self, camera_id: str) -> None:
        """The run ended: no image of it is kept (the time of its last frame is). Best effort."""
        with contextlib.suppress(Exception):
            if self.published:
                self.backend.clear(camera_id)


# -- the server's side ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveImage:
    meta: dict[str, Any]
    jpeg: bytes
    at: datetime


def mark_watched(camera_id: str, watch_s: float, engine: Engine | None, client: Any | None) -> None:
    """Someone watches ``camera_id`` for the next ``watch_s`` seconds (both backends; each best effort)."""
    if client is not None:
        with contextlib.suppress(Exception):  # Redis down: the embedded flag below still works
            client.set(watch_key(camera_id), "1", px=int(watch_s * 1000))
    if engine is not None:
        live_rows.watch(engine, camera_id, datetime.now(UTC) + timedelta(seconds=watch_s))


def read_latest(camera_id: str, engine: Engine | None, client: Any | None) -> LiveImage | None:
    """The newest live frame of a camera from Redis or the database (whichever is newer)."""
    found: list[LiveImage] = []
    if client is not None:
        try:
            raw = client.hgetall(frame_key(camera_id))
        except Exception:
            raw = None
        if raw:
            try:
                meta = json.loads(raw[b"meta"])
                found.append(LiveImage(meta, bytes(raw[b"jpeg"]), datetime.fromisoformat(meta["at"])))
            except (KeyError, ValueError, TypeError):
                pass
        else:  # the frame expired: only when it was published is left
            try:
                last = client.get(last_key(camera_id))
                if last:
                    at = datetime.fromisoformat(last.decode() if isinstance(last, bytes) else str(last))
                    found.append(LiveImage({"camera_id": camera_id, "at": at.isoformat(), "persons": []}, b"", at))
            except Exception:
                pass
    if engine is not None:
        row = live_rows.latest_frame(engine, camera_id)
        if row is not None:
            at = row[2] if row[2].tzinfo else row[2].replace(tzinfo=UTC)
            found.append(LiveImage(row[0], row[1], at))
    return max(found, key=lambda x: x.at, default=None)
