"""The compose stack end to end in real containers, faults included (run by compose-e2e.sh).

Podman stands in for the Docker engine and Debian's docker-compose 1.29 drives it through
podman's Docker-compatible socket, so the compose file runs as ``docker compose`` would run it
(dependency conditions, ``--scale``, health checks, named volumes, DNS names). Steps:

1. images: a Debian bookworm base from debootstrap, the stand-ins for the registry images the
   compose file pulls (python:3.11-slim, redis:7.4-alpine, postgres:16-alpine; docker/ci/images/),
   both cached in podman's image store (rebuilt only when their folder changes), then the Genesis
   image from docker/Dockerfile, unchanged;
2. ``docker-compose up -d --scale detect=3`` of docker/docker-compose.yml as e2e_compose.py
   adapts it to this machine; the ``models`` job fills the models volume from the shared folder
   (mounted read-only), ``migrate`` creates the schema, ``capture`` captures a short clip;
3. every service's health check goes healthy; every worker serves Prometheus metrics; the
   published ports are on 127.0.0.1; the service names resolve (three detect replicas);
4. ``genesis drain`` + ``genesis report`` in a container give the ``results`` of an embedded
   ``genesis run`` of the clip in the same image;
5. faults, each on a new capture of the clip, each with nothing lost and nothing duplicated:
   a detect replica killed (SIGKILL) mid-run, the Redis container restarted mid-run, PostgreSQL
   stopped for 20 s (dead letters replayed).

Everything the run creates (containers, network, volumes, the podman socket) is removed at the
end, failed or not; the images stay as the cache. Logs of every container go to
``$GENESIS_TEST_ARTIFACTS/compose-e2e`` when a step fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
CI = DOCKER / "ci"
CACHE = Path(os.environ.get("GENESIS_CI_CACHE", "/var/cache/genesis-ci"))
SHARED = Path(os.environ.get("GENESIS_SHARED_DIR") or ROOT.parent / "shared").resolve()
ARTIFACTS = Path(os.environ.get("GENESIS_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "compose-e2e"
CLIP_FILE = "/shared/data/video/opencv4nodejs_people.mp4"
CLIP = ["--camera", "entrance", "--stride", "3", "--max-frames", "40"]
STANDINS = {"python": "python:3.11-slim", "redis": "redis:7.4-alpine", "postgres": "postgres:16-alpine"}
GENESIS_IMAGE = "genesis:cpu"
# Every long-running Genesis service and the port of its /metrics (docs/operations.md).
METRICS = {"detect": 8080, "recognize": 8081, "analytics": 8082, "store": 8083, "beat": 8085, "api": 8086}
FAULTS = ("kill-detect", "stop-postgres", "restart-redis")
"""The faults ``--faults`` can inject (docs/operations.md says which the CI run injects, and why)."""
HEALTHY = ("redis", "postgres", "detect", "recognize", "analytics", "store", "beat", "api", "flower")

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[compose-e2e {time.monotonic() - T0:6.0f} s] {msg}", flush=True)


class E2EError(Exception):
    """A check of the e2e failed."""


def check(cond: object, msg: str) -> None:
    if not cond:
        raise E2EError(msg)


def sh(*args: str, timeout: float = 600, env: dict[str, str] | None = None, check_rc: bool = True,
       quiet: bool = False, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env, input=stdin,
                          check=False)
    if check_rc and proc.returncode != 0:
        raise E2EError(f"{' '.join(args)}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if not quiet and proc.returncode != 0:
        log(f"{' '.join(args[:4])}...: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return proc


def podman(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return sh("podman", *args, **kw)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise E2EError(f"timed out after {timeout:g} s waiting for {what}")


# --- images ---------------------------------------------------------------------------------


def image_label(ref: str, label: str) -> str | None:
    proc = podman("image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', ref, check_rc=False, quiet=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def build_images() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    if image_label("localhost/debian:bookworm", "genesis.ci") != "base":
        log("base image: debootstrap --variant=minbase bookworm (once per machine)")
        rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
        try:
            sh("debootstrap", "--variant=minbase", "bookworm", str(rootfs), "http://deb.debian.org/debian",
               timeout=900)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run(["podman", "import", "--change", "LABEL genesis.ci=base", "--change", 'CMD ["bash"]',
                                  "-", "localhost/debian:bookworm"], stdin=tar.stdout, capture_output=True, text=True,
                                 check=False, timeout=600)
            tar.wait()
            check(imp.returncode == 0 and tar.returncode == 0, f"podman import: {imp.stderr}")
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
    for folder, ref in STANDINS.items():
        digest = folder_digest(CI / "images" / folder)
        if image_label(f"localhost/{ref}", "genesis.ci") == digest:
            continue
        log(f"stand-in for {ref}: docker/ci/images/{folder} (cached afterwards)")
        podman("build", "--pull=never", "--network", "host", "--label", f"genesis.ci={digest}",
               "-t", f"localhost/{ref}", "-t", f"docker.io/library/{ref}", str(CI / "images" / folder), timeout=900)
    log(f"{GENESIS_IMAGE}: podman build -f docker/Dockerfile (unchanged; pip gets this machine's pip.conf and CAs)")
    mounts = [f"{p}:{p}:ro" for p in ("/etc/pip.conf", "/etc/ssl/certs") if Path(p).exists()]
    podman("build", "--pull=never", "--network", "host", *[a for m in mounts for a in ("-v", m)],
           "--label", "genesis.ci=genesis", "-f", str(DOCKER / "Dockerfile"), "-t", f"localhost/{GENESIS_IMAGE}",
           str(ROOT), timeout=1500)


# --- the stack ------------------------------------------------------------------------------


class Stack:
    """The compose project: docker-compose against podman's socket, plus the health-check runner."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.project = f"genesis-e2e-{os.getpid()}"
        self.sock = work / "podman.sock"
        self.compose_file = work / "docker-compose.e2e.yml"
        self.password = secrets.token_hex(12)
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}", GENESIS_SHARED_DIR=str(SHARED),
                        POSTGRES_PASSWORD=self.password, FLOWER_BASIC_AUTH=f"ci:{secrets.token_hex(8)}",
                        COMPOSE_HTTP_TIMEOUT="300")
        self.service: subprocess.Popen[bytes] | None = None
        self.stop_health = threading.Event()
        self.ever_healthy: set[str] = set()
        self.checks: dict[str, dict[str, Any]] = {}
        self.capture_health: dict[str, str] = {}
        self.health_thread: threading.Thread | None = None

    # plumbing

    def start_socket(self) -> None:
        self.service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{self.sock}"],
                                        stdout=(self.work / "podman-service.log").open("w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_for(self.sock.exists, 30, "podman's socket")

    def compose(self, *args: str, timeout: float = 600, check_rc: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("docker-compose", "-p", self.project, "--project-directory", str(DOCKER), "-f",
                  str(self.compose_file), *args, timeout=timeout, env=self.env, check_rc=check_rc)

    def containers(self, service: str | None = None, all_states: bool = False) -> list[dict[str, Any]]:
        args = ["ps", "--format", "json", "--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        if all_states:
            args.append("-a")
        out = podman(*args).stdout
        found: list[dict[str, Any]] = json.loads(out or "[]")
        return sorted(found, key=lambda c: str(c["Names"][0]))

    def one(self, service: str) -> str:
        found = self.containers(service, all_states=True)
        check(len(found) == 1, f"{service}: {len(found)} containers")
        return str(found[0]["Names"][0])

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(podman("inspect", name).stdout)
        return data[0]

    def run_health_checks(self) -> None:
        """What Docker's engine (or systemd's timers, for podman elsewhere) does: these machines run
        no systemd, so nothing would run the containers' health checks (their state would stay
        `starting`). Each container's check runs at its `interval`; podman applies `timeout` and
        `retries`. The start period as Docker defines it: a failure in it does not count, the first
        success makes the container healthy (podman 4.3 counts a check that exceeds its timeout even
        in the start period, so there the check runs as a plain `podman exec` first and is recorded
        only once it passes); in the start period it runs every 5 s (Docker's start interval)."""
        due: dict[str, float] = {}
        running: dict[str, subprocess.Popen[bytes]] = {}
        while not self.stop_health.wait(2.0):
            for name, p in list(running.items()):
                if p.poll() is not None:
                    del running[name]
                    if p.returncode == 0:
                        self.ever_healthy.add(name)
            try:
                current = self.containers()
            except Exception:  # the runner outlives a podman hiccup
                continue
            now = time.monotonic()
            # The longest overdue first; at most 4 at a time (each is a process in the container).
            for c in sorted(current, key=lambda c: due.get(str(c["Names"][0]), 0.0)):
                name = str(c["Names"][0])
                if name in running or now < due.get(name, 0.0) or len(running) >= 4:
                    continue
                if name not in self.checks:
                    try:
                        self.checks[name] = self.inspect(name)["Config"].get("Healthcheck") or {}
                    except E2EError:
                        continue
                hc = self.checks[name]
                test = list(hc.get("Test") or [])
                if not test or test[0] == "NONE":
                    continue
                command = ["podman", "healthcheck", "run", name]
                in_start = time.time() - float(c.get("StartedAt") or 0) < float(hc.get("StartPeriod") or 0) / 1e9
                if in_start:
                    probe = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", " ".join(test[1:])]
                    script = f"podman exec {shlex.join([name, *probe])} >/dev/null 2>&1 && {shlex.join(command)}"
                    command = ["sh", "-c", script]
                due[name] = now + (5.0 if in_start else float(hc.get("Interval") or 30e9) / 1e9)
                running[name] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in running.values():
            p.wait()

    def start_health_checks(self) -> None:
        self.health_thread = threading.Thread(target=self.run_health_checks, daemon=True)
        self.health_thread.start()

    def health(self, name: str) -> str:
        state = self.inspect(name)["State"]
        return str((state.get("Health") or state.get("Healthcheck") or {}).get("Status", ""))

    def exec(self, service_or_name: str, *cmd: str, timeout: float = 600, check_rc: bool = True,
             user: str | None = None) -> subprocess.CompletedProcess[str]:
        name = service_or_name if "_" in service_or_name else self.one(service_or_name)
        args = ["exec", *(["--user", user] if user else []), name, *cmd]
        return podman(*args, timeout=timeout, check_rc=check_rc)

    def sql(self, query: str) -> str:
        return self.exec("postgres", "psql", "-U", "genesis", "-d", "genesis", "-tAc", query).stdout.strip()

    def dump_logs(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for c in self.containers(all_states=True):
            name = str(c["Names"][0])
            proc = podman("logs", name, check_rc=False, quiet=True)
            health = ""
            try:
                state = self.inspect(name)["State"]
                checks = (state.get("Health") or state.get("Healthcheck") or {}).get("Log") or []
                health = "".join(f"health check {h.get('Start')} .. {h.get('End')}: exit {h.get('ExitCode')}: "
                                 f"{h.get('Output')}\n" for h in checks)
            except E2EError:
                pass
            (ARTIFACTS / f"{name}.log").write_text(proc.stdout + proc.stderr + health)
        shutil.copy(self.compose_file, ARTIFACTS / self.compose_file.name)
        log(f"container logs in {ARTIFACTS}")

    def down(self) -> None:
        self.stop_health.set()
        if self.health_thread is not None:
            self.health_thread.join(40)
        if self.service is not None and self.compose_file.exists():
            self.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=300, check_rc=False)
        # Whatever compose did not remove (a failed `up`, a lost socket): by the project's label.
        label = f"label=com.docker.compose.project={self.project}"
        ids = podman("ps", "-aq", "--filter", label, check_rc=False, quiet=True).stdout.split()
        if ids:
            podman("rm", "-f", "-t", "5", *ids, check_rc=False, quiet=True)
        for kind in ("volume", "network"):
            names = podman(kind, "ls", "-q", "--filter", label, check_rc=False, quiet=True).stdout.split()
            names += [n for n in podman(kind, "ls", "-q", check_rc=False, quiet=True).stdout.split()
                      if n.startswith(f"{self.project}_")]
            for name in sorted(set(names)):
                podman(kind, "rm", "-f", name, check_rc=False, quiet=True)
        if self.service is not None and self.service.poll() is None:
            os.killpg(self.service.pid, signal.SIGTERM)
            try:
                self.service.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.service.pid, signal.SIGKILL)
        left = podman("ps", "-aq", "--filter", label, check_rc=False, quiet=True).stdout.split()
        check(not left, f"containers left behind: {left}")


@contextmanager
def stack() -> Iterator[Stack]:
    work = Path(tempfile.mkdtemp(prefix="genesis-compose-e2e-"))
    s = Stack(work)
    try:
        yield s
    except BaseException:
        try:
            s.dump_logs()
        except Exception as exc:  # the original failure matters more
            log(f"could not save the logs: {exc}")
        raise
    finally:
        log("cleaning up: containers, network, volumes, socket")
        s.down()
        shutil.rmtree(work, ignore_errors=True)


# --- the checks -----------------------------------------------------------------------------


def embedded_results(s: Stack) -> dict[str, Any]:
    """`genesis run` of the clip in the same image: no network, SQLite, the models volume."""
    script = (f"genesis run --source {CLIP_FILE} {' '.join(CLIP)} --out /tmp/embedded >&2 "
              "&& cat /tmp/embedded/report.json")
    proc = podman("run", "--rm", "--network", "none", "-e", "GENESIS_DATABASE_URL=sqlite:////tmp/embedded.db",
                  "-v", f"{s.project}_models:/models:ro", "-v", f"{ROOT / 'configs'}:/app/configs:ro",
                  "-v", f"{SHARED}:/shared:ro", f"localhost/{GENESIS_IMAGE}", "sh", "-c", script, timeout=900)
    results: dict[str, Any] = json.loads(proc.stdout)["results"]
    check(results["frames"] == 40 and results["people"]["tracks"] > 0, f"embedded run: {results['people']}")
    return results


def capture_run_id(s: Stack, after: int) -> str:
    """The run id the capture container printed in its latest run (its `after`-th and later)."""
    proc = podman("logs", s.one("capture"))
    out = proc.stdout + proc.stderr
    runs = re.findall(r"run ([0-9a-f]{32})", out)
    check(len(runs) > after, f"capture printed {len(runs)} runs, expected more than {after}:\n{out[-2000:]}")
    return str(runs[-1])


def start_capture(s: Stack, runs_before: int) -> str:
    """A new run: the capture container (exited 0 after its clip) started again. While it runs,
    its published /health is polled from the host (the clip takes it a few seconds, often less
    than one health-check round)."""
    import urllib.request

    name = s.one("capture")
    podman("start", name)

    def ended() -> bool:
        if s.inspect(name)["State"]["Status"] == "exited":
            return True
        port = podman("port", name, "8084", check_rc=False, quiet=True).stdout.strip().splitlines()
        if port and name not in s.capture_health:
            try:
                with urllib.request.urlopen(f"http://{port[0]}/health", timeout=2) as resp:
                    s.capture_health[name] = f"{resp.status} {resp.read().decode()[:200]}"
            except OSError:
                pass
        return False

    wait_for(ended, 180, "the capture to publish the clip", every=0.2)
    state = s.inspect(name)["State"]
    check(state["ExitCode"] == 0, f"capture exited {state['ExitCode']}")
    return capture_run_id(s, runs_before)


def drain_and_report(s: Stack, run_id: str, timeout: int = 600) -> dict[str, Any]:
    s.exec("api", "genesis", "drain", "--timeout", str(timeout), timeout=timeout + 60)
    s.exec("api", "genesis", "report", "--run", run_id, "--out", f"/tmp/report-{run_id}")
    report: dict[str, Any] = json.loads(s.exec("api", "cat", f"/tmp/report-{run_id}/report.json").stdout)
    return report


POINT_FRAMES = """
import os, sys
from sqlalchemy import create_engine, text
from genesis.adapters.db.points import stored_points
with create_engine(os.environ["GENESIS_DATABASE_URL"]).connect() as conn:
    rows = conn.execute(text("SELECT first_seq, points FROM point_batches WHERE run_id = :r"), {"r": sys.argv[1]})
    print(sum(p.frames for first, blob in rows for p in stored_points(int(first), bytes(blob))))
"""
"""The sightings a run's stored trajectory points stand for (the sum of their ``frames``), run in a container of the
image (argument: the run id)."""


def same_results(report: dict[str, Any], want: dict[str, Any], s: Stack, what: str) -> None:
    run_id = report["run"]["run_id"]
    check(report["run"]["status"] == "finished", f"{what}: run {run_id} is {report['run']['status']}")
    got = report["results"]
    if got != want:
        diff = {k: (got.get(k), want.get(k)) for k in want if got.get(k) != want.get(k)}
        raise E2EError(f"{what}: results differ from the embedded run (got, want): "
                     f"{json.dumps(diff, default=str)[:3000]}; run meta: {report['run']}")
    # The sightings the stored rows stand for, counted two ways: the frames of the trajectory points and the
    # foot points of the heatmap grids (a lost or doubled batch shows in either). The points are packed and
    # compressed (point_batches; genesis/adapters/db/points.py): read with the image's own codec.
    rows = int(s.exec("api", "python", "-c", POINT_FRAMES, run_id).stdout.strip())
    heat = int(s.sql(f"SELECT coalesce(sum(points), 0) FROM heatmap_cells WHERE run_id = '{run_id}'"))
    frames = sum(int(t["frames"]) for t in want["tracks"])
    check(rows == frames == heat, f"{what}: the stored points stand for {rows} sightings and the heatmap grids for "
          f"{heat}, the tracks have {frames} frames (lost or duplicated)")
    log(f"{what}: results equal the embedded run's ({len(want['tracks'])} tracks, {rows} sightings, "
        f"skipped frames {report['run'].get('skipped_frames', 0)})")


def wait_progress(s: Stack, run_id: str, rows: int = 1, timeout: float = 300) -> None:
    """Mid-run: the store has written some (not all) rows of the run."""
    points = f"SELECT coalesce(sum(n), 0) FROM point_batches WHERE run_id = '{run_id}'"
    wait_for(lambda: int(s.sql(points) or 0) >= rows,
             timeout, f"stored rows of run {run_id}", every=0.5)


def metrics_text(s: Stack, name: str, port: int) -> str:
    code = (f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics', timeout=10)"
            ".read().decode())")
    return s.exec(name, "python", "-c", code).stdout


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def check_health(s: Stack) -> None:
    names = [str(c["Names"][0]) for svc in HEALTHY for c in s.containers(svc)]
    check(len([n for n in names if "_detect_" in n]) == 3, f"three detect replicas: {names}")
    wait_for(lambda: all(s.health(n) == "healthy" for n in names), 300, "every health check to be healthy")
    log(f"healthy: {', '.join(names)}")


def check_metrics_and_network(s: Stack) -> None:
    detect_done = 0.0
    for svc, port in METRICS.items():
        for c in s.containers(svc):
            name = str(c["Names"][0])
            text = metrics_text(s, name, port)
            check("# TYPE genesis_queue_depth gauge" in text, f"{name}: no genesis metrics on :{port}/metrics")
            if svc == "detect":
                detect_done += metric_sum(text, "genesis_tasks_total", state="SUCCESS")
            if svc in ("recognize", "store"):
                check(metric_sum(text, "genesis_tasks_total", state="SUCCESS") > 0, f"{name}: no task done")
    check(detect_done > 0, "the detect replicas did no task")
    log(f"metrics: every worker serves Prometheus text; detect tasks done: {detect_done:g}")
    # Published ports: on the loopback only, and they answer.
    for c in s.containers(all_states=False):
        for p in c.get("Ports") or []:
            check(p.get("host_ip") in ("127.0.0.1",), f"{c['Names'][0]} publishes on {p.get('host_ip')!r}")
    api_port = podman("port", s.one("api"), "8000").stdout.strip().splitlines()[0]
    check(api_port.startswith("127.0.0.1:"), f"api published on {api_port}")
    import urllib.request
    with urllib.request.urlopen(f"http://{api_port}/health", timeout=10) as resp:
        check(resp.status == 200, f"api /health: {resp.status}")
    # Service names resolve on the project network: one address per detect replica.
    hosts = s.exec("api", "getent", "ahostsv4", "detect").stdout.split()
    addresses = {h for h in hosts if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", h)}
    check(len(addresses) == 3, f"`detect` resolves to {addresses}")
    log(f"network: ports on 127.0.0.1 (api at {api_port}), `detect` resolves to 3 replicas")


def fault_kill_detect(s: Stack, want: dict[str, Any], runs: int) -> None:
    victim = str(s.containers("detect")[0]["Names"][0])
    restarts = int(s.inspect(victim).get("RestartCount", 0))
    run_id = start_capture(s, runs)
    wait_progress(s, run_id)
    # A crash: SIGKILL to the container's main process from the host (as the OOM killer would).
    # `podman kill` (like `docker kill`) marks the container stopped by its user, and then its
    # restart policy does not restart it.
    pid = int(s.inspect(victim)["State"]["Pid"])
    log(f"fault: SIGKILL to {victim}'s main process (pid {pid}) mid-run")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: s.inspect(victim)["State"]["Status"] == "running"
             and int(s.inspect(victim).get("RestartCount", 0)) > restarts, 120, f"{victim} to restart")
    log(f"{victim} restarted by its restart policy")
    same_results(drain_and_report(s, run_id), want, s, "detect replica killed")


def fault_restart_redis(s: Stack, want: dict[str, Any], runs: int) -> None:
    """``podman restart`` of Redis (SIGTERM, AOF flushed, started again) while detect messages are
    queued, taken and retried: the run completes with the embedded results, every frame once.
    (A frame could only be given up as missing after ``gap_timeout_s``, and counted: the check
    shows the counts when the results differ.)"""
    redis = s.one("redis")
    run_id = start_capture(s, runs)
    wait_progress(s, run_id)
    log(f"fault: podman restart {redis} mid-run (AOF on)")
    podman("restart", "-t", "10", redis)
    wait_for(lambda: s.health(redis) == "healthy", 120, "redis to be healthy again")
    same_results(drain_and_report(s, run_id), want, s, "redis restarted")


def fault_stop_postgres(s: Stack, want: dict[str, Any], runs: int) -> None:
    """PostgreSQL stopped for 20 s mid-run: the store tasks retry (the default retries outlast a
    91 s outage), the run completes with the embedded results and nothing is left in the dead
    letters; were anything there, drain names it and it is replayed."""
    pg = s.one("postgres")
    run_id = start_capture(s, runs)
    wait_progress(s, run_id)
    log(f"fault: podman stop {pg} for 20 s mid-run")
    podman("stop", "-t", "10", pg)
    time.sleep(20)
    podman("start", pg)
    wait_for(lambda: s.health(pg) == "healthy", 120, "postgres to be healthy again")
    drained = s.exec("api", "genesis", "drain", "--timeout", "600", timeout=660, check_rc=False)
    if drained.returncode != 0:
        log(f"drain: exit {drained.returncode}: {(drained.stdout + drained.stderr).strip()[-600:]}")
        no_dead_letters(s, "postgres stopped for 20 s", replay=True)
    same_results(drain_and_report(s, run_id), want, s, "postgres stopped for 20 s")


def no_dead_letters(s: Stack, what: str, replay: bool = False) -> None:
    """Nothing failed for good (with ``replay``: what did is shown, replayed, then failed on)."""
    letters = s.exec("api", "genesis", "dlq", "list").stdout
    if "genesis." not in letters:
        return
    log(f"dead letters after {what}:\n{letters.strip()}")
    if replay:
        log(s.exec("api", "genesis", "dlq", "replay", "--all").stdout.strip())
    raise E2EError(f"{what}: tasks were dead-lettered; the shipped retries should outlast it")


def run(skip_faults: bool, faults: list[str]) -> None:
    build_images()
    log(f"images ready ({', '.join(STANDINS.values())} stand-ins, {GENESIS_IMAGE})")
    with stack() as s:
        sh(sys.executable, str(CI / "e2e_compose.py"), str(s.compose_file), *CLIP)
        s.start_socket()
        s.start_health_checks()
        log("docker-compose up -d --scale detect=3")
        s.compose("up", "-d", "--no-build", "--scale", "detect=3", timeout=900)
        log("up: models pulled, migrations applied, workers healthy, capture started")
        for job in ("models", "migrate"):
            state = s.inspect(s.one(job))["State"]
            check(state["Status"] == "exited" and state["ExitCode"] == 0,
                  f"{job}: {state['Status']}, exit {state['ExitCode']}")
        check_health(s)
        want = embedded_results(s)
        log(f"embedded run: {want['people']['tracks']} tracks, {want['frames']} frames")
        capture = s.one("capture")
        wait_for(lambda: s.inspect(capture)["State"]["Status"] == "exited", 300, "the first capture to end")
        check(s.inspect(capture)["State"]["ExitCode"] == 0, "capture failed")
        run_id = capture_run_id(s, 0)
        same_results(drain_and_report(s, run_id), want, s, "compose run")
        check_metrics_and_network(s)
        if not skip_faults:
            steps = {"kill-detect": fault_kill_detect, "stop-postgres": fault_stop_postgres,
                     "restart-redis": fault_restart_redis}
            for n, name in enumerate(faults, start=1):
                steps[name](s, want, n)
                no_dead_letters(s, name, replay=True)
            seen = s.capture_health.get(capture, "")
            if capture in s.ever_healthy or seen:
                check(capture in s.ever_healthy or seen.startswith("200 "),
                      f"capture's health not ok while it ran (polled: {seen!r})")
                log(f"capture: health ok while it ran ({'health check' if capture in s.ever_healthy else seen})")
            else:  # a quiet machine sends the short clip before the endpoint is first polled
                log("capture: ended before its health endpoint was polled (nothing to check)")
    log("passed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-faults", action="store_true", help="Stop after the plain run (a quicker look).")
    parser.add_argument("--images-only", action="store_true", help="Build (or reuse) the images and stop.")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"The faults to inject, in order (comma-separated; default: {','.join(FAULTS)}).")
    args = parser.parse_args()
    os.environ.setdefault("CONTAINERS_CONF", str(CI / "containers.conf"))

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the clean-up

    signal.signal(signal.SIGTERM, interrupted)
    check(SHARED.is_dir(), f"shared folder {SHARED} missing (GENESIS_SHARED_DIR)")
    try:
        if args.images_only:
            build_images()
        else:
            faults = [f for f in args.faults.split(",") if f]
            unknown = [f for f in faults if f not in FAULTS]
            check(not unknown, f"unknown fault(s) {unknown}: choose from {', '.join(FAULTS)}")
            run(args.no_faults, faults)
    except E2EError as exc:
        log(f"FAILED: {exc}")
        return 1
    log(f"done in {time.monotonic() - T0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
