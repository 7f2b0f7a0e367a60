"""docker/docker-compose.yml, checked without a Docker engine: the file is valid (Debian's
`docker-compose config`), every command it runs exists here with the options it passes, the
files it references exist, the healthchecks and Prometheus look at the ports the processes
serve on, and the Grafana dashboard charts metrics the code exports. tests/integration/test_ops.py
runs the same commands as local processes."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from genesis.config.ops import OpsPorts

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"

GENESIS_SERVICES = {"migrate", "models", "capture", "detect", "recognize", "analytics", "store", "beat", "api",
                    "flower"}
LONG_RUNNING = GENESIS_SERVICES - {"migrate", "models"}
ROLE_PORTS = {**OpsPorts().model_dump(), "flower": 5555}
SCALED = {"detect"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@cache
def help_text(*command: str) -> str:
    """``--help`` of a command as the image would run it (python, genesis, celery from this venv)."""
    head = {"python": [sys.executable], "genesis": [sys.executable, "-m", "genesis.cli.main"],
            "celery": [sys.executable, "-m", "celery"]}[command[0]]
    proc = run(*head, *command[1:], "--help")
    assert proc.returncode == 0, f"{' '.join(command)} --help: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def split_command(command: list[str]) -> list[tuple[list[str], list[str]]]:
    """(subcommand path, the remaining words) of each program a compose command runs.

    The path is the words up to the first option (celery's ``-A APP SUBCOMMAND`` included);
    ``sh -c "a && b"`` runs several; commands pending from other branches are left out."""
    if command[:2] == ["sh", "-c"]:
        parts = [shlex.split(p) for p in command[2].split("&&")]
        return [x for words in parts if words[0] in ("python", "genesis", "celery") for x in split_command(words)]
    path: list[str] = []
    words = list(command)
    if words[:2] == ["python", "-m"]:  # python -m MODULE SUBCOMMAND ...
        path, words = words[:3], words[3:]
    while words and not words[0].startswith("-"):
        path.append(words.pop(0))
    if path[0] == "celery":
        assert words[:2] == ["-A", "genesis"], command
        path += words[:3]
        words = words[3:]
    return [(path, words)]


def check_command(path: list[str], words: list[str]) -> None:
    """The program exists here and accepts each option the compose file gives it."""
    if path[:2] == ["python", "-m"]:
        assert (ROOT / (path[2].replace(".", "/") + ".py")).is_file(), path[2]
    elif path[0] == "python":
        assert (ROOT / path[1]).is_file(), path[1]
    text = help_text(*path)
    if path == ["celery", "-A", "genesis", "flower"]:
        return  # Flower's own options go to tornado, unlisted (test_flower.py runs it with --port)
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in text, f"{' '.join(path)} has no option {word}:\n{text}"


def test_compose_file_is_valid() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose)")
    proc = subprocess.run([tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60,
                          check=False, env=dict(os.environ, GENESIS_SHARED_DIR=str(ROOT.parent / "shared")))
    assert proc.returncode == 0, proc.stderr


def test_services_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "postgres", "migrate", "models", "capture", "detect", "recognize", "analytics", "store", "beat",
            "api", "flower", "celery-exporter", "prometheus", "grafana"} <= set(services)
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert services["migrate"]["command"] == ["genesis", "db", "upgrade"]
    assert services["beat"]["command"] == ["celery", "-A", "genesis", "beat"]
    assert services["api"]["command"] == ["genesis", "serve", "--host", "0.0.0.0", "--port", "8000"]
    for name in ("redis", "postgres"):
        assert services[name]["healthcheck"]["test"], name
    for name in LONG_RUNNING:
        svc = services[name]
        deps = svc["depends_on"]
        assert deps["redis"]["condition"] == "service_healthy", name
        if name != "flower":
            assert deps["postgres"]["condition"] == "service_healthy", name
            assert deps["migrate"]["condition"] == "service_completed_successfully", name
            assert deps["models"]["condition"] == "service_completed_successfully", name
            assert svc["volumes"] and any(v.endswith(":/models:ro") for v in svc["volumes"]), name
    # The GPU worker: the CUDA image, a device reservation, the gpu queue through --gpu.
    rec = services["recognize"]
    assert rec["build"]["dockerfile"] == "docker/Dockerfile.gpu" and "--gpu" in rec["command"]
    devices = rec["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    # `--scale detect=3`: a scaled service publishes no fixed host port.
    for name in SCALED:
        assert "ports" not in services[name], f"{name} is scaled: no fixed host port"
        assert "container_name" not in services[name]
    # Every referenced file exists.
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source}"


def test_every_command_exists(compose: dict[str, Any]) -> None:
    commands: list[tuple[list[str], list[str]]] = []
    for name in sorted(GENESIS_SERVICES):
        svc = compose["services"][name]
        commands += split_command(svc["command"])
        test = svc.get("healthcheck", {}).get("test")
        if test:
            assert test[0] == "CMD"
            commands += split_command(test[1:])
    paths = {tuple(path) for path, _ in commands}
    with ThreadPoolExecutor(4) as pool:  # the --help runs are independent: side by side
        list(pool.map(lambda p: help_text(*p), paths))
    for path, words in commands:
        check_command(path, words)
    assert ("python", "workers/detect.py") in paths and ("celery", "-A", "genesis", "beat") in paths


def test_health_and_scrape_ports_match_the_processes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        port = ROLE_PORTS[name]
        url = services[name]["healthcheck"]["test"][-1]
        assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/(health|healthcheck)", url), (name, url)
        published = services[name].get("ports", []) + services[name].get("expose", [])
        assert any(str(p).endswith(str(port)) for p in published), (name, published)
    assert services["beat"]["environment"]["GENESIS_OPS__PORT"] == str(ROLE_PORTS["beat"])
    prometheus = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets: dict[str, str] = {}
    for job in prometheus["scrape_configs"]:
        for static in job.get("static_configs", []):
            for t in static["targets"]:
                targets[job["job_name"]] = t
        for dns in job.get("dns_sd_configs", []):
            targets[job["job_name"]] = f"{dns['names'][0]}:{dns['port']}"
    for name in LONG_RUNNING | {"celery-exporter"}:
        port = ROLE_PORTS.get(name, 9808)
        assert targets.get(name) == f"{name}:{port}", (name, targets.get(name))


def test_grafana_dashboard_charts_exported_metrics() -> None:
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "genesis.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    source = "".join(p.read_text() for p in (ROOT / "genesis" / "ops").glob("*.py"))
    for metric in ("genesis_frames_captured_total", "genesis_frames_dropped_total", "genesis_queue_depth",
                   "genesis_end_to_end_latency_seconds_bucket", "genesis_recognitions_total", "genesis_alerts_total",
                   "genesis_dlq_size", "genesis_camera_connected"):
        assert metric in exprs, metric
        base = re.sub(r"_(total|bucket)$", "", metric)
        assert f'"{base}"' in source or f'"{base}_seconds"' in source, f"{metric} is not exported"
    datasource = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_readme_production_commands_match_the_files(compose: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Running in production"):]
    assert "docker compose -f docker/docker-compose.yml build" in section
    assert "docker compose -f docker/docker-compose.yml up -d --scale detect=3" in section
    published = {str(p).split(":")[0]: name for name, svc in compose["services"].items() for p in svc.get("ports", [])}
    urls = re.findall(r"localhost:(\d+)(/\w*)?", section)
    assert urls
    for port, path in urls:
        assert port in published, f"README curls localhost:{port}, which compose does not publish"
        if path in ("/health", "/status", "/metrics"):
            assert published[port] in LONG_RUNNING, (port, published[port])
    for name, port in re.findall(r"exec (\w+) genesis ops check http://127\.0\.0\.1:(\d+)/health", section):
        assert ROLE_PORTS[name] == int(port), name
