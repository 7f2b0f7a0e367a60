"""Response and request models of the operator's console routes (faces, review, identity page, live view)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from genesis.api.params import SafeText


class FaceOut(BaseModel):
    run_id: str
    track_id: int
    segment: int = Field(description="The track's identity segment this face belongs to (a track may be cut "
                         "between people; every face and every review action is a segment's).")
    label: str = Field(description="How the console names it: `run RUN8 · track N[ · segment S]`.")
    camera_id: str
    ts: float = Field(description="Time of the segment's best face in the run (s).")
    seen_at: datetime | None = Field(description="That time on the wall clock (UTC).")
    identity: str | None
    distance: float | None = Field(description="Cosine distance of the segment's decision (best face).")
    unknown: str | None = Field(description="The face's unknown cluster (`unknown-N`), if any.")
    face: str | None = Field(description="URL of the face crop (JPEG), null when none was kept.")
    centroid_distance: float | None = Field(default=None, description="Distance to the cluster's centroid.")


class ClusterFacesOut(BaseModel):
    cluster: str
    total: int
    limit: int
    offset: int
    sample: bool = Field(description="The items are a sample spread over all the faces (most typical first, "
                         "least typical last), not a page.")
    items: list[FaceOut] = Field(description="The cluster's faces, the most typical (nearest the centroid) first.")


class ReviewItemOut(FaceOut):
    reason: str = Field(description="`unrecognised` (no name) or `low margin` (named, close to the threshold).")


class ReviewPage(BaseModel):
    items: list[ReviewItemOut]
    total: int
    limit: int
    offset: int
    threshold: float
    margin: float


class PhotoOut(BaseModel):
    id: int | None = Field(description="The kept photo's id; null for a track's face enrolled from the console.")
    photo: str = Field(description="The enrolled photo's file name (`track RUN/TRACK` for a track's face).")
    face: str = Field(description="URL of the kept face crop (JPEG).")


class PhotoPage(BaseModel):
    items: list[PhotoOut]
    total: int = Field(description="All the identity's enrolled faces that can be shown.")
    limit: int
    offset: int


class AssignIn(BaseModel):
    name: SafeText = Field(min_length=1, max_length=128, description="The identity the face belongs to.")
    create: bool = Field(default=False, description="Create a new identity of that name (409 if it exists).")


class Undoable(BaseModel):
    entry: int = Field(description="The action's audit entry: `POST /api/audit/{entry}/undo` takes it back.")
    message: str = Field(description="What was done, in a sentence.")


class AssignOut(Undoable):
    run_id: str
    track_id: int
    segment: int
    identity: str


class SegmentRejectOut(Undoable):
    run_id: str
    track_id: int
    segment: int
    identity: str = Field(description="The identity the face became a negative of.")


class MergeIn(BaseModel):
    into: str = Field(pattern=r"^unknown-[0-9]{1,9}$", description="The cluster that receives the faces.")


class MergeOut(Undoable):
    cluster: str = Field(description="The cluster that received the faces.")
    merged: str = Field(description="The cluster that is gone.")
    size: int


class UndoOut(Undoable):
    undone: int = Field(description="The audit entry taken back.")


class IdentityRunOut(BaseModel):
    run_id: str
    camera_id: str
    started_at: datetime
    report: dict[str, Any] = Field(description="The identity's entry of the run's report.json.")
    tracks: list[dict[str, Any]] = Field(description="`{track_id, label, segment, face}` of the identity's tracks "
                                         "in the run (the face of the identity's own segment).")
    timeline: list[dict[str, Any]] = Field(description="The report's timeline, each event with `at`, `segment` and "
                                           "`face` (the identity's segment nearest the event).")


class IdentityTimelinePage(BaseModel):
    items: list[IdentityRunOut] = Field(description="One per run the identity was seen in, newest first.")
    total: int = Field(description="Runs the identity was seen in.")
    limit: int
    offset: int


class IdentitySummaryOut(BaseModel):
    name: str
    photos: int
    enrolled_at: datetime
    cameras: list[str]
    first_seen: datetime | None
    last_seen: datetime | None
    visits: int
    dwell_s: float
    crossings: dict[str, int]
    sightings: int
    seen_s: float
    tracks: int
    zones: dict[str, dict[str, Any]]
    lines: dict[str, dict[str, int]]
    runs: list[IdentityRunOut] = Field(description="The newest 50 runs, as `/api/identities/{name}/timeline` "
                                       "gives them (which pages through all of them).")
    runs_total: int = Field(description="Runs the identity was seen in (the newest 50 are summed).")


class LiveFrameOut(BaseModel):
    camera_id: str
    available: bool = Field(description="A live frame was ever published for this camera (and is still kept).")
    stale: bool = Field(description="The newest frame is older than `console.live_stale_s` (no image then).")
    at: datetime | None = Field(description="When the newest frame was published (UTC).")
    age_s: float | None
    frame: dict[str, Any] | None = Field(description="The frame's JSON: run_id, seq, ts, width, height, persons "
                                         "[{track_id, box [x1, y1, x2, y2] in frame pixels, identity}], occupancy.")
    image: str | None = Field(description="The frame as a `data:image/jpeg;base64,` URL (null when stale).")
