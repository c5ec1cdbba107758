#!/usr/bin/env bash
# Runs the demo end to end: starts demo_server on a socket in a temporary
# directory, waits (bounded) until it is serving, delivers notes with
# demo_client, stops the server with SIGTERM and checks that it exited 0 and
# removed its socket file. Registered with ctest as "demo".
#
# usage: examples/demo/run_demo.sh BUILD_DIR [COUNT]
#   BUILD_DIR  the CMake build directory (holding examples/demo/demo_server)
#   COUNT      notes to deliver (default 5)
# Environment: DEMO_WRAPPER="valgrind --leak-check=full --error-exitcode=99"
#   runs both programs under that command.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD_DIR [COUNT]" >&2
  exit 2
fi
BIN=$1/examples/demo
COUNT=${2:-5}
read -r -a WRAP <<<"${DEMO_WRAPPER:-}"
for prog in demo_server demo_client; do
  if [ ! -x "$BIN/$prog" ]; then
    echo "run_demo: $BIN/$prog not found; build the project first" >&2
    exit 2
  fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ackrpc-demo.XXXXXX")
SOCK=$TMP/inbox.sock
SPID=""
cleanup() {
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
    kill -KILL "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
  echo "run_demo: FAIL: $*" >&2
  if [ -f "$TMP/server.log" ]; then
    echo "--- server output:" >&2
    cat "$TMP/server.log" >&2
  fi
  exit 1
}

"${WRAP[@]}" "$BIN/demo_server" "$SOCK" >"$TMP/server.log" 2>&1 &
SPID=$!

# The server prints "serving ..." once it listens; allow 10 s (valgrind).
for _ in $(seq 200); do
  grep -q '^serving ' "$TMP/server.log" && break
  kill -0 "$SPID" 2>/dev/null || fail "the server exited before serving"
  sleep 0.05
done
grep -q '^serving ' "$TMP/server.log" || fail "the server did not start within 10 s"
[ -S "$SOCK" ] || fail "the server is serving but $SOCK is not a socket"

rc=0
timeout -k 2 30 "${WRAP[@]}" "$BIN/demo_client" "$SOCK" "$COUNT" || rc=$?
[ "$rc" = 0 ] || fail "demo_client exited with status $rc"

kill -TERM "$SPID"
# Bounded wait: 15 s covers the drain time and a slow valgrind exit.
for _ in $(seq 300); do
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.05
done
kill -0 "$SPID" 2>/dev/null && fail "the server did not exit within 15 s of SIGTERM"
src=0
wait "$SPID" || src=$?
SPID=""
echo "--- server output:"
cat "$TMP/server.log"
[ "$src" = 0 ] || fail "demo_server exited with status $src after SIGTERM"
[ ! -e "$SOCK" ] || fail "demo_server left its socket file behind"
n=$(grep -c '^sent ack ' "$TMP/server.log" || true)
[ "$n" = "$COUNT" ] || fail "the server sent $n acks for $COUNT notes"
echo "run_demo: ok ($COUNT notes delivered and acknowledged; clean stop)"
