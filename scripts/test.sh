#!/usr/bin/env bash
# Set up the development environment and run lint, type checks and the whole test suite.
# Needs PostgreSQL on 127.0.0.1:5432 (database `test`) and Redis on 127.0.0.1:6379, and the
# shared models and data beside the checkout (../shared, or GENESIS_SHARED_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
.venv/bin/ruff check genesis tests workers
.venv/bin/mypy
mkdir -p test-artifacts
.venv/bin/python -m pytest "$@"
