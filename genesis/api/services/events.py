"""Runs, tracks and sightings with filters and offset pagination (the queries:
`genesis.adapters.db.events`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from genesis.adapters.db import Repository, RunRecord
from genesis.adapters.db.events import (
    EventFilter,
    EventRows,
    SightingListing,
    TrackListing,
    read_events,
)
from genesis.domain.redact import redact

__all__ = ["EventFilter", "Page", "latest_run", "runs", "sightings", "tracks"]

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


def _page(
    repo: Repository, read: Callable[[EventRows], tuple[Sequence[R], int]], item: Callable[[R], dict[str, Any]],
    limit: int, offset: int,
) -> Page:
    """One page: ``read`` gives the rows and the total in one read transaction, ``item`` makes each row's entry."""
    with read_events(repo.engine) as db:
        rows, total = read(db)
    return Page([item(r) for r in rows], total, limit, offset)


def runs(repo: Repository, camera: str | None, limit: int, offset: int) -> Page:
    def item(r: RunRecord) -> dict[str, Any]:
        return {"run_id": r.run_id, "camera_id": r.camera_id, "source": redact(r.source), "status": r.status,
                "started_at": r.started_at, "finished_at": r.finished_at, "frames": r.frames}

    return _page(repo, lambda db: db.runs(camera, limit, offset), item, limit, offset)


def tracks(repo: Repository, f: EventFilter, limit: int, offset: int) -> Page:
    def item(r: TrackListing) -> dict[str, Any]:
        return {"run_id": r.run_id, "track_id": r.track_id, "segment": r.segment, "camera_id": r.camera_id,
                "first_seq": r.first_seq,
                "last_seq": r.last_seq, "first_ts": r.first_ts, "last_ts": r.last_ts, "frames": r.frames,
                "identity": r.identity_name, "votes": r.votes, "attempts": r.attempts,
                "best_distance": r.best_distance}

    return _page(repo, lambda db: db.tracks(f, limit, offset), item, limit, offset)


def sightings(repo: Repository, f: EventFilter, limit: int, offset: int) -> Page:
    def item(r: SightingListing) -> dict[str, Any]:
        return {"run_id": r.run_id, "camera_id": r.camera_id, "track_id": r.track_id, "seq": r.seq, "ts": r.ts,
                "box": [r.x1, r.y1, r.x2, r.y2], "score": r.score, "identity": r.identity_name, "frames": r.frames}

    return _page(repo, lambda db: db.sightings(f, limit, offset), item, limit, offset)


def identity_runs(repo: Repository, name: str) -> list[str]:
    """The runs an identity was seen in, newest first."""
    with read_events(repo.engine) as db:
        return db.identity_runs(name)


def latest_run(repo: Repository, camera: str) -> str | None:
    """The newest run of a camera."""
    with read_events(repo.engine) as db:
        return db.latest_run(camera)
