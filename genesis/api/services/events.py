"""Runs, tracks and sightings with filters and offset pagination (portable SQL, both backends)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select

from genesis.adapters.db import Repository
from genesis.adapters.db.tables import Run, SightingRow, Track, ZoneEventRow
from genesis.domain.redact import redact


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What the caller asks for; every field is optional."""

    camera: str | None = None
    run: str | None = None
    identity: str | None = None
    zone: str | None = None
    track: int | None = None
    since: datetime | None = None
    """Runs that were still going at or after this time (wall clock, UTC)."""
    until: datetime | None = None
    """Runs that started at or before this time."""
    ts_from: float | None = None
    """Media time within a run, seconds (the ``ts`` of sightings)."""
    ts_to: float | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


def run_window(query: Any, f: EventFilter) -> Any:
    if f.camera is not None:
        query = query.where(Run.camera_id == f.camera)
    if f.run is not None:
        query = query.where(Run.id == f.run)
    if f.until is not None:
        query = query.where(Run.started_at <= f.until)
    if f.since is not None:
        query = query.where(or_(Run.finished_at.is_(None), Run.finished_at >= f.since))
    return query


def _in_zone(run_col: Any, track_col: Any, zone: str) -> Any:
    return exists().where(
        and_(ZoneEventRow.run_id == run_col, ZoneEventRow.track_id == track_col, ZoneEventRow.zone == zone)
    )


def runs(repo: Repository, camera: str | None, limit: int, offset: int) -> Page:
    query = select(Run.id, Run.camera_id, Run.source, Run.status, Run.started_at, Run.finished_at, Run.frames)
    count = select(func.count()).select_from(Run)
    if camera is not None:
        query = query.where(Run.camera_id == camera)
        count = count.where(Run.camera_id == camera)
    query = query.order_by(Run.started_at.desc(), Run.id.desc()).limit(limit).offset(offset)
    with repo.engine.connect() as conn:
        total = int(conn.execute(count).scalar_one())
        rows = conn.execute(query).all()
    items = [
        {"run_id": r.id, "camera_id": r.camera_id, "source": redact(r.source), "status": r.status,
         "started_at": r.started_at, "finished_at": r.finished_at, "frames": r.frames}
        for r in rows
    ]
    return Page(items, total, limit, offset)


def tracks(repo: Repository, f: EventFilter, limit: int, offset: int) -> Page:
    cols = (Track.run_id, Track.track_id, Track.camera_id, Track.first_seq, Track.last_seq, Track.first_ts,
            Track.last_ts, Track.frames, Track.identity_name, Track.votes, Track.attempts, Track.best_distance,
            Track.segment, Run.started_at)
    base: Any = select(*cols).join(Run, Run.id == Track.run_id)
    base = run_window(base, f)
    if f.identity is not None:
        base = base.where(Track.identity_name == f.identity)
    if f.track is not None:
        base = base.where(Track.track_id == f.track)
    if f.zone is not None:
        base = base.where(_in_zone(Track.run_id, Track.track_id, f.zone))
    if f.ts_from is not None:
        base = base.where(Track.last_ts >= f.ts_from)
    if f.ts_to is not None:
        base = base.where(Track.first_ts <= f.ts_to)
    count = select(func.count()).select_from(base.subquery())
    query = base.order_by(Run.started_at.desc(), Track.run_id, Track.track_id, Track.segment).limit(limit).offset(
        offset)
    with repo.engine.connect() as conn:
        total = int(conn.execute(count).scalar_one())
        rows = conn.execute(query).all()
    items = [
        {"run_id": r.run_id, "track_id": r.track_id, "segment": r.segment, "camera_id": r.camera_id,
         "first_seq": r.first_seq,
         "last_seq": r.last_seq, "first_ts": r.first_ts, "last_ts": r.last_ts, "frames": r.frames,
         "identity": r.identity_name, "votes": r.votes, "attempts": r.attempts, "best_distance": r.best_distance}
        for r in rows
    ]
    return Page(items, total, limit, offset)


def sightings(repo: Repository, f: EventFilter, limit: int, offset: int) -> Page:
    cols = (SightingRow.run_id, SightingRow.track_id, SightingRow.seq, SightingRow.ts, SightingRow.x1,
            SightingRow.y1, SightingRow.x2, SightingRow.y2, SightingRow.score, Run.camera_id, Track.identity_name)
    base: Any = (
        select(*cols)
        .join(Run, Run.id == SightingRow.run_id)
        .outerjoin(Track, and_(Track.run_id == SightingRow.run_id, Track.track_id == SightingRow.track_id,
                               Track.first_seq <= SightingRow.seq, Track.last_seq >= SightingRow.seq))
    )
    base = run_window(base, f)
    if f.identity is not None:
        base = base.where(Track.identity_name == f.identity)
    if f.track is not None:
        base = base.where(SightingRow.track_id == f.track)
    if f.zone is not None:
        base = base.where(_in_zone(SightingRow.run_id, SightingRow.track_id, f.zone))
    if f.ts_from is not None:
        base = base.where(SightingRow.ts >= f.ts_from)
    if f.ts_to is not None:
        base = base.where(SightingRow.ts <= f.ts_to)
    count = select(func.count()).select_from(base.subquery())
    query = base.order_by(SightingRow.run_id, SightingRow.seq, SightingRow.track_id).limit(limit).offset(offset)
    with repo.engine.connect() as conn:
        total = int(conn.execute(count).scalar_one())
        rows = conn.execute(query).all()
    items = [
        {"run_id": r.run_id, "camera_id": r.camera_id, "track_id": r.track_id, "seq": r.seq, "ts": r.ts,
         "box": [r.x1, r.y1, r.x2, r.y2], "score": r.score, "identity": r.identity_name}
        for r in rows
    ]
    return Page(items, total, limit, offset)


def latest_run(repo: Repository, camera: str) -> str | None:
    """The newest run of a camera."""
    with repo.engine.connect() as conn:
        return conn.execute(
            select(Run.id).where(Run.camera_id == camera).order_by(Run.started_at.desc(), Run.id.desc()).limit(1)
        ).scalar_one_or_none()
