"""Who owns a run (issue 23, items 3, 4, 8): migration 0009 (runs.site, runs.holder) on SQLite and
PostgreSQL, the lease of an embedded run and the abandoning of one whose process is gone, the site
of a distributed run, and which dead letters are writes of a run."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

from sqlalchemy import text

from genesis.adapters.db import Repository, TrackRecord
from genesis.adapters.dlq import DeadLetter
from genesis.config.settings import Settings, redis_site
from genesis.domain import PathPoint, Sighting
from genesis.pipeline.drain import lettered_writes, lost_writes_message
from genesis.pipeline.lease import Host, Lease, holder_state, reap_abandoned_embedded, this_host, this_process
from genesis.pipeline.liveness import of_site
from tests.unit.adapters.test_repository import db_url  # noqa: F401  (the sqlite + postgresql fixture)

HERE = Host("box", "boot-1", "pid:[1]", {10: "500"}.get)


def lease(**changes: object) -> Lease:
    values: dict[str, object] = {"host": "box", "boot_id": "boot-1", "pid_ns": "pid:[1]", "pid": 10, "started": "500"}
    values.update(changes)
    return Lease(**values)  # type: ignore[arg-type]


def test_holder_state_tells_a_gone_process_from_a_live_or_unknown_one() -> None:
    assert holder_state(lease(), HERE)[0] == "alive"
    assert holder_state(lease(pid=11), HERE)[0] == "gone"  # no such process
    state, why = holder_state(lease(started="499"), HERE)  # the pid now belongs to another process
    assert state == "gone" and "another process" in why
    state, why = holder_state(lease(boot_id="boot-0"), HERE)
    assert state == "gone" and "restarted" in why
    assert holder_state(lease(host="other", pid=11), HERE)[0] == "unknown"  # cannot know
    assert holder_state(lease(pid_ns="pid:[2]", pid=11), HERE)[0] == "unknown"  # another container
    assert holder_state(lease(started="", pid=11), HERE)[0] == "unknown"  # no /proc where it ran


def test_this_process_is_alive_and_a_dead_one_is_gone() -> None:
    me = this_process()
    assert me.pid == os.getpid() and me.started and me.boot_id
    assert holder_state(me, this_host())[0] == "alive"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert holder_state(Lease(me.host, me.boot_id, me.pid_ns, child.pid, me.started), this_host())[0] == "gone"
    assert Lease.from_json(me.to_json()) == me and Lease.from_json({"host": "x"}) is None


def test_migration_0009_adds_the_owner_columns(db_url: str) -> None:  # noqa: F811
    with Repository(db_url, migrate=False) as repo:
        repo.upgrade("0008")
        with repo.engine.begin() as conn:
            conn.execute(text("INSERT INTO cameras (id, name, created_at) VALUES ('cam', 'cam', :at)"),
                         {"at": datetime(2026, 12, 1, tzinfo=UTC)})
            conn.execute(text("INSERT INTO runs (id, camera_id, source, status, started_at, frames, meta)"
                              " VALUES ('old', 'cam', 'v.mp4', 'running', :at, 0, '{}')"),
                         {"at": datetime(2026, 12, 1, tzinfo=UTC)})
        repo.upgrade()
        old = repo.run("old")
        assert old is not None and (old.site, old.holder) == (None, None)
        repo.start_run("new", "cam", "v.mp4", {"mode": "distributed"}, site="redis:6379/1")
        repo.start_run("emb", "cam", "v.mp4", {}, holder=lease().to_json())
        assert repo.run("new").site == "redis:6379/1"  # type: ignore[union-attr]
        assert Lease.from_json(repo.run("emb").holder) == lease()  # type: ignore[union-attr]
        repo.downgrade("0008")
        repo.upgrade()
        assert repo.run("new").site is None  # type: ignore[union-attr]


def test_an_embedded_run_whose_process_is_gone_is_failed_and_its_rows_removed(db_url: str) -> None:  # noqa: F811
    with Repository(db_url) as repo:
        repo.start_run("dead", "cam", "v.mp4", {"fps": 25.0}, holder=lease(pid=11).to_json())
        repo.start_run("live", "cam", "v.mp4", {}, holder=lease().to_json())
        repo.start_run("far", "cam", "v.mp4", {}, holder=lease(host="other", pid=11).to_json())
        repo.start_run("dist", "cam", "v.mp4", {"mode": "distributed"}, site="redis:6379/1")
        for run in ("dead", "live"):
            repo.save_outcome(run, [Sighting("cam", 1, 0, 0.0, (0.0, 0.0, 1.0, 1.0), 0.9)], [], [], [],
                              [PathPoint("cam", 1, 0, 0.0, (0.0, 0.0, 1.0, 1.0), 0.9)])
            repo.save_tracks(run, [TrackRecord("cam", 1, 0, 0, 0.0, 0.0, 1, None, 0, 0, None)])
        [gone] = reap_abandoned_embedded(repo, HERE)
        assert gone.run_id == "dead" and "is gone" in gone.reason
        dead = repo.run("dead")
        assert dead is not None and dead.status == "failed" and dead.finished_at is not None
        assert dead.meta["abandoned"] == gone.reason and dead.meta["rows_removed"] and dead.meta["fps"] == 25.0
        assert repo.points("dead") == [] and repo.tracks("dead") == []
        assert len(repo.points("live")) == 1 and len(repo.tracks("live")) == 1
        assert {r.run_id for r in repo.runs(status="running")} == {"live", "far", "dist"}
        assert reap_abandoned_embedded(repo, HERE) == []  # once


def test_site_of_a_run() -> None:
    assert redis_site("redis://:secret@Redis.example:6380/2") == "redis.example:6380/2"  # no credentials
    assert redis_site("rediss://user:pw@host") == "host:6379/0"
    assert Settings(redis_url="redis://a:6379/1").site == "a:6379/1"
    assert Settings(redis_url="redis://a:6379/1", distributed={"site_id": "hq"}).site == "hq"  # type: ignore[arg-type]
    assert of_site("a:6379/1", "a:6379/1") and of_site(None, "a:6379/1") and not of_site("b:6379/1", "a:6379/1")


def test_dead_lettered_writes_are_named() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)

    def letter(i: str, task: str, args: list[object]) -> DeadLetter:
        return DeadLetter(task, i, args=args, exc_type="E", retries=8, failed_at=now, id=i)

    letters = [letter("a1", "genesis.store.save_outcome", ["r1", {}]), letter("a2", "genesis.detect", [[], "r1", 0]),
               letter("a3", "genesis.store.save_alerts", ["r2", 0.0, [], []]),
               letter("a4", "genesis.analytics.rollup", [])]
    writes = lettered_writes(letters)
    assert [(w.letter_id, w.run_id) for w in writes] == [("a1", "r1"), ("a3", "r2")]
    said = lost_writes_message(writes)
    assert "a1 save_outcome (run r1)" in said and "a3 save_alerts (run r2)" in said
    assert "genesis dlq replay" in said
