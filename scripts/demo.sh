#!/usr/bin/env bash
# Installs the dependencies, builds ackrpc into $BUILD_DIR (build/) and runs
# the demo: examples/demo/run_demo.sh starts the demo server, runs the demo
# client (which prints each ack) and stops the server.
#
# Usage: bash scripts/demo.sh [COUNT]   (COUNT: notes to send, passed on)
# Environment: BUILD_DIR, JOBS (default 2), SKIP_DEPS=1 (skip apt-get).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2}

if [ "${SKIP_DEPS:-0}" != 1 ]; then
  bash scripts/deps.sh
fi
echo "demo.sh: building into $BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -DACKRPC_BUILD_EXAMPLES=ON
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "demo.sh: running the demo"
exec bash examples/demo/run_demo.sh "$BUILD_DIR" "$@"
