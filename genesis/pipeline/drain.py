"""``genesis drain``: wait until the distributed pipeline has nothing left to do."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from genesis.adapters.db import Repository
from genesis.adapters.redis_keys import RESULTS_PATTERN, done_key, end_key
from genesis.config import Settings
from genesis.tasks.routing import QUEUES, SEQUENCE


@dataclass(frozen=True, slots=True)
class PipelineBacklog:
    queued: dict[str, int]
    unacked: int
    pending_results: int
    unfinished_runs: list[str]

    @property
    def empty(self) -> bool:
        return not any(self.queued.values()) and not self.unacked and not self.pending_results \
            and not self.unfinished_runs

    def describe(self) -> str:
        queued = ", ".join(f"{q} {n}" for q, n in self.queued.items() if n) or "none"
        return (f"queued: {queued}; unacknowledged: {self.unacked}; frames awaiting the sequencer: "
                f"{self.pending_results}; runs not finished: {len(self.unfinished_runs)}")


def _idle_recheck(raw: bytes | str, redis_client: Any) -> bool:
    """A delayed sequencer look (a countdown task a worker holds) at a run that is already done:
    nothing is left for it to do, so it does not keep the pipeline from being drained."""
    try:
        message = json.loads(raw)[0]
        if message.get("headers", {}).get("task") != SEQUENCE:
            return False
        args = json.loads(base64.b64decode(message["body"]))[0]
        return bool(redis_client.exists(done_key(str(args[1]))))
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def backlog(settings: Settings, app: Any, redis_client: Any, repo: Repository) -> PipelineBacklog:
    from genesis.adapters.broker import broker_client, detect_backlog

    queued = {q: detect_backlog(app, q) for q in QUEUES}
    broker = broker_client(str(app.conf.broker_url))
    unacked = sum(1 for raw in broker.hvals("unacked") if not _idle_recheck(raw, redis_client))
    pending = 0
    for key in redis_client.scan_iter(match=RESULTS_PATTERN, count=500):
        pending += int(redis_client.zcard(key))
    unfinished = [
        r.run_id for r in repo.runs()
        if r.status == "running" and redis_client.exists(end_key(r.run_id))
    ]
    return PipelineBacklog(queued, unacked, pending, unfinished)
