"""Settings of the REST API and dashboard (``genesis serve``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from genesis.config._base import StrictModel


class ApiConfig(StrictModel):
    host: str = Field(default="127.0.0.1", description="Address `genesis serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `genesis serve` listens on.")
    max_upload_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest accepted photo upload (bytes, per file)."
    )
    max_photos: int = Field(default=10, ge=1, le=100, description="Most photos in one enroll request.")
    upload_types: list[str] = Field(
        default_factory=lambda: ["image/jpeg", "image/png", "image/webp", "image/bmp"],
        description="Content types accepted for photo uploads.",
    )
    max_page: int = Field(default=1000, ge=1, description="Largest `limit` of a paginated list.")
    inspect_timeout_s: float = Field(
        default=0.5, gt=0, le=10, description="How long the pipeline status waits for Celery workers to answer."
    )
    cookie_secure: bool = Field(
        default=False,
        description="Always mark the dashboard cookies Secure (they are anyway when the request came over HTTPS; "
        "set this behind a TLS-terminating proxy).",
    )
    session_max_age_s: int = Field(
        default=12 * 3600, ge=60, description="Dashboard session lifetime (the server forgets it after this)."
    )
    auth_failures_burst: int = Field(
        default=10, ge=1, description="Failed authentications (wrong key, failed login) a client may make at once."
    )
    auth_failures_per_minute: float = Field(
        default=10.0, gt=0, description="How fast that allowance refills; past it the client gets 429."
    )
    max_connections: int = Field(
        default=1024, ge=2, le=1_000_000,
        description="Most open connections `genesis serve` keeps: past it a new connection is answered 503 and "
        "closed before anything is read (the file table stays bounded whatever clients do).")
    limit_concurrency: int = Field(
        default=512, ge=1, le=1_000_000,
        description="Past this many open connections or requests in progress, a request is answered 503 "
        "(uvicorn's limit_concurrency); at most max_connections.")
    header_timeout_s: float = Field(
        default=10.0, gt=0, le=300,
        description="A connection must send a whole request head (request line and headers) within this time "
        "from when it opened or its previous response ended; otherwise it is closed (no trickled headers).")
    keep_alive_timeout_s: int = Field(
        default=5, ge=1, le=300,
        description="An idle keep-alive connection is closed after this many seconds (uvicorn's timeout_keep_alive).")
    max_header_bytes: int = Field(
        default=16 * 1024, ge=4096, le=1024 * 1024,
        description="Largest request head (request line and headers) in bytes: past it the request is answered "
        "400 (h11's max_incomplete_event_size).")
    docs: bool = Field(
        default=True, description="Serve the interactive API docs at /docs (Swagger UI 5 bundled with Genesis, never "
        "from a CDN); false: no /docs (the OpenAPI document stays)."
    )

    @model_validator(mode="after")
    def _connection_limits(self) -> ApiConfig:
        if self.limit_concurrency > self.max_connections:
            raise ValueError(f"api.limit_concurrency ({self.limit_concurrency}) must be at most api.max_connections "
                             f"({self.max_connections})")
        return self
