"""The Celery app: JSON only, late acks, prefetch 1, routing from one place (gpu by configuration)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from celery import Celery

from genesis.celery import configure
from genesis.config import ConfigError, load_settings
from genesis.ops.launch import worker_argv
from genesis.tasks import routing


def app_for(**env: str) -> Celery:
    app = Celery("t", set_as_current=False)
    configure(app, load_settings(environ=env))
    return app


def test_reliability_settings() -> None:
    conf = app_for().conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 3600


def test_default_routes() -> None:
    routes = app_for().conf.task_routes
    assert routes[routing.DETECT] == {"queue": "detect"}
    assert routes[routing.SEQUENCE] == {"queue": "recognize"}
    assert {routes[n]["queue"] for n in (routing.SAVE_OUTCOME, routing.SAVE_TRACKS, routing.FINISH_RUN)} == {"store"}


def test_model_stages_can_go_to_the_gpu_queue() -> None:
    app = app_for(GENESIS_DISTRIBUTED__DETECT_QUEUE="gpu", GENESIS_DISTRIBUTED__RECOGNIZE_QUEUE="gpu")
    routes = app.conf.task_routes
    assert routes[routing.DETECT] == {"queue": "gpu"} and routes[routing.SEQUENCE] == {"queue": "gpu"}
    assert routes[routing.SAVE_OUTCOME] == {"queue": "store"}


def test_launcher_arguments() -> None:
    argv = worker_argv("detect", 3, None, "INFO", "d@h")
    assert argv[:7] == ["worker", "-Q", "detect", "-P", "prefork", "-c", "3"]
    gpu = worker_argv("detect", 3, 0, "INFO", "d@h")
    assert gpu[:7] == ["worker", "-Q", "detect,gpu", "-P", "solo", "-c", "1"]  # never CUDA in forked children
    assert worker_argv("recognize", None, None, "INFO", "r@h")[:7] == ["worker", "-Q", "recognize", "-P", "solo",
                                                                       "-c", "1"]
    # A batching detect worker (--gpu N, or --batch): one process, N tasks in flight in threads, one model.
    assert worker_argv("detect", None, 0, "INFO", "d@h", 32)[:7] == ["worker", "-Q", "detect,gpu", "-P", "threads",
                                                                     "-c", "32"]
    assert worker_argv("detect", None, None, "INFO", "d@h", 8)[:7] == ["worker", "-Q", "detect", "-P", "threads",
                                                                       "-c", "8"]
    assert worker_argv("detect", None, 0, "INFO", "d@h", 1)[:7] == gpu[:7]  # --batch 1: not batching
    assert worker_argv("recognize", None, 0, "INFO", "r@h", 32)[4] == "solo"  # batching is the detect worker's


def test_prefork_detect_children_share_the_cpus() -> None:
    from types import SimpleNamespace

    from genesis.backends.onnx import threads_per_process
    from genesis.ops.celery_hooks import prefork_children

    assert threads_per_process(0, 2, 2) == 1  # two children on two cores: one thread each, not two
    assert threads_per_process(0, 2, 16) == 8
    assert threads_per_process(0, 4, 2) == 1  # never below one
    assert threads_per_process(3, 2, 2) == 3  # a configured count is kept

    # The pool as the CLI hands it (a class) or as configuration names it (a string); threads and solo pools,
    # and celery's "auto" concurrency before it is resolved, are left alone.
    from celery.concurrency.prefork import TaskPool
    from celery.concurrency.solo import TaskPool as SoloPool

    assert prefork_children(SimpleNamespace(pool_cls=TaskPool, concurrency=2)) == 2
    assert prefork_children(SimpleNamespace(pool_cls="prefork", concurrency=3)) == 3
    assert prefork_children(SimpleNamespace(pool_cls=SoloPool, concurrency=1)) is None
    assert prefork_children(SimpleNamespace(pool_cls="threads", concurrency=8)) is None
    assert prefork_children(SimpleNamespace(pool_cls=TaskPool, concurrency="auto")) is None


def test_available_cpus_follow_a_cgroup_quota(tmp_path: Path) -> None:
    from genesis.backends.onnx import available_cpus

    mine = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")  # no quota
    assert available_cpus(cpu_max) == mine
    cpu_max.write_text("150000 100000\n")  # docker run --cpus 1.5
    assert available_cpus(cpu_max) == min(mine, 2)
    cpu_max.write_text("50000 100000\n")
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text("garbage\n")
    assert available_cpus(cpu_max) == mine
    assert available_cpus(tmp_path / "absent") == mine


def test_time_limits_follow_the_queue_of_each_task() -> None:
    limits = app_for().conf.task_annotations
    assert limits[routing.DETECT] == {"time_limit": 15.0}
    assert routing.SEQUENCE not in limits and routing.SAVE_TRACKS not in limits  # solo queues: no limit by default
    moved = app_for(GENESIS_DISTRIBUTED__DETECT_QUEUE="gpu",
                    GENESIS_DISTRIBUTED__TASK_TIME_LIMIT_S='{"gpu": 12, "store": 90}').conf.task_annotations
    assert moved[routing.DETECT] == {"time_limit": 12.0}
    assert moved[routing.FINISH_RUN] == {"time_limit": 90.0}


def test_a_time_limit_that_outlasts_the_gap_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"at least 5 s shorter than distributed\.gap_timeout_s"):
        load_settings(environ={"GENESIS_DISTRIBUTED__TASK_TIME_LIMIT_S": '{"detect": 26}'})
    assert load_settings(environ={"GENESIS_DISTRIBUTED__TASK_TIME_LIMIT_S": '{"detect": 25}'})
    with pytest.raises(ConfigError, match="must be positive"):
        load_settings(environ={"GENESIS_DISTRIBUTED__TASK_TIME_LIMIT_S": '{"analytics": 0}'})
    with pytest.raises(ConfigError):
        load_settings(environ={"GENESIS_DISTRIBUTED__TASK_TIME_LIMIT_S": '{"nowhere": 5}'})
    assert load_settings(environ={"GENESIS_DISTRIBUTED__TASK_TIME_LIMIT_S": "{}"}).distributed.task_time_limit_s == {}
