"""The lease of an embedded run: which process runs it, so that a run whose process is gone does
not stay ``running`` forever.

An embedded ``genesis run`` records with its run the process that holds it (:class:`Lease`):
the host name, the host's boot id, its pid namespace, the pid and the process's start time. A
pid alone is not enough: after the process dies its pid is given to another process sooner or later, and after a
reboot it starts over. So the holder is gone when, on the same host,

- the boot id differs (the host rebooted since), or
- no process has that pid, or
- the process with that pid started at another time (the pid was reused).

A run of another host (or of another container: another pid namespace) is never judged here
(nothing here says whether its process lives). A process killed with SIGKILL (or a host that lost
power) never gets to mark its run; the next ``genesis run``, ``genesis report`` and
``/api/pipeline/status`` on the same host do:
:func:`reap_abandoned_embedded` marks it ``failed`` with ``meta.abandoned`` saying why, and
removes its rows (a failed embedded run keeps no half of its rows; its run row stays, failed).

The start time and boot id come from Linux's ``/proc``; where there is no ``/proc`` the lease is
recorded without them and the run is never judged (unknown, not gone).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from genesis.adapters.db import Repository

log = logging.getLogger(__name__)

PROC = Path("/proc")

HolderState = Literal["alive", "gone", "unknown"]


@dataclass(frozen=True, slots=True)
class Lease:
    """The process that runs an embedded run (stored as the run's ``holder``)."""

    host: str
    boot_id: str
    """The host's boot id ("" where unknown)."""
    pid_ns: str
    """The pid namespace (containers of one host with the same name have their own pids)."""
    pid: int
    started: str
    """The process's start time since boot, in clock ticks ("" where unknown)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Lease | None:
        """The lease stored with a run; None when there is none or it is not one."""
        if not data:
            return None
        try:
            return cls(str(data["host"]), str(data["boot_id"]), str(data["pid_ns"]), int(data["pid"]),
                       str(data["started"]))
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass(frozen=True, slots=True)
class Host:
    """What this host says about processes: its name, boot id and a process's start time (or None
    when no process has that pid)."""

    name: str
    boot_id: str
    pid_ns: str
    start_of: Callable[[int], str | None]


def holder_state(lease: Lease, here: Host) -> tuple[HolderState, str]:
    """Whether the process holding a run lives, and why it is taken for gone (in words)."""
    if lease.host != here.name:
        return "unknown", f"run by {lease.describe()}, another host"
    if not lease.boot_id or not lease.started or not here.boot_id:
        return "unknown", "no boot id or process start time to tell a reused pid"
    if lease.boot_id != here.boot_id:  # a restart ends every process of every container
        return "gone", f"its process ({lease.describe()}) is gone: the host restarted since the run began"
    if lease.pid_ns != here.pid_ns:
        return "unknown", f"run by {lease.describe()} in another container (pid namespace)"
    started = here.start_of(lease.pid)
    if started is None:
        return "gone", f"its process ({lease.describe()}) is gone (killed, or it crashed) before the run ended"
    if started != lease.started:
        return "gone", (f"its process ({lease.describe()}) is gone (killed, or it crashed) before the run ended; "
                        "the pid now belongs to another process")
    return "alive", f"run by {lease.describe()}"


# -- this host (Linux /proc) ---------------------------------------------------------------------


def boot_id(proc: Path = PROC) -> str:
    try:
        return (proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return ""


def pid_namespace(proc: Path = PROC) -> str:
    try:
        return os.readlink(proc / "self" / "ns" / "pid")
    except OSError:
        return ""


def process_start(pid: int, proc: Path = PROC) -> str | None:
    """A process's start time in clock ticks since boot (``/proc/<pid>/stat``, field 22); None when
    there is no such process (or it is a zombie: dead, waiting for its parent)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # "pid (comm) state ppid ..." where comm may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def this_host(proc: Path = PROC) -> Host:
    return Host(socket.gethostname(), boot_id(proc), pid_namespace(proc), lambda pid: process_start(pid, proc))


def this_process(proc: Path = PROC) -> Lease:
    """The lease of the current process."""
    return Lease(socket.gethostname(), boot_id(proc), pid_namespace(proc), os.getpid(),
                 process_start(os.getpid(), proc) or "")


# -- abandoned embedded runs --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AbandonedRun:
    run_id: str
    camera_id: str
    reason: str


def reap_abandoned_embedded(repo: Repository, here: Host | None = None) -> list[AbandonedRun]:
    """Mark the ``running`` embedded runs whose process on this host is gone as failed (abandoned),
    removing their rows; returns them. Runs of other hosts, and runs without a lease, are left."""
    here = here or this_host()
    out = []
    for run in repo.runs(status="running"):
        lease = Lease.from_json(run.holder)
        if lease is None:  # a distributed run, or an embedded one stored before leases
            continue
        state, why = holder_state(lease, here)
        if state != "gone":
            continue
        if repo.abandon_run(run.run_id, why, remove_rows=True):
            log.warning("run %s (camera %s) abandoned: %s", run.run_id, run.camera_id, why)
            out.append(AbandonedRun(run.run_id, run.camera_id, why))
    return out
