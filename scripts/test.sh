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
# The RTSP test serves a clip from GStreamer's RTSP server, driven by the system python3 (PyGObject).
RTSP_PACKAGES="gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav python3-gi"
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" 2>/dev/null \
   || ! command -v gst-inspect-1.0 >/dev/null || ! gst-inspect-1.0 x264enc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $RTSP_PACKAGES gstreamer1.0-tools >/dev/null \
      || { apt-get update >/dev/null \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $RTSP_PACKAGES gstreamer1.0-tools >/dev/null; }
  else
    echo "test: GStreamer's RTSP server missing and not installable here (the RTSP test will fail)" >&2
  fi
fi
mkdir -p test-artifacts
export GENESIS_TEST_ARTIFACTS="${GENESIS_TEST_ARTIFACTS:-$PWD/test-artifacts}"
.venv/bin/python -m pytest "$@"
