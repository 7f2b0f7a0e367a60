#!/usr/bin/env bash
# Set up the development environment and run lint, type checks and the whole test suite.
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --quick    the inner loop: lint, types and the tests that take at most a few seconds
#                              (tests/durations.json; no compose, no long pipeline runs)
# Other arguments go to pytest (e.g. scripts/test.sh tests/unit -k segments). The tests run on
# GENESIS_TEST_WORKERS pytest-xdist workers (default 4; 0 runs them in this process), each with a Redis
# of its own (tests/harness.py); docs/testing.md has the timings and how the suite is scheduled.
# Needs PostgreSQL on 127.0.0.1:5432 (database `test`) and Redis on 127.0.0.1:6379, and the
# shared models and data beside the checkout (../shared, or GENESIS_SHARED_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
# need WHAT CHECK PACKAGE...: install Debian packages when CHECK (a shell condition) fails
# (without their recommended packages unless APT_FLAGS says otherwise).
need() {
  local what=$1 check=$2 flags=${APT_FLAGS---no-install-recommends}
  shift 2
  eval "$check" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 $flags "$@" >/dev/null \
      || { apt-get update -o DPkg::Lock::Timeout=600 >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 $flags "$@" >/dev/null; }
  else
    echo "test: $what missing and not installable here (its tests will fail)" >&2
  fi
}
system_packages() {
  # The dashboard's browser tests drive Debian's chromium (never a downloaded browser).
  APT_FLAGS="" need chromium "[ -x /usr/bin/chromium ]" chromium
  # The compose file is validated with Debian's docker-compose (`docker-compose config`; no engine needed).
  need docker-compose "command -v docker-compose" docker-compose
  # The RTSP test serves a clip from GStreamer's RTSP server, driven by the system python3 (PyGObject).
  need "GStreamer's RTSP server" \
    "/usr/bin/python3 -c \"import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer\" && gst-inspect-1.0 x264enc" \
    gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
    gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools python3-gi
  # The MQTT tests start Debian's Mosquitto broker on a free port (never a shared one).
  need mosquitto "command -v mosquitto || [ -x /usr/sbin/mosquitto ]" mosquitto
}
# The Debian packages install while pip sets up the virtual environment (one waits on the network and dpkg,
# the other mostly on the CPU); the tests start once both are done.
apt_log=$(mktemp)
system_packages >"$apt_log" 2>&1 &
apt_job=$!
trap 'rm -f "$apt_log"' EXIT
scripts/setup.sh --dev
# Lint and type checks run beside the tests (they only read the code; about a minute of CPU on a fresh
# machine that the tests' waits absorb); their verdict is printed and counted at the end.
# mypy's cache lives outside the checkout, so a fresh clone on a machine that checked another one reuses
# what did not change (mypy checks every cached module against its source).
checks_log=$(mktemp)
( .venv/bin/ruff check genesis tests workers \
  && .venv/bin/mypy --cache-dir "${XDG_CACHE_HOME:-$HOME/.cache}/genesis/mypy" ) >"$checks_log" 2>&1 &
checks=$!
trap 'kill "$checks" 2>/dev/null || true; rm -f "$checks_log" "$apt_log"' EXIT

wait "$apt_job" || true
cat "$apt_log"

mkdir -p test-artifacts
export GENESIS_TEST_ARTIFACTS="${GENESIS_TEST_ARTIFACTS:-$PWD/test-artifacts}"
rm -rf "$GENESIS_TEST_ARTIFACTS/timings"  # per-test wall and CPU seconds of this run: python -m tests.timings
workers=${GENESIS_TEST_WORKERS:-4}
xdist=()
if [ "$workers" != 0 ]; then
  xdist=(-n "$workers" --dist loadgroup --no-loadscope-reorder)
fi
tests=0
.venv/bin/python -m pytest "${xdist[@]}" "$@" || tests=$?
lint=0
wait "$checks" || lint=$?
echo "--- ruff and mypy:"
cat "$checks_log"
rm -f "$checks_log"
if [ "$lint" != 0 ]; then
  echo "test: ruff or mypy failed (above)" >&2
  [ "$tests" != 0 ] || tests=1
fi
exit "$tests"
