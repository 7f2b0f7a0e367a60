"""Liveness in the distributed mode: messages held by dead workers, and abandoned runs.

**Dead workers.** With late acknowledgement, a message a worker has taken sits in the Redis
broker's ``unacked`` hash until the worker acknowledges it. Redis itself gives it back only
after the visibility timeout (an hour by default), whoever held it: far too late for the
per-camera sequencer, which skips a missing frame after ``gap_timeout_s``. So every worker
process runs a heartbeat thread (:class:`WorkerHeartbeat`, started by
``genesis.tasks.heartbeat``) that

- writes ``genesis:worker:<hostname>:alive`` every ``worker_heartbeat_s`` with a TTL of
  ``worker_dead_after_s``;
- records, for each message the worker takes, who holds it (``genesis:held:<delivery tag>`` =
  hostname, from the ``task_received`` signal, with the visibility timeout as TTL);
- puts back on its queue (at the head, next to be taken) every unacknowledged message whose
  holder's heartbeat is gone, through kombu's own restore (one transaction: a message is
  never restored twice). A message with no holder record (the worker died between taking it
  and recording it) is restored once it is ``2 * worker_dead_after_s`` old.

A slow but living worker keeps beating (the thread does not wait for its tasks), so it keeps
its messages and nothing is run twice because of slowness. When a worker is only *taken* for
dead (its heartbeat could not be written for ``worker_dead_after_s``, e.g. the broker was
away) its message runs twice: harmless, every write is idempotent and the sequencer takes
one result per frame. A reaper only acts after its own heartbeat has been written without
error for ``worker_dead_after_s``, so that after a broker outage every living worker has
beaten again before anyone judges it. A hung worker (alive, beating, never finishing) is
not detected: its message comes back after the visibility timeout.

**Abandoned runs.** A distributed run is ``running`` from the capture's start until the
store task records its end. Capture refreshes ``genesis:run:<id>:capture`` while it runs;
detect and sequence tasks refresh ``genesis:run:<id>:progress``. A run with neither key
(``run_stale_after_s`` TTL), no message waiting or held for it and no finished sequencer is
abandoned (:func:`reap_stale_runs`): marked ``failed`` with the reason in ``meta.abandoned``,
its Redis keys set to expire and its ``done`` flag set, so late messages do nothing. A run
records its site (``Settings.site``: ``distributed.site_id``, else the address of its Redis) and
only its own site's reaper judges it: two sites sharing a database, each with its own Redis,
never take each other's live runs for abandoned. The reaper runs in the workers' heartbeat
thread, and in ``genesis drain``, ``genesis report`` and ``/api/pipeline/status``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import redis

from genesis.adapters.redis_keys import (
    REAPER_RUNS_KEY,
    capture_key,
    done_key,
    holder_key,
    progress_key,
    restoring_key,
    run_pattern,
    worker_key,
)
from genesis.tasks import routing

if TYPE_CHECKING:
    from celery import Celery

    from genesis.adapters.db import Repository
    from genesis.config import Settings

log = logging.getLogger(__name__)

UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
"""kombu's Redis transport: delivery tag -> ``[message, exchange, routing key]``, and the times."""

CAPTURE_BEAT_S = 5.0
"""How often a running capture refreshes its run's heartbeat."""

HeldState = Literal["in flight", "held by a dead worker", "unclaimed"]

# Where the run id is in each pipeline task's arguments.
_RUN_ARG = {
    routing.DETECT: 1,
    routing.SEQUENCE: 1,
    routing.SAVE_OUTCOME: 0,
    routing.SAVE_TRACKS: 0,
    routing.FINISH_RUN: 0,
    routing.SAVE_TRACK_FACES: 0,
    routing.SAVE_ALERTS: 0,
}


RUN_REAP_KEY = REAPER_RUNS_KEY


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """What a broker message is about (decoded from kombu's Redis envelope)."""

    task: str
    run_id: str | None
    queue: str | None


def describe_message(raw: bytes | str) -> Message:
    """Task name, run id and queue of a message, from a queue list item or an ``unacked`` value."""
    try:
        data = json.loads(raw)
        envelope = data[0] if isinstance(data, list) else data
        queue = str(data[2]) if isinstance(data, list) and len(data) > 2 else None
        task = str(envelope.get("headers", {}).get("task") or "")
        body = envelope.get("body", "")
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        run_id = run_of_task(task, json.loads(body)[0])
        if queue is None:
            queue = envelope.get("properties", {}).get("delivery_info", {}).get("routing_key")
        return Message(task, run_id, queue)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return Message("", None, None)


def run_of_task(task: str, args: Any) -> str | None:
    """The run a pipeline task's positional arguments are about (None for other tasks)."""
    index = _RUN_ARG.get(task)
    return str(args[index]) if index is not None and isinstance(args, list) and len(args) > index else None


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A message a worker has taken and not acknowledged."""

    tag: str
    message: Message
    holder: str | None
    state: HeldState
    age_s: float
    taken_at: float | None = None
    """kombu's time of this delivery (``unacked_index``): tells one delivery from the next."""

    def describe(self) -> str:
        what = self.message.task or "a message"
        if self.message.run_id:
            what += f" (run {self.message.run_id})"
        if self.state == "in flight":
            return f"{what} in flight on {self.holder}"
        if self.state == "held by a dead worker":
            return f"{what} held by a dead worker ({self.holder})"
        return f"{what} taken {self.age_s:.0f} s ago by a worker that never said who it is"


def held_messages(broker: redis.Redis, dead_after_s: float, now: float | None = None) -> list[HeldMessage]:
    """Every unacknowledged message with its holder and whether that holder is alive."""
    now = time.time() if now is None else now
    entries = broker.hgetall(UNACKED)
    if not entries:
        return []
    tags = [_text(t) for t in entries]
    with broker.pipeline(transaction=False) as pipe:
        for tag in tags:
            pipe.get(holder_key(tag))
            pipe.zscore(UNACKED_INDEX, tag)
        looked = pipe.execute()
    holders = [None if h is None else _text(h) for h in looked[0::2]]
    taken = [float(t) if t is not None else None for t in looked[1::2]]
    alive = set()
    named = sorted({h for h in holders if h})
    if named:
        with broker.pipeline(transaction=False) as pipe:
            for h in named:
                pipe.exists(worker_key(h))
            alive = {h for h, ok in zip(named, pipe.execute(), strict=True) if ok}
    out = []
    for tag, raw, holder, at in zip(tags, entries.values(), holders, taken, strict=True):
        age = max(0.0, now - at) if at is not None else 0.0
        state: HeldState
        if holder is None:
            state = "unclaimed" if age >= 2 * dead_after_s else "in flight"
        else:
            state = "in flight" if holder in alive else "held by a dead worker"
        out.append(HeldMessage(tag, describe_message(raw), holder, state, age, at))
    return out


def restore_dead(app: Celery, broker: redis.Redis, dead_after_s: float) -> list[HeldMessage]:
    """Put the messages of dead holders back on their queues (at the head); returns them."""
    dead = [m for m in held_messages(broker, dead_after_s) if m.state != "in flight"]
    return _restore(app, broker, dead, dead_after_s, "")


def lost_messages(recorded: list[HeldMessage], hostname: str, in_hand: set[str]) -> list[HeldMessage]:
    """Messages recorded as held by ``hostname`` (alive) that it no longer has in hand.

    Celery drops the messages a worker has prefetched or scheduled (a retry's countdown) when
    its broker connection breaks, "as a delivery tag is specific to the current channel"; kombu
    gives them back when the channel closes, but only if Redis answers at that moment, which it
    does not when Redis itself went away. They would then stay in ``unacked``, held by a living
    worker, until the visibility timeout. An acknowledgement that could not be written leaves
    the same trace."""
    return [m for m in recorded if m.holder == hostname and m.tag not in in_hand]


def _restore(app: Celery, broker: redis.Redis, messages: list[HeldMessage], dead_after_s: float,
             why: str) -> list[HeldMessage]:
    if not messages:
        return []
    restored = []
    with app.connection_for_write() as conn:
        qos = conn.default_channel.qos
        for m in messages:
            # One reaper per message (several living workers see the same death), and only the
            # delivery that was judged: once restored and taken again, the message is back in
            # ``unacked`` under the same tag, with a new time and a new holder.
            if not broker.set(restoring_key(m.tag), "1", nx=True, ex=max(1, math.ceil(2 * dead_after_s))):
                continue
            holder = broker.get(holder_key(m.tag))
            if broker.zscore(UNACKED_INDEX, m.tag) != m.taken_at or (None if holder is None else _text(holder)) \
                    != m.holder:
                continue
            # kombu's own restore: one WATCH/MULTI transaction, at the head of the queue.
            qos.restore_by_tag(m.tag, leftmost=False)
            broker.delete(holder_key(m.tag))
            log.warning("restored %s%s", m.describe(), why)
            restored.append(m)
    return restored


def waiting_runs(app: Celery, broker: redis.Redis, queues: Iterable[str]) -> set[str]:
    """Runs with a message waiting on one of the queues, or taken and not acknowledged."""
    from genesis.adapters.broker import broker_queue_keys

    runs: set[str] = set()
    for queue in queues:
        for key in broker_queue_keys(app, queue):
            for raw in broker.lrange(key, 0, -1):
                run = describe_message(raw).run_id
                if run:
                    runs.add(run)
    for raw in broker.hvals(UNACKED):
        run = describe_message(raw).run_id
        if run:
            runs.add(run)
    return runs


# -- the worker's heartbeat ----------------------------------------------------------------------


class WorkerHeartbeat(threading.Thread):
    """The heartbeat of one worker process, and the reaper of dead workers' messages (see above).

    ``reap_runs`` (optional) is called about every ``run_stale_after_s / 4`` by one worker at a
    time, to mark abandoned runs. ``in_hand`` (optional) gives the delivery tags of the messages
    the worker has in memory (running, prefetched, waiting for a countdown): a message recorded
    as held by this worker that it no longer has (:func:`lost_messages`) at two beats in a row is
    put back on its queue.
    """

    def __init__(self, app: Celery, broker: redis.Redis, hostname: str, beat_s: float, dead_after_s: float,
                 reap_runs: Callable[[], object] | None = None, runs_every_s: float = 30.0,
                 in_hand: Callable[[], set[str] | None] | None = None) -> None:
        super().__init__(name="genesis-heartbeat", daemon=True)
        self.app = app
        self.broker = broker
        self.hostname = hostname
        self.beat_s = beat_s
        self.dead_after_s = dead_after_s
        self.reap_runs = reap_runs
        self.runs_every_s = runs_every_s
        self.in_hand = in_hand
        self.stopped = threading.Event()
        self._suspects: dict[str, float | None] = {}

    def beat(self) -> None:
        self.broker.set(worker_key(self.hostname), f"{time.time():.3f}", ex=math.ceil(self.dead_after_s))

    def audit(self) -> list[HeldMessage]:
        """Put back the messages this worker is recorded to hold but has lost (see the class).

        Two beats in a row, with the same delivery time: a message is recorded as held a moment
        before the worker has it in hand, and is acknowledged a moment after it leaves its hands."""
        if self.in_hand is None:
            return []
        # The records first, then the worker's hands: a message taken between the two reads is in hand by the
        # second (read the other way round, it was in the records and not yet in hand: a suspect, confirmed
        # when the next beat fell between the end of the task and its acknowledgement, and run twice).
        recorded = held_messages(self.broker, self.dead_after_s)
        in_hand = self.in_hand()
        if in_hand is None:  # the worker's state could not be read this time
            return []
        lost = lost_messages(recorded, self.hostname, in_hand)
        confirmed = [m for m in lost if m.tag in self._suspects and self._suspects[m.tag] == m.taken_at]
        self._suspects = {m.tag: m.taken_at for m in lost}
        return _restore(self.app, self.broker, confirmed, self.dead_after_s,
                        ": the worker no longer had it (dropped with its broken broker connection)")

    def run(self) -> None:
        healthy_since: float | None = None
        while True:
            try:
                self.beat()
                self.audit()
                if healthy_since is None:
                    healthy_since = time.monotonic()
                if time.monotonic() - healthy_since >= self.dead_after_s:
                    restore_dead(self.app, self.broker, self.dead_after_s)
                    if self.reap_runs is not None and self.broker.set(
                            RUN_REAP_KEY, self.hostname, nx=True, ex=max(1, int(self.runs_every_s))):
                        self.reap_runs()
            except Exception as exc:  # the broker or the database away: try again next beat
                healthy_since = None
                log.warning("worker heartbeat: %s: %s", type(exc).__name__, exc)
            if self.stopped.wait(self.beat_s):
                break
        with contextlib.suppress(redis.RedisError):
            self.broker.delete(worker_key(self.hostname))

    def stop(self) -> None:
        self.stopped.set()


def note_holder(broker: redis.Redis, tag: str, hostname: str, ttl_s: int) -> None:
    broker.set(holder_key(tag), hostname, ex=ttl_s)


def forget_holder(broker: redis.Redis, tag: str) -> None:
    """The message was acknowledged: who held it no longer matters (else the key stays for its TTL, the
    visibility timeout, one per task of the last hour)."""
    broker.delete(holder_key(tag))


# -- runs ---------------------------------------------------------------------------------------


class RunHeartbeat(threading.Thread):
    """Refreshes a run's capture key while the capture runs (also while it waits for a camera)."""

    def __init__(self, client: redis.Redis, run_id: str, ttl_s: float, every_s: float = CAPTURE_BEAT_S) -> None:
        super().__init__(name="genesis-run-heartbeat", daemon=True)
        self.client = client
        self.run_id = run_id
        self.ttl_s = math.ceil(ttl_s)
        self.every_s = min(every_s, ttl_s / 4)
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.client.set(capture_key(self.run_id), "1", ex=self.ttl_s)
            except redis.RedisError as exc:
                log.warning("run %s: heartbeat not written: %s", self.run_id, exc)
            if self.stopped.wait(self.every_s):
                return

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def touch_progress(client: Any, run_id: str, ttl_s: float) -> None:
    """Something worked on the run just now (a detect or sequence task)."""
    client.set(progress_key(run_id), "1", ex=math.ceil(ttl_s))


@dataclass(frozen=True, slots=True)
class _Running:
    run_id: str
    camera_id: str


@dataclass(frozen=True, slots=True)
class Abandoned:
    run_id: str
    camera_id: str
    reason: str


def _age_s(started_at: datetime) -> float:
    started = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
    return (datetime.now(UTC) - started).total_seconds()


def stale_reason(settings: Settings, client: Any, run_id: str) -> str:
    """Why a run with no heartbeat and no message is stale (in words, for its meta)."""
    from genesis.adapters.redis_keys import end_key

    after = f"{settings.distributed.run_stale_after_s:g} s"
    end = client.get(end_key(run_id))
    if end is None:
        return f"capture stopped without ending the stream (no capture heartbeat and no task for {after})"
    try:
        last = int(json.loads(end)["last_seq"])
    except (ValueError, KeyError, TypeError):
        last = -1
    return (f"the stream ended (last frame {last}) but nothing worked on it for {after}: "
            "its frames or their results were lost (e.g. Redis restarted without persistence)")


def of_site(run_site: str | None, site: str) -> bool:
    """Whether a run is this site's to judge: its own, or one stored before runs had a site.

    Only this site's Redis says whether a run is alive (its heartbeats, its messages): another
    site's run, with its keys in another Redis, would look dead from here."""
    return run_site is None or run_site == site


def reap_stale_runs(settings: Settings, client: Any, app: Celery, repo: Repository) -> list[Abandoned]:
    """Mark the distributed runs nothing works on any more as failed (abandoned); see the module doc."""
    stale_s = settings.distributed.run_stale_after_s
    site = settings.site
    running = repo.runs(status="running")  # only those: the reaper runs every few seconds
    candidates = [
        _Running(r.run_id, r.camera_id) for r in running
        if (r.meta or {}).get("mode") == "distributed" and of_site(r.site, site) and _age_s(r.started_at) >= stale_s
    ]
    if not candidates:
        return []
    candidates = [
        r for r in candidates
        if not client.exists(capture_key(r.run_id), progress_key(r.run_id), done_key(r.run_id))
    ]
    if not candidates:
        return []
    from genesis.adapters.broker import broker_client

    busy = waiting_runs(app, broker_client(str(app.conf.broker_url)), routing.QUEUES)
    out = []
    for r in candidates:
        if r.run_id in busy:
            continue
        reason = stale_reason(settings, client, r.run_id)
        if repo.abandon_run(r.run_id, reason):
            expire_run_keys(settings, client, r.run_id)
            log.warning("run %s (camera %s) abandoned: %s", r.run_id, r.camera_id, reason)
            out.append(Abandoned(r.run_id, r.camera_id, reason))
    return out


def expire_run_keys(settings: Settings, client: Any, run_id: str) -> None:
    """Give every Redis key of the run an expiry (frame_ttl_s) and set its done flag, so a late
    message for it does nothing and nothing of it lives forever."""
    ttl = settings.distributed.frame_ttl_s
    for key in client.scan_iter(match=run_pattern(run_id), count=500):
        current = client.ttl(key)
        if current is None or current < 0 or current > ttl:
            client.expire(key, ttl)
    client.set(done_key(run_id), "abandoned", ex=ttl * 12)
