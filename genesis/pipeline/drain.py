"""``genesis drain``: wait until the distributed pipeline has nothing left to do, and say what it waits for.

Each look first marks abandoned runs (genesis.pipeline.liveness: no capture, no task and no
message for ``run_stale_after_s``), so drain never waits on a dead run. Messages taken by a
worker and not acknowledged are told apart: *in flight* on a living worker, or *held by a
dead worker* (they go back to their queue as soon as a living worker's heartbeat sees it).
A run that cannot finish because messages of its are in the dead letters (a database away for
longer than the retries last) is named, and drain stops instead of waiting for ``--timeout``.

Drained is a promise that every finished stream is stored: while the dead letters hold a write
of a run (a store task: sightings, tracks, the run's end, alerts, track faces), of any run
(drain is global), drain fails and names those letters (id, task, run) instead of saying
drained, whatever the run's status (its end may have been stored while its rows were not).
Dead letters of other tasks (a corrupt frame's detect task: the sequencer skips that frame and
counts it) do not keep drain from succeeding.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from genesis.adapters.db import Repository
from genesis.adapters.dlq import DeadLetter, DeadLetters
from genesis.adapters.redis_keys import RESULTS_PATTERN, done_key, end_key, run_id_of, worker_key
from genesis.config import Settings
from genesis.pipeline.liveness import Abandoned, HeldMessage, held_messages, reap_stale_runs, run_of_task
from genesis.tasks.routing import FINISH_RUN, QUEUES, SAVE_ALERTS, SAVE_OUTCOME, SAVE_TRACK_FACES, SAVE_TRACKS, SEQUENCE

SHOWN = 3
"""Items named per kind in the one-line description (the rest are counted)."""

WRITES = frozenset({SAVE_OUTCOME, SAVE_TRACKS, FINISH_RUN, SAVE_ALERTS, SAVE_TRACK_FACES})
"""The tasks that write a run's rows: one of them in the dead letters is a run not fully stored."""

LETTERS_NAMED = 10
"""Dead-lettered writes named in drain's message (the rest are counted)."""


@dataclass(frozen=True, slots=True)
class LetteredWrite:
    """A write of a run that is in the dead letters."""

    letter_id: str
    task: str
    run_id: str

    def describe(self) -> str:
        return f"{self.letter_id} {self.task.rsplit('.', 1)[-1]} (run {self.run_id})"


@dataclass(frozen=True, slots=True)
class PipelineBacklog:
    queued: dict[str, int]
    unacked: int
    pending_results: int
    unfinished_runs: list[str]
    held: list[HeldMessage] = field(default_factory=list)
    """Unacknowledged messages that count (the idle delayed looks at finished runs left out)."""
    abandoned: list[Abandoned] = field(default_factory=list)
    """Runs this look marked as abandoned."""
    live_workers: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    """Unfinished runs with messages in the dead letters, and how many (read only when nothing
    else is left)."""
    lost_writes: list[LetteredWrite] = field(default_factory=list)
    """Writes of any run in the dead letters (read only when nothing else is left)."""

    @property
    def idle(self) -> bool:
        """Nothing queued, taken or awaiting the sequencer."""
        return not any(self.queued.values()) and not self.unacked and not self.pending_results

    @property
    def empty(self) -> bool:
        return self.idle and not self.unfinished_runs

    @property
    def blocked(self) -> bool:
        """Nothing left to move, and every unfinished run waits on messages in the dead letters."""
        return self.idle and bool(self.unfinished_runs) and all(r in self.dead_lettered for r in self.unfinished_runs)

    @property
    def dead_held(self) -> list[HeldMessage]:
        return [m for m in self.held if m.state != "in flight"]

    def describe(self) -> str:
        queued = ", ".join(f"{q} {n}" for q, n in self.queued.items() if n) or "none"
        flying = [m for m in self.held if m.state == "in flight"]
        parts = [f"queued: {queued}", f"in flight: {len(flying)}"]
        dead = self.dead_held
        if dead:
            names = "; ".join(m.describe() for m in dead[:SHOWN]) + (f"; +{len(dead) - SHOWN}" if len(dead) > SHOWN
                                                                       else "")
            back = ("they go back to their queue at a live worker's next heartbeat" if self.live_workers
                    else "no live worker to put them back: start one")
            parts.append(f"held by a dead worker: {len(dead)} ({names}; {back})")
        parts.append(f"frames awaiting the sequencer: {self.pending_results}")
        runs = ", ".join(self.unfinished_runs[:SHOWN]) + (f" +{len(self.unfinished_runs) - SHOWN}"
                                                          if len(self.unfinished_runs) > SHOWN else "")
        parts.append(f"runs not finished: {len(self.unfinished_runs)}" + (f" ({runs})" if runs else ""))
        if self.dead_lettered:
            parts.append("their messages in the dead letters: " + ", ".join(
                f"{run} {n}" for run, n in list(self.dead_lettered.items())[:SHOWN]))
        return "; ".join(parts)


def lettered_writes(letters: Iterable[DeadLetter]) -> list[LetteredWrite]:
    """The letters that are writes of a run (:data:`WRITES`), oldest first as given."""
    out = []
    for letter in letters:
        run = run_of_task(letter.task_name, letter.args) if letter.task_name in WRITES else None
        if run is not None:
            out.append(LetteredWrite(letter.id, letter.task_name, run))
    return out


def lost_writes_message(writes: list[LetteredWrite]) -> str:
    """drain's one message when dead letters hold writes: which, and what to do about them."""
    runs = sorted({w.run_id for w in writes})
    named = "; ".join(w.describe() for w in writes[:LETTERS_NAMED])
    more = f"; +{len(writes) - LETTERS_NAMED} more" if len(writes) > LETTERS_NAMED else ""
    return (f"not drained: {len(writes)} write(s) of {len(runs)} run(s) are in the dead letters, so those runs "
            f"are not fully stored: {named}{more}. Fix what made them fail (`genesis dlq show ID`), then "
            "`genesis dlq replay --all` (or `genesis dlq replay ID`); `genesis dlq purge` gives them up")


def dead_lettered_runs(letters: Iterable[DeadLetter], runs: Collection[str]) -> dict[str, int]:
    """How many dead letters each of ``runs`` has."""
    counts: Counter[str] = Counter()
    for letter in letters:
        run = run_of_task(letter.task_name, letter.args)
        if run is not None and run in runs:
            counts[run] += 1
    return dict(counts)


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

    abandoned = reap_stale_runs(settings, redis_client, app, repo)
    queued = {q: detect_backlog(app, q) for q in QUEUES}
    broker = broker_client(str(app.conf.broker_url))
    dead_after = settings.distributed.worker_dead_after_s
    idle = {str(tag.decode() if isinstance(tag, bytes) else tag)
            for tag, raw in broker.hgetall("unacked").items() if _idle_recheck(raw, redis_client)}
    held = [m for m in held_messages(broker, dead_after) if m.tag not in idle]
    pending = 0
    for key in redis_client.scan_iter(match=RESULTS_PATTERN, count=500):
        run_id = run_id_of(key)
        if redis_client.exists(done_key(run_id)):  # finished or abandoned: nothing will read them
            continue
        pending += int(redis_client.zcard(key))
    unfinished = [
        r.run_id for r in repo.runs(status="running") if redis_client.exists(end_key(r.run_id))
    ]
    live = sum(1 for _ in broker.scan_iter(match=worker_key("*"), count=500))
    lettered: dict[str, int] = {}
    writes: list[LetteredWrite] = []
    if not any(queued.values()) and not held and not pending:  # nothing else left: read the letters
        store = DeadLetters.from_settings(settings)
        try:
            letters = list(store)
        finally:
            store.redis.close()
        lettered = dead_lettered_runs(letters, unfinished) if unfinished else {}
        writes = lettered_writes(letters)
    return PipelineBacklog(queued, len(held), pending, unfinished, held, abandoned, live, lettered, writes)
