"""Waiting in the tests: polling a condition, a served process coming up, a child process going away."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.3) -> None:
    """Poll ``predicate`` until it is true; an OSError or ValueError (a server not up yet, a body not yet
    JSON) counts as not yet. AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_served(base: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 60) -> None:
    """Until ``GET base/health`` answers 200; AssertionError with the process's log when it ends first or
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"genesis serve did not start: {log.read_text()}")
        time.sleep(0.3)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL when it has not ended after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
