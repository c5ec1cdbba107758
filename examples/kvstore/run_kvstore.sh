#!/usr/bin/env bash
# Runs the kvstore end to end (ctest "kvstore"), as the server's own uid:
#   1. starts kvstore_server on a socket in a temporary directory and waits
#      (bounded) until it serves;
#   2. `kvstore_client selftest`: every method through the blocking stubs,
#      deferred Gets (answered by another call's Put and by the server's
#      timer), a deadline shorter than the wait, 200 async Puts on the
#      client's own event_base, Clear (same uid: allowed); it exits 1 on any
#      unexpected result;
#   3. single commands from the shell, each with its expected status;
#   4. a deferred reply across processes: a client waits in Get for a key
#      that another client then puts;
#   5. 500 async Puts (`bulk`);
#   6. a Get left waiting, then Shutdown: root is admitted (uids: [0]) and
#      the server stops, answering the waiting Get UNAVAILABLE; as another
#      user Shutdown answers PERMISSION_DENIED and SIGTERM stops the server
#      (the same path);
#   7. the server exits 0 and its socket and SOCKET.lock are gone.
#
# usage: examples/kvstore/run_kvstore.sh BUILD_DIR
# Environment: KVSTORE_WRAPPER="valgrind --leak-check=full --error-exitcode=99"
#   runs both programs under that command.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
BIN=$1/examples/kvstore
read -r -a WRAP <<<"${KVSTORE_WRAPPER:-}"
for prog in kvstore_server kvstore_client; do
  if [ ! -x "$BIN/$prog" ]; then
    echo "run_kvstore: $BIN/$prog not found; build the project first" >&2
    exit 2
  fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ackrpc-kvstore.XXXXXX")
SOCK=$TMP/kv.sock
SLOG=$TMP/server.log
SPID=""
BG=()
cleanup() {
  local p
  # TERM first: `timeout` passes it on to the client it runs.
  for p in "${BG[@]}" $SPID; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${BG[@]}" $SPID; do
    for _ in $(seq 40); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
  echo "run_kvstore: FAIL: $*" >&2
  for f in "$TMP"/*.log; do
    [ -f "$f" ] || continue
    echo "--- $(basename "$f"):" >&2
    cat "$f" >&2
  done
  exit 1
}
# client EXPECTED_STATUS ARGS...: one command, which must answer EXPECTED.
client() {
  local expect=$1 rc=0
  shift
  timeout -k 2 60 "${WRAP[@]}" "$BIN/kvstore_client" --expect "$expect" "$SOCK" "$@" \
    >"$TMP/client.log" 2>&1 || rc=$?
  head -n 5 "$TMP/client.log"
  [ "$rc" = 0 ] || fail "kvstore_client $* exited with $rc (expected $expect)"
}
# wait_for PATTERN FILE WHAT: bounded (15 s) wait for a line in FILE, while
# the server runs.
# wait_for PATTERN FILE WHAT [MIN]: until FILE has more than MIN (default 0)
# lines matching PATTERN. Pass the count taken before an action to wait for
# a new line rather than one an earlier step wrote.
wait_for() {
  for _ in $(seq 300); do
    [ "$(grep -c -- "$1" "$2")" -gt "${4:-0}" ] && return 0
    kill -0 "$SPID" 2>/dev/null || fail "$3: the server exited"
    sleep 0.05
  done
  fail "$3: not seen within 15 s"
}

echo "== 1. server on $SOCK"
"${WRAP[@]}" "$BIN/kvstore_server" "$SOCK" >"$SLOG" 2>&1 &
SPID=$!
wait_for '^serving ' "$SLOG" "the server's start"
[ -S "$SOCK" ] || fail "the server is serving but $SOCK is not a socket"

echo "== 2. selftest"
rc=0
timeout -k 2 60 "${WRAP[@]}" "$BIN/kvstore_client" "$SOCK" selftest >"$TMP/selftest.log" 2>&1 \
  || rc=$?
cat "$TMP/selftest.log"
[ "$rc" = 0 ] || fail "kvstore_client selftest exited with $rc"
grep -q '^selftest: ok ' "$TMP/selftest.log" || fail "selftest did not report ok"

echo "== 3. single commands"
client OK put k v1
grep -q "^put key=k version=1 uid=$(id -u)\$" "$SLOG" || fail "the server did not log the put with our uid"
client OK put k v2
grep -q '^OK put k version=2$' "$TMP/client.log" || fail "second put is not version 2"
client OK get k
grep -q '^OK get k version=2: v2$' "$TMP/client.log" || fail "get k did not return v2"
client OK list
grep -qx 'k' "$TMP/client.log" || fail "list does not show k"
client OK delete k
client NOT_FOUND get k
client NOT_FOUND delete k
client INVALID_ARGUMENT put "" x

echo "== 4. deferred reply across processes"
timeout -k 2 60 "${WRAP[@]}" "$BIN/kvstore_client" --timeout 20000 "$SOCK" get later 15000 \
  >"$TMP/waiting-get.log" 2>&1 &
BG+=($!)
wait_for '^get key=later (missing)' "$SLOG" "the waiting Get"
client OK put later now
rc=0
wait "${BG[0]}" || rc=$?
cat "$TMP/waiting-get.log"
[ "$rc" = 0 ] || fail "the waiting get exited with $rc"
grep -q '^OK get later version=1 (waited): now$' "$TMP/waiting-get.log" \
  || fail "the waiting get did not receive the put value"

echo "== 5. 500 async puts"
client OK bulk 500 many/
grep -q '^OK bulk: 500 of 500 async puts acked' "$TMP/client.log" || fail "bulk"
client OK list many/
grep -q '^OK list: 500 keys$' "$TMP/client.log" || fail "list many/ is not 500 keys"
client OK clear

echo "== 6. a waiting Get, then Shutdown (uids: [0])"
# The selftest already got key "never": wait for this Get's own log line.
seen=$(grep -c '^get key=never (missing)' "$SLOG" || true)
timeout -k 2 60 "${WRAP[@]}" "$BIN/kvstore_client" --expect UNAVAILABLE --timeout 40000 \
  "$SOCK" get never 30000 >"$TMP/pending-get.log" 2>&1 &
BG+=($!)
wait_for '^get key=never (missing)' "$SLOG" "the pending Get" "$seen"
if [ "$(id -u)" = 0 ]; then
  client OK shutdown
else
  client PERMISSION_DENIED shutdown
  grep -q '^shutdown requested' "$SLOG" && fail "a denied Shutdown reached the handler"
  kill -TERM "$SPID"
fi
rc=0
wait "${BG[1]}" || rc=$?
cat "$TMP/pending-get.log"
[ "$rc" = 0 ] || fail "the pending get was not answered UNAVAILABLE at shutdown"

echo "== 7. clean stop"
for _ in $(seq 300); do
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.05
done
kill -0 "$SPID" 2>/dev/null && fail "the server did not exit within 15 s"
src=0
wait "$SPID" || src=$?
SPID=""
cat "$SLOG"
[ "$src" = 0 ] || fail "kvstore_server exited with $src"
[ ! -e "$SOCK" ] || fail "the server left its socket file behind"
[ ! -e "$SOCK.lock" ] || fail "the server left its lock file behind"
grep -q '^stopped with ' "$SLOG" || fail "the server did not report a clean stop"
echo "run_kvstore: ok"
