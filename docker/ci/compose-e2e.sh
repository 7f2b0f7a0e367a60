#!/usr/bin/env bash
# The compose stack end to end in real containers (docker/ci/compose_e2e.py says what it checks).
# Needs root and Debian's apt: installs podman, runc, debootstrap and docker-compose when missing,
# then runs the e2e with podman as the container engine (settings: docker/ci/containers.conf).
# Options: --no-faults (only the plain run), --images-only (build or reuse the images).
# Cache: the base and stand-in images stay in podman's image store (the base is built once per
# machine, the stand-ins again only when docker/ci/images/ changes).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "compose-e2e: needs root (podman runs the containers as root here)" >&2
  exit 2
fi
need=()
for tool in podman:podman runc:runc debootstrap:debootstrap docker-compose:docker-compose; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "compose-e2e: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # -o DPkg::Lock::Timeout: wait for another install (unattended upgrades, a parallel setup) to finish
  apt-get install -y -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -o DPkg::Lock::Timeout=600 >/dev/null && apt-get install -y -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null; }
fi
export CONTAINERS_CONF="$PWD/docker/ci/containers.conf"
# The system python3 (PyYAML comes with docker-compose), not the project's venv: the e2e tests
# the images, not this checkout's environment.
exec /usr/bin/python3 docker/ci/compose_e2e.py "$@"
