"""Dead workers' messages on a real Redis broker (kombu's own unacked bookkeeping), and the checks
of the liveness settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import update

from genesis.config import DistributedConfig, Settings
from genesis.pipeline.drain import PipelineBacklog
from genesis.pipeline.liveness import held_messages, holder_key, note_holder, restore_dead, worker_key
from tests.services import redis_url

BROKER = redis_url(12)


@pytest.fixture()
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(BROKER)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture()
def app() -> Celery:
    from genesis.celery import configure

    app = Celery("liveness-test", set_as_current=False)
    configure(app, Settings(broker_url=BROKER, redis_url=BROKER))
    return app


class Taker:
    """Takes messages the way a worker does (unacknowledged), and then dies: its connection is
    dropped without kombu giving the messages back (as a SIGKILL would)."""

    def __init__(self, app: Celery) -> None:
        self.conn = app.connection_for_read()
        self.channel = self.conn.default_channel

    def take(self, queue: str = "detect") -> str:
        message = self.channel.basic_get(queue=queue, no_ack=False)
        assert message is not None
        return str(message.delivery_tag)

    def die(self) -> None:
        self.channel.qos._delivered.clear()  # nothing for kombu to restore on close
        self.conn.release()


@pytest.fixture()
def taker(app: Celery) -> Iterator[Taker]:
    t = Taker(app)
    yield t
    t.die()


def test_gap_timeout_must_wait_for_dead_workers() -> None:
    with pytest.raises(ValueError, match=r"gap_timeout_s \(15\) must be at least twice .*worker_dead_after_s \(10\)"):
        DistributedConfig(gap_timeout_s=15)
    with pytest.raises(ValueError, match="worker_heartbeat_s"):
        DistributedConfig(worker_heartbeat_s=6)
    d = DistributedConfig()
    assert d.gap_timeout_s >= 2 * d.worker_dead_after_s and d.visibility_timeout_s > d.gap_timeout_s


def test_message_of_a_dead_holder_goes_back_to_the_head_of_its_queue(app: Celery, broker: redis.Redis,
                                                                     taker: Taker) -> None:
    app.send_task("genesis.detect", args=[[{"seq": 0}], "run-a", -1], queue="detect")
    tag = taker.take()
    app.send_task("genesis.detect", args=[[{"seq": 1}], "run-a", 0], queue="detect")  # waits behind
    note_holder(broker, tag, "detect-1@host", 3600)
    broker.set(worker_key("detect-1@host"), "1", ex=10)

    [msg] = held_messages(broker, dead_after_s=10)
    assert (msg.state, msg.holder, msg.message.task, msg.message.run_id) == (
        "in flight", "detect-1@host", "genesis.detect", "run-a")
    assert restore_dead(app, broker, 10) == []  # a living holder keeps its message

    broker.delete(worker_key("detect-1@host"))  # its heartbeat expired: dead
    [msg] = held_messages(broker, dead_after_s=10)
    assert msg.state == "held by a dead worker"
    assert "held by a dead worker (detect-1@host)" in msg.describe() and "run-a" in msg.describe()
    assert [m.tag for m in restore_dead(app, broker, 10)] == [tag]
    assert broker.hlen("unacked") == 0 and not broker.exists(holder_key(tag))
    # Back at the head: the next message taken is the restored one, marked redelivered.
    with app.connection_for_read() as conn:
        again = conn.default_channel.basic_get(queue="detect", no_ack=True)
        assert again is not None and str(again.delivery_tag) == tag
        assert again.delivery_info.get("redelivered") or again.headers.get("redelivered")
    assert restore_dead(app, broker, 10) == []  # restored once


def test_message_a_living_worker_lost_goes_back_after_two_beats(app: Celery, broker: redis.Redis,
                                                               taker: Taker) -> None:
    """Celery drops prefetched and countdown messages when its broker connection breaks: they stay
    in ``unacked`` held by a worker that is alive. Its heartbeat's audit puts back what it holds
    and no longer has in hand, at the second beat that sees it so, and never what it has."""
    from genesis.pipeline.liveness import WorkerHeartbeat

    app.send_task("genesis.detect", args=[[{"seq": 0}], "run-l", -1], queue="detect")
    kept = taker.take()
    app.send_task("genesis.detect", args=[[{"seq": 1}], "run-l", 0], queue="detect")
    lost = taker.take()
    for tag in (kept, lost):
        note_holder(broker, tag, "detect-2@host", 3600)
    hand = {kept, lost}
    beat = WorkerHeartbeat(app, broker, "detect-2@host", 2, 10, in_hand=lambda: set(hand))
    beat.beat()
    assert beat.audit() == []  # everything in hand
    hand.discard(lost)  # the connection broke: the prefetched message is gone from memory
    assert beat.audit() == []  # first sight: it may be a message acknowledged a moment ago
    assert [m.tag for m in beat.audit()] == [lost]
    assert broker.hkeys("unacked") == [kept.encode()] and broker.llen("detect") == 1
    assert beat.audit() == [] and restore_dead(app, broker, 10) == []  # the kept one stays, once
    other = WorkerHeartbeat(app, broker, "detect-3@host", 2, 10, in_hand=set)
    assert other.audit() == [] and other.audit() == []  # another worker's messages are not its own


def test_a_message_taken_and_finished_between_beats_is_never_put_back(app: Celery, broker: redis.Redis,
                                                                      taker: Taker) -> None:
    """A message taken while the audit reads (between the worker's hands and the records), then finished at the
    next beat a moment before its acknowledgement, was seen "recorded, not in hand" twice and run again (a
    sequence task of the soak). Read in the other order, it is suspected once at most, and acknowledged by then."""
    from genesis.pipeline.liveness import WorkerHeartbeat

    app.send_task("genesis.sequence", args=["entrance", "run-t"], queue="recognize")
    taken: list[str] = []
    calls = [0]

    def in_hand() -> set[str]:
        calls[0] += 1
        snapshot: set[str] = set()  # the task is not in hand at the first read, finished at the second
        if calls[0] == 1:  # ... and taken right after the first read of the worker's hands
            taken.append(taker.take("recognize"))
            note_holder(broker, taken[0], "recognize-1@host", 3600)
        return snapshot

    beat = WorkerHeartbeat(app, broker, "recognize-1@host", 2, 10, in_hand=in_hand)
    beat.beat()
    assert beat.audit() == []
    assert beat.audit() == []  # finished, its acknowledgement a moment away: not put back
    taker.channel.basic_ack(taken[0])
    assert beat.audit() == [] and broker.llen("recognize") == 0 and not broker.hlen("unacked")


def test_unclaimed_message_goes_back_only_when_old(app: Celery, broker: redis.Redis, taker: Taker) -> None:
    app.send_task("genesis.sequence", args=["entrance", "run-b"], queue="recognize")
    tag = taker.take("recognize")
    assert [m.state for m in held_messages(broker, dead_after_s=10)] == ["in flight"]  # just taken
    broker.zadd("unacked_index", {tag: 1.0})  # taken long ago, holder never recorded
    assert [m.state for m in held_messages(broker, dead_after_s=10)] == ["unclaimed"]
    assert len(restore_dead(app, broker, 10)) == 1 and broker.llen("recognize") == 1


def test_drain_description_names_what_it_waits_for(app: Celery, broker: redis.Redis, taker: Taker) -> None:
    app.send_task("genesis.detect", args=[[{"seq": 0}], "run-c", -1], queue="detect")
    tag = taker.take()
    note_holder(broker, tag, "detect-9@host", 3600)
    held = held_messages(broker, 10)
    state = PipelineBacklog({"detect": 2}, len(held), 5, ["run-c"], held, [], live_workers=0)
    text = state.describe()
    assert "queued: detect 2" in text and "in flight: 0" in text
    assert "held by a dead worker: 1 (genesis.detect (run run-c) held by a dead worker (detect-9@host)" in text
    assert "no live worker to put them back" in text
    assert "frames awaiting the sequencer: 5" in text and "runs not finished: 1 (run-c)" in text


def test_stale_run_is_abandoned_by_the_status_and_its_keys_expire(app: Celery, broker: redis.Redis,
                                                                  tmp_path: Path) -> None:
    """The reaper behind drain, report, /api/pipeline/status and the workers' heartbeat: a distributed
    run older than run_stale_after_s with no heartbeat, no task and no message is marked failed (why
    in its meta) and its keys get an expiry; one with a message waiting, or a live capture, is not."""
    from genesis.adapters.db import Repository
    from genesis.adapters.db.tables import Run
    from genesis.adapters.dlq import DeadLetters
    from genesis.api.services.pipeline import status
    from genesis.pipeline.liveness import capture_key
    from genesis.pipeline.sequencer import done_key, state_key
    from genesis.tasks.dispatch import end_key

    settings = Settings(broker_url=BROKER, redis_url=BROKER, database_url=f"sqlite:///{tmp_path / 'g.db'}")
    repo = Repository(settings.database_url)
    old = datetime.now(UTC) - timedelta(seconds=settings.distributed.run_stale_after_s + 5)
    for run_id in ("dead", "ended", "queued", "capturing", "young"):
        repo.start_run(run_id, "entrance", "rtsp://***@cam/x", {"mode": "distributed", "width": 8, "height": 8})
        if run_id != "young":
            with repo.engine.begin() as conn:
                conn.execute(update(Run).where(Run.id == run_id).values(started_at=old))
    broker.set(state_key("dead"), b"x")  # a sequencer state without expiry
    app.send_task("genesis.detect", args=[[{"seq": 0}], "queued", -1], queue="detect")
    broker.set(capture_key("capturing"), "1", ex=60)
    broker.set(end_key("ended"), json.dumps({"last_seq": 7, "frames": 8}))  # ended, never finished

    body = status(settings, broker, DeadLetters(broker), app, 0.2, repo)
    assert body["database"]["running_runs"] == 3
    runs = {r.run_id: r for r in repo.runs()}
    assert runs["dead"].status == "failed"
    assert "capture stopped without ending the stream" in runs["dead"].meta["abandoned"]
    assert runs["ended"].status == "failed"
    assert "the stream ended (last frame 7) but nothing worked on it for 60 s" in runs["ended"].meta["abandoned"]
    assert {runs[r].status for r in ("queued", "capturing", "young")} == {"running"}
    assert 0 < broker.ttl(state_key("dead")) <= settings.distributed.frame_ttl_s
    assert broker.get(done_key("dead"))  # a late message for it does nothing
    repo.close()
