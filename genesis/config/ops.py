"""Settings of the operations endpoints (``/health``, ``/metrics``, ``/status``) of each process."""

from __future__ import annotations

from pydantic import Field

from genesis.config._base import StrictModel


class OpsPorts(StrictModel):
    """Default port of each role's endpoint (each process serves on its own port)."""

    detect: int = Field(default=8080, ge=1, le=65535)
    recognize: int = Field(default=8081, ge=1, le=65535)
    analytics: int = Field(default=8082, ge=1, le=65535)
    store: int = Field(default=8083, ge=1, le=65535)
    capture: int = Field(default=8084, ge=1, le=65535)
    beat: int = Field(default=8085, ge=1, le=65535)
    api: int = Field(default=8086, ge=1, le=65535, description="`genesis serve` (the API itself is on api.port).")


class OpsConfig(StrictModel):
    role: str | None = Field(
        default=None,
        description="Name of this process in /status and /health (the launchers set it; a plain "
        "`celery -A genesis worker` is `worker`).",
    )
    port: int | None = Field(
        default=None, ge=0, le=65535,
        description="Port of this process's endpoint (GENESIS_OPS__PORT); 0 = no endpoint. Unset: the role's "
        "port from `ports` for the launchers, capture and beat; no endpoint for a plain `celery worker`.",
    )
    host: str = Field(default="0.0.0.0", description="Address the endpoint listens on.")
    ports: OpsPorts = OpsPorts()
    metrics_dir: str | None = Field(
        default=None,
        description="Folder under which each worker keeps its prometheus multiprocess files "
        "(default: the system temporary folder); one sub-folder per worker, emptied at start.",
    )
    check_timeout_s: float = Field(default=1.0, gt=0.0, le=30.0, description="Timeout of each health check.")
