#!/usr/bin/env bash
# The caller policies of kvstore.proto against a real peer of another uid
# (ctest "policy_other_uid"). As root:
#   - kvstore_server runs as root with socket mode 0666, in a temporary
#     directory of mode 0711 (others may reach the socket by its path but not
#     list or change the directory);
#   - as nobody (setpriv, else runuser): Put and Get (no policy) answer OK,
#     and the server saw uid nobody; Clear (same_uid) and Shutdown
#     (uids: [0]) answer PERMISSION_DENIED, and their handlers never run;
#     nobody cannot list the directory;
#   - as root: Clear answers OK (same uid), Shutdown answers OK (uid 0), and
#     the server exits 0 with its socket and lock file removed.
# Not root (or no way to switch uid, or no user nobody): prints the reason
# and exits 77, which ctest reports as skipped (SKIP_RETURN_CODE).
#
# usage: examples/kvstore/run_policy_other_uid.sh BUILD_DIR
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
BIN=$1/examples/kvstore
skip() {
  echo "SKIP: policy_other_uid: $*"
  exit 77
}

[ "$(id -u)" = 0 ] || skip "needs root to run a client as another uid (running as uid $(id -u))"
OTHER=nobody
getent passwd "$OTHER" >/dev/null || skip "no user '$OTHER'"
OTHER_UID=$(id -u "$OTHER")
OTHER_GROUP=$(id -gn "$OTHER")
[ "$OTHER_UID" != 0 ] || skip "user '$OTHER' is uid 0"
if command -v setpriv >/dev/null; then
  as_other() { setpriv --reuid="$OTHER" --regid="$OTHER_GROUP" --clear-groups "$@"; }
elif command -v runuser >/dev/null; then
  as_other() { runuser -u "$OTHER" -- "$@"; }
else
  skip "neither setpriv nor runuser (util-linux) is installed"
fi
for prog in kvstore_server kvstore_client; do
  if [ ! -x "$BIN/$prog" ]; then
    echo "policy_other_uid: $BIN/$prog not found; build the project first" >&2
    exit 2
  fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ackrpc-policy.XXXXXX")
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
  echo "policy_other_uid: FAIL: $*" >&2
  for f in "$TMP"/*.log; do
    [ -f "$f" ] || continue
    echo "--- $(basename "$f"):" >&2
    cat "$f" >&2
  done
  exit 1
}

# The build tree may be out of nobody's reach: the client runs from a copy
# in the temporary directory. Logs stay in $TMP (root's); the socket goes in
# a subdirectory nobody may traverse but not read.
mkdir "$TMP/bin" "$TMP/run"
cp "$BIN/kvstore_client" "$TMP/bin/"
chmod 0755 "$TMP/bin" "$TMP/bin/kvstore_client"
chmod 0711 "$TMP" "$TMP/run"
SOCK=$TMP/run/kv.sock
SLOG=$TMP/server.log
CLIENT=$TMP/bin/kvstore_client

# call WHO EXPECTED ARGS...: one client command as WHO (root or other), which
# must answer EXPECTED.
call() {
  local who=$1 expect=$2 rc=0
  shift 2
  local cmd=(timeout -k 2 30 "$CLIENT" --expect "$expect" "$SOCK" "$@")
  if [ "$who" = other ]; then
    as_other "${cmd[@]}" >"$TMP/client.log" 2>&1 || rc=$?
  else
    "${cmd[@]}" >"$TMP/client.log" 2>&1 || rc=$?
  fi
  echo "[$who] $*: $(head -n 1 "$TMP/client.log")"
  [ "$rc" = 0 ] || fail "as $who, '$*' exited with $rc (expected $expect): $(cat "$TMP/client.log")"
}

echo "== server (root) on $SOCK, mode 0666, directory mode 0711"
"$BIN/kvstore_server" --mode 0666 "$SOCK" >"$SLOG" 2>&1 &
SPID=$!
for _ in $(seq 300); do
  grep -q '^serving ' "$SLOG" && break
  kill -0 "$SPID" 2>/dev/null || fail "the server exited before serving"
  sleep 0.05
done
grep -q '^serving ' "$SLOG" || fail "the server did not start within 15 s"
[ "$(stat -c %a "$SOCK")" = 666 ] || fail "the socket's mode is $(stat -c %a "$SOCK"), not 666"

echo "== as $OTHER (uid $OTHER_UID)"
[ "$(as_other id -u)" = "$OTHER_UID" ] || fail "could not run a command as $OTHER"
if as_other ls "$TMP/run" >/dev/null 2>&1; then
  fail "$OTHER can list $TMP/run (mode 0711)"
fi
call other OK put shared from-nobody
grep -q "^put key=shared version=1 uid=$OTHER_UID\$" "$SLOG" \
  || fail "the server did not see the put as uid $OTHER_UID"
call other OK get shared
grep -q '^OK get shared version=1: from-nobody$' "$TMP/client.log" || fail "get shared"
call other OK list
call other PERMISSION_DENIED clear
call other PERMISSION_DENIED shutdown
grep -q '^clear' "$SLOG" && fail "the Clear handler ran for $OTHER"
grep -q '^shutdown' "$SLOG" && fail "the Shutdown handler ran for $OTHER"

echo "== as root"
call root OK clear
grep -q '^OK clear: 1 keys removed$' "$TMP/client.log" || fail "clear as root"
call root OK shutdown

for _ in $(seq 300); do
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.05
done
kill -0 "$SPID" 2>/dev/null && fail "the server did not stop within 15 s of Shutdown"
src=0
wait "$SPID" || src=$?
SPID=""
cat "$SLOG"
[ "$src" = 0 ] || fail "kvstore_server exited with $src"
[ ! -e "$SOCK" ] || fail "the server left its socket behind"
[ ! -e "$SOCK.lock" ] || fail "the server left its lock file behind"
echo "policy_other_uid: ok (uid $OTHER_UID: open methods OK, same_uid and uids:[0]" \
  "methods PERMISSION_DENIED; root: OK)"
