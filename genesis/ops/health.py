"""``GET /health``: is this process able to do its job, and if not, why.

Each check gives ``ok`` or a reason; a failed check makes the process ``failing`` when the process
cannot work without it (the broker for everyone, the database for the store and the capture, the
model files for the stages that run them) and ``degraded`` otherwise (a camera that is not
connected: the capture keeps reconnecting; the database for the other roles). The endpoint
answers HTTP 200 for ``ok`` and ``degraded`` and 503 for ``failing``, so a container healthcheck
(or a load balancer) takes a failing process out, not a degraded one.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from genesis.config import Settings

Level = Literal["ok", "degraded", "failing"]
_ORDER: dict[str, int] = {"ok": 0, "degraded": 1, "failing": 2}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    severity: Level = "failing"
    """What a failure of this check makes the process."""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "severity": self.severity}


@dataclass(frozen=True, slots=True)
class Health:
    status: Level
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    @property
    def http_status(self) -> int:
        return 503 if self.status == "failing" else 200

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reasons": self.reasons, "checks": {c.name: c.to_dict() for c in self.checks}}


def combine(checks: Iterable[Check]) -> Health:
    checks = list(checks)
    status: Level = "ok"
    for c in checks:
        if not c.ok and _ORDER[c.severity] > _ORDER[status]:
            status = c.severity
    return Health(status, checks)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_broker(url: str, timeout_s: float) -> Check:
    """The Celery broker (Redis) answers PING."""
    import redis

    if not url.startswith(("redis://", "rediss://")):
        return Check("broker", True, f"{urlsplit(url).scheme} broker not checked")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        return Check("broker", False, f"{_redacted(url)} unreachable: {exc}")
    return Check("broker", True, f"{_redacted(url)} reachable")


def check_eviction(settings: Settings) -> Check:
    """The pipeline's Redis servers keep every key when full (``maxmemory-policy noeviction``, or
    no limit): an evicting policy loses frames and messages silently (degraded, not failing)."""
    from genesis.adapters.redis_memory import eviction_warnings

    try:
        warnings = eviction_warnings(settings, settings.ops.check_timeout_s)
    except Exception as exc:  # unreachable: the broker check says so
        return Check("redis memory", True, f"not checked: {type(exc).__name__}", "degraded")
    if warnings:
        return Check("redis memory", False, "; ".join(warnings), "degraded")
    return Check("redis memory", True, "no eviction policy that deletes keys", "degraded")


def check_database(url: str, timeout_s: float, severity: Level) -> Check:
    """The database accepts a connection and answers ``SELECT 1``."""
    from genesis.adapters.db.probe import DatabaseError, ping

    where = _redacted(url)
    try:
        ping(url, timeout_s)
    except (DatabaseError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Check("database", False, f"{where} unreachable: {first}", severity)
    return Check("database", True, f"{where} reachable", severity)


def model_files(settings: Settings, stages: Iterable[str]) -> dict[str, str]:
    """The weight files the stages need (``detect``: person detector, ``recognize``: face models when
    recognition is on), as name -> the file, or the error saying why it is not there."""
    from genesis.backends.weights import WeightsError, resolve

    wanted: dict[str, str] = {}
    stages = set(stages)
    if "detect" in stages:
        wanted["detector"] = settings.detector.weights
    if "recognize" in stages and settings.recognition.enabled:
        wanted["face_detector"] = settings.recognition.face_detector.weights
        wanted["face_embedder"] = settings.recognition.embedder.weights_name
    out: dict[str, str] = {}
    for name, weights in wanted.items():
        try:
            out[name] = str(resolve(weights, settings.models.path))
        except WeightsError as exc:
            out[name] = f"missing: {exc}"
    return out


def check_models(files: dict[str, str], loaded: Callable[[], set[str]]) -> Check:
    """The model files are there, and whether this worker has loaded them (a detect worker's children when they
    start, the others on their first task)."""
    missing = [f"{name} {where}" for name, where in files.items() if where.startswith("missing: ")]
    if missing:
        return Check("models", False, "; ".join(missing))
    if not files:
        return Check("models", True, "no model needed")
    done = loaded()
    parts = [f"{name} {'loaded' if name in done else 'present, not loaded yet'}" for name in files]
    return Check("models", True, "; ".join(parts))


def check_cameras(statuses: list[dict[str, Any]]) -> list[Check]:
    """One check per camera: connected, else degraded with the last error."""
    out = []
    for s in statuses:
        name = f"camera {s['camera']}"
        if s["state"] == "connected":
            out.append(Check(name, True, f"connected ({s['kind']} source)", "degraded"))
        elif s["state"] == "stopped" and s.get("kind") == "file" and s.get("read", 0) > 0:
            out.append(Check(name, True, "file source finished", "degraded"))
        else:
            detail = s.get("last_error") or f"source {s['state']}"
            out.append(Check(name, False, f"not connected: {detail}", "degraded"))
    return out


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
