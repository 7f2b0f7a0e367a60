"""Response models of the API (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from genesis.api.params import IdentityName, KeyName, SafeText
from genesis.config.alerts import AlertKindName


class Health(BaseModel):
    status: str
    version: str


class Me(BaseModel):
    id: str
    name: str
    role: str


class IdentityOut(BaseModel):
    id: int = Field(description="Stable id: `/api/identities/by-id/{id}` addresses the identity whatever its name.")
    name: str
    photos: int
    models: list[str]
    created_at: datetime


class EnrollOut(BaseModel):
    name: str
    photos: int
    added: int = Field(description="Embeddings newly stored (a photo already enrolled is skipped).")
    several_faces: list[str] = Field(description="Photos with more than one face (the largest was used).")
    warnings: list[str] = Field(default_factory=list,
                                description="Borderline photos that were enrolled (small or somewhat blurred face).")


class RenameIn(BaseModel):
    name: IdentityName = Field(min_length=1, max_length=128, description="The new name (the name rule of "
                               "docs/api.md: no control characters, no '/', not unknown-N).")


class RunOut(BaseModel):
    run_id: str
    camera_id: str
    source: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    frames: int


class TrackOut(BaseModel):
    """One identity segment of a track (a track the recognizer never cut has one, segment 0)."""

    run_id: str
    track_id: int
    segment: int = 0
    camera_id: str
    first_seq: int
    last_seq: int
    first_ts: float
    last_ts: float
    frames: int
    identity: str | None
    votes: int
    attempts: int
    best_distance: float | None


class SightingOut(BaseModel):
    """A stored point of a track's trajectory (sampled: not every frame; see docs/api.md)."""

    run_id: str
    camera_id: str
    track_id: int
    seq: int
    ts: float
    box: list[float]
    score: float
    identity: str | None
    frames: int = Field(description="Sightings of the track this point stands for: itself and those since the "
                                    "track's previous point.")


class RunPage(BaseModel):
    items: list[RunOut]
    total: int
    limit: int
    offset: int


class TrackPage(BaseModel):
    items: list[TrackOut]
    total: int
    limit: int
    offset: int


class SightingPage(BaseModel):
    items: list[SightingOut]
    total: int
    limit: int
    offset: int


class OccupancyPoint(BaseModel):
    ts: float
    occupancy: int


class ZoneSeries(BaseModel):
    zone: str
    peak: int
    points: list[OccupancyPoint]


class Occupancy(BaseModel):
    run_id: str
    bucket_s: float | None
    zones: list[ZoneSeries]


class LineCount(BaseModel):
    line: str
    in_: int = Field(alias="in")
    out: int
    in_name: str
    out_name: str


class Crossings(BaseModel):
    run_id: str
    lines: list[LineCount]


class ZoneDwell(BaseModel):
    zone: str
    visits: int
    mean_s: float
    median_s: float
    p95_s: float
    max_s: float


class Dwell(BaseModel):
    run_id: str
    zones: list[ZoneDwell]


class LatestRun(BaseModel):
    run_id: str
    status: str
    started_at: datetime
    frames: int


class CameraOut(BaseModel):
    id: str
    name: str
    configured: bool
    source: str | None
    zones: list[str]
    lines: list[str]
    runs: int
    latest_run: LatestRun | None


class LiveCounts(BaseModel):
    camera_id: str
    run_id: str | None
    status: str | None
    frames: int
    in_view: int = Field(description="People in the last stored frame of the newest run.")
    tracks: int
    identities: list[str]


class WorkerOut(BaseModel):
    name: str
    queues: list[str]


class DatabaseStatus(BaseModel):
    ok: bool
    dialect: str
    running_runs: int


class TableStatsOut(BaseModel):
    table: str
    rows: int
    rows_estimated: bool
    bytes: int | None = Field(description="Table + TOAST + indexes (None: SQLite without dbstat).")
    heap_bytes: int | None
    index_bytes: int | None
    toast_bytes: int | None
    bytes_per_row: float | None


class CameraStatsOut(BaseModel):
    camera_id: str
    days: int = Field(description="UTC days with rows (partial days count as one).")
    rows: dict[str, int]
    bytes_estimate: int | None = Field(description="Each table's bytes per row x the camera's rows: an estimate.")
    mb_per_day_estimate: float | None
    bytes_at_retention_estimate: int | None = Field(
        description="What the camera holds once its oldest rows reach the configured retention: per table, rows a day "
        "x bytes per row x the days its rows are kept (retention_days). An estimate.")


class CameraDayOut(BaseModel):
    camera_id: str
    day: str = Field(description="UTC day, YYYY-MM-DD.")
    rows: dict[str, int]
    bytes_estimate: int | None


class StorageStatsOut(BaseModel):
    """What the database holds (`genesis db stats --json`)."""

    dialect: str
    method: str = Field(description="How bytes were measured: pg_total_relation_size, dbstat or page_count.")
    taken_at: datetime
    database_bytes: int
    tables_bytes: int | None
    tables: list[TableStatsOut]
    cameras: list[CameraStatsOut]
    camera_days: list[CameraDayOut]
    mb_per_camera_day_estimate: float | None = Field(
        description="Estimated MB per camera-day, averaged over the camera-days stored (partial days included).")
    retention_days: dict[str, int] = Field(
        description="Days each high-volume table's rows are kept under the configured retention.")


class RedisStatus(BaseModel):
    ok: bool
    error: str | None


class PipelineStatus(BaseModel):
    database: DatabaseStatus
    redis: RedisStatus
    queues: dict[str, int] | None
    queues_error: str | None
    workers: list[WorkerOut] | None
    workers_error: str | None
    dlq_size: int | None
    dlq_error: str | None


class LetterOut(BaseModel):
    id: str
    task_name: str
    queue: str | None
    error: str
    retries: int
    failed_at: datetime
    replayable: bool


class LetterPage(BaseModel):
    items: list[LetterOut]
    total: int
    limit: int
    offset: int


class LetterDetail(LetterOut):
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    exc_type: str
    exc_message: str
    traceback: str
    first_failed_at: datetime | None
    hostname: str | None


class ReplayOut(BaseModel):
    letter_id: str
    task_id: str
    queue: str


class ApiKeyOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreateIn(BaseModel):
    role: str = Field(pattern="^(viewer|operator|admin)$")
    name: KeyName = Field(default="", max_length=128, description="A label (the name rule; default ROLE-ID).")


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown only in this answer.")


AlertKind = AlertKindName


class DeliveryOut(BaseModel):
    target: str = Field(description="`webhook:URL` or `pubsub:CHANNEL`.")
    status: str = Field(description="pending, sending, delivered or failed (given up).")
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


class AlertOut(BaseModel):
    id: int = Field(description="What `POST /api/alerts/{id}/ack` and `genesis alerts ack` take.")
    key: str = Field(description="Idempotency key sent to receivers (the `id` of the webhook payload).")
    run_id: str
    camera_id: str
    kind: AlertKind
    subject: str
    zone: str | None
    identity: str | None
    track_id: int | None
    seq: int
    ts: float = Field(description="Media time in the run (s).")
    at: datetime = Field(description="When it was raised (UTC).")
    value: float
    threshold: float
    message: str
    created_at: datetime
    acknowledged: bool
    acknowledged_at: datetime | None
    deliveries: list[DeliveryOut]


class AlertPage(BaseModel):
    items: list[AlertOut]
    total: int
    limit: int
    offset: int


# -- identities: unknown faces, "not this person", search by photo, audit log ------------------


class EnrollRejection(BaseModel):
    photo: str = Field(description="The uploaded file name ('' when the request itself is refused).")
    reason: str


class UnknownOut(BaseModel):
    id: str = Field(description="Pseudonymous id of the cluster: `unknown-N` (stable across runs).")
    model: str
    size: int = Field(description="Tracks whose face is in the cluster.")
    cameras: list[str]
    first_seen: datetime
    last_seen: datetime


class UnknownPage(BaseModel):
    items: list[UnknownOut]
    total: int
    limit: int
    offset: int


class NameClusterIn(BaseModel):
    name: IdentityName = Field(min_length=1, max_length=128, description="The identity to give the cluster.")
    merge: bool = Field(default=False, description="Allow adding the faces to an identity that exists already.")


class NamedOut(BaseModel):
    cluster: str
    name: str
    tracks: int = Field(description="Track segments relabelled with the name.")
    entry: int | None = Field(default=None, description="The audit entry (`POST /api/audit/{entry}/undo`).")
    message: str = ""


class RejectIn(BaseModel):
    identity: SafeText | None = Field(
        default=None, min_length=1, max_length=128,
        description="The identity the face is not (default: the one the track was given).")


class RejectOut(BaseModel):
    run_id: str
    track_id: int
    identity: str = Field(description="The identity the face became a negative of.")


class SearchHitOut(BaseModel):
    run_id: str
    track_id: int
    segment: int = Field(default=0, description="The track's identity segment whose face matched.")
    label: str = Field(default="", description="`run RUN8 · track N[ · segment S]`.")
    camera_id: str
    ts: float = Field(description="Time of the segment's best face in the run (s).")
    distance: float = Field(description="Cosine distance to the photo's face.")
    identity: str | None
    unknown: str | None = Field(description="The segment's unknown cluster (`unknown-N`), if any.")
    face: str | None = Field(default=None, description="URL of the segment's face crop (JPEG), null when none was "
                             "kept.")
    seen_at: datetime | None = Field(default=None, description="When the best face was seen (UTC wall clock).")


class SearchOut(BaseModel):
    model: str
    threshold: float
    hits: list[SearchHitOut]


class AuditOut(BaseModel):
    id: int = Field(description="The entry's id (review actions: `POST /api/audit/{id}/undo`).")
    undoable: bool = Field(default=False, description="A review action that was not undone yet.")
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditOut]
    total: int
    limit: int
    offset: int
