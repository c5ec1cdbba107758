#!/usr/bin/env bash
# Installs the dependencies, builds ackrpc into $BUILD_DIR (build/) and runs
# the mailbox example (examples/mailbox, docs/EXAMPLES.md):
# examples/mailbox/run_mailbox.sh starts mailbox_receiver (SQLite, acks only
# after commit), runs mailbox_sender (generated stubs; prints each ack and
# retries a lost ack with the same call id), stops the receiver and checks
# that the database holds each letter exactly once.
#
# Usage: bash scripts/demo.sh [COUNT]   (COUNT: letters to send, passed on)
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
echo "demo.sh: running the mailbox example"
exec bash examples/mailbox/run_mailbox.sh "$BUILD_DIR" "$@"
