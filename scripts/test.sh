#!/usr/bin/env bash
# Set up the development environment and run lint, type checks and the whole test suite.
# Needs PostgreSQL on 127.0.0.1:5432 (database `test`) and Redis on 127.0.0.1:6379, and the
# shared models and data beside the checkout (../shared, or GENESIS_SHARED_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
.venv/bin/ruff check genesis tests workers
.venv/bin/mypy
# The dashboard's browser test drives Debian's chromium (never a downloaded browser).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null; }
  else
    echo "test: /usr/bin/chromium missing and not installable here (the browser test will skip)" >&2
  fi
fi
# The compose file is validated with Debian's docker-compose (`docker-compose config`; no engine needed).
if ! command -v docker-compose >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y docker-compose >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y docker-compose >/dev/null; }
  else
    echo "test: docker-compose missing and not installable here (the compose validation will skip)" >&2
  fi
fi
# The MQTT tests start Debian's Mosquitto broker on a free port (never a shared one).
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto >/dev/null; }
  else
    echo "test: mosquitto missing and not installable here (the MQTT tests will fail)" >&2
  fi
fi
mkdir -p test-artifacts
export GENESIS_TEST_ARTIFACTS="${GENESIS_TEST_ARTIFACTS:-$PWD/test-artifacts}"
.venv/bin/python -m pytest "$@"
