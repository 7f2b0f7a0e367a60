"""What every process pays at start: the Celery app and its task modules leave the heavy libraries that only
some processes use unimported (supervision brings scipy: about 0.6 s of CPU at each start of a detect or store
worker, a capture, beat or a CLI command)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("supervision", "scipy", "torch", "ultralytics")


def test_the_celery_app_and_its_tasks_import_no_heavy_library() -> None:
    code = ("import json, sys; from genesis.celery import app; app.loader.import_default_modules(); "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stdout


def test_the_ordered_stage_still_imports_supervision_when_it_counts() -> None:
    code = ("import sys; from genesis.config import ZoneConfig; from genesis.stages.analytics import ZoneCounter; "
            "assert 'supervision' not in sys.modules; "
            "ZoneCounter('c', ZoneConfig(name='z', points=[[0, 0], [1, 0], [1, 1]]), 100, 100, 1, 1.0); "
            "print('supervision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


def test_a_worker_of_the_ordered_stage_imports_it_before_work_and_others_do_not() -> None:
    def imported_after_init(queue: str) -> bool:
        code = ("import sys; from genesis.celery import app; app.loader.import_default_modules(); "
                f"app.amqp.queues.select([{queue!r}]); "
                "from genesis.tasks.sequence import _import_the_ordered_stage; _import_the_ordered_stage(); "
                "print('supervision' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1] == "True"

    assert imported_after_init("recognize")
    assert not imported_after_init("store") and not imported_after_init("detect")
