"""Write the variant of docker/docker-compose.yml that the compose e2e brings up on a CI machine.

Only what this machine cannot run as written changes; every other service, command, volume,
health check and dependency is the file's own:

- ``recognize`` runs the CPU image without the GPU reservation (no NVIDIA GPU here), the
  variant docs/operations.md gives for hosts without a GPU;
- the monitoring services (``celery-exporter``, ``prometheus``, ``grafana``) are left out: their
  images come from a registry this machine cannot reach and Debian packages none of them
  (the e2e reads every worker's ``/metrics`` itself);
- every published port goes to 127.0.0.1 on a free host port (``127.0.0.1::PORT``), so nothing
  is reachable from outside the machine and nothing collides with other processes;
- ``capture`` captures a short clip of one camera (the e2e's extra arguments).

Usage: ``python3 docker/ci/e2e_compose.py OUT.yml [capture args...]`` (needs PyYAML).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

DOCKER = Path(__file__).resolve().parents[1]
LEFT_OUT = ("celery-exporter", "prometheus", "grafana")


def e2e_compose(compose: dict[str, Any], capture_args: list[str]) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    for name in LEFT_OUT:
        services.pop(name, None)
    for name in ("prometheus-data", "grafana-data"):
        compose.get("volumes", {}).pop(name, None)
    rec = services["recognize"]
    rec["image"] = services["detect"]["image"]
    rec["build"] = dict(services["detect"]["build"])
    rec.pop("deploy", None)
    rec["command"] = [w for w in rec["command"] if w not in ("--gpu", "0")]
    for svc in services.values():
        if "ports" in svc:
            svc["ports"] = [f"127.0.0.1::{str(p).rsplit(':', 1)[-1]}" for p in svc["ports"]]
    services["capture"]["command"] = [*services["capture"]["command"], *capture_args]
    return compose


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    out = e2e_compose(compose, argv[1:])
    Path(argv[0]).write_text(yaml.safe_dump(out, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
