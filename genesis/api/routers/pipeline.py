"""Pipeline status (database, Redis, queue depths, workers, DLQ size) and the DLQ (list, show, replay)."""

from __future__ import annotations

from typing import Annotated, Any

import kombu.exceptions
import redis
from fastapi import APIRouter, Path, Query

from genesis.adapters.dlq import ReplayError
from genesis.api.deps import Operator, Services, Viewer
from genesis.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from genesis.api.params import LimitQ, OffsetQ
from genesis.api.schemas import LetterDetail, LetterOut, LetterPage, PipelineStatus, ReplayOut, StorageStatsOut
from genesis.api.services import pipeline as svc
from genesis.tasks.dispatch import replay_queue

router = APIRouter(prefix="/api", tags=["pipeline"], responses=ERROR_RESPONSES)

LetterPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$",
                                 description="Dead letter id.")]
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "Redis or the broker cannot be reached."}
}


@router.get("/pipeline/status", response_model=PipelineStatus, summary="Database, Redis, queues, workers, DLQ")
def status(_key: Viewer, s: Services) -> PipelineStatus:
    data = svc.status(s.settings, s.redis, s.letters, s.celery, s.settings.api.inspect_timeout_s, s.repo)
    return PipelineStatus.model_validate(data)


@router.get("/db/stats", response_model=StorageStatsOut, summary="Rows and bytes per table, camera and camera-day")
def db_stats(
    _key: Operator,
    s: Services,
    per_day: Annotated[bool, Query(description="Rows per camera and UTC day (reads every row of the large "
                                               "tables: seconds on a large database).")] = True,
) -> StorageStatsOut:
    """`genesis db stats --json`: operator, since the per-day figures read the largest tables."""
    return StorageStatsOut.model_validate(svc.storage(s.repo, per_day, s.settings))


@router.get("/dlq", response_model=LetterPage, summary="Dead letters, newest first", responses=UNAVAILABLE)
def dlq(_key: Viewer, s: Services, limit: LimitQ = 50, offset: OffsetQ = 0) -> LetterPage:
    try:
        items, total = svc.dlq_list(s.letters, limit, offset)
    except redis.RedisError as exc:
        raise ApiError(503, f"cannot reach Redis: {exc}") from None
    return LetterPage(items=[LetterOut.model_validate(i) for i in items], total=total, limit=limit, offset=offset)


@router.get("/dlq/{letter_id}", response_model=LetterDetail, summary="One dead letter",
            responses={404: {"model": ErrorResponse}, **UNAVAILABLE})
def dlq_show(letter_id: LetterPath, _key: Viewer, s: Services) -> LetterDetail:
    try:
        letter = s.letters.get(letter_id)
    except redis.RedisError as exc:
        raise ApiError(503, f"cannot reach Redis: {exc}") from None
    except ValueError as exc:
        raise ApiError(409, f"dead letter {letter_id} is unreadable: {exc}") from None
    if letter is None:
        raise ApiError(404, f"no dead letter {letter_id!r}")
    return LetterDetail.model_validate({**svc.letter_summary(letter), "task_id": letter.task_id,
                                        "args": letter.args, "kwargs": letter.kwargs, "exc_type": letter.exc_type,
                                        "exc_message": letter.exc_message, "traceback": letter.traceback,
                                        "first_failed_at": letter.first_failed_at, "hostname": letter.hostname})


@router.post("/dlq/{letter_id}/replay", response_model=ReplayOut, summary="Send a dead letter's task again",
             responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}, **UNAVAILABLE})
def dlq_replay(letter_id: LetterPath, _key: Operator, s: Services) -> ReplayOut:
    try:
        letter = s.letters.get(letter_id)
        if letter is None:
            raise ApiError(404, f"no dead letter {letter_id!r}")
        task_id = svc.dlq_replay(s.settings, s.celery, s.letters, letter)
    except ReplayError as exc:
        raise ApiError(409, str(exc)) from None
    except ValueError as exc:
        raise ApiError(409, f"dead letter {letter_id} is unreadable: {exc}") from None
    except (redis.RedisError, kombu.exceptions.OperationalError) as exc:
        raise ApiError(503, f"cannot reach Redis or the broker: {exc}") from None
    queue = replay_queue(s.settings, letter, str(s.celery.conf.task_default_queue or "detect"))
    return ReplayOut(letter_id=letter.id, task_id=task_id, queue=queue)
