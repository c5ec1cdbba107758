#!/usr/bin/env bash
# Runs the fdpass example end to end: fd_server serves a directory holding a
# file only its owner may read (mode 0600); fd_client gets the file's
# contents through the descriptor the reply carries, and a name outside the
# directory is refused; fd_client --count hands its standard input to the
# server, which counts it. As root (with setpriv), the client runs as
# nobody, who cannot open the file itself: the descriptor is its only way in.
# Registered with ctest as "fdpass".
#
# usage: examples/fdpass/run_fdpass.sh BUILD_DIR
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
BIN=$1/examples/fdpass
for prog in fd_server fd_client; do
  [ -x "$BIN/$prog" ] || { echo "run_fdpass: $BIN/$prog not found; build first" >&2; exit 2; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ackrpc-fdpass.XXXXXX")
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
  echo "run_fdpass: FAIL: $*" >&2
  [ -f "$TMP/server.log" ] && { echo "--- server output:" >&2; cat "$TMP/server.log" >&2; }
  exit 1
}

mkdir "$TMP/files" "$TMP/run"
chmod 0711 "$TMP" "$TMP/run"
printf 'only the server may open this\nline two\n' >"$TMP/files/secret.txt"
chmod 0600 "$TMP/files/secret.txt"
SOCK=$TMP/run/files.sock

"$BIN/fd_server" "$SOCK" "$TMP/files" >"$TMP/server.log" 2>&1 &
SPID=$!
for _ in $(seq 200); do
  grep -q '^serving ' "$TMP/server.log" && break
  kill -0 "$SPID" 2>/dev/null || fail "the server exited before serving"
  sleep 0.05
done
grep -q '^serving ' "$TMP/server.log" || fail "the server did not start within 10 s"

AS=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  AS=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
  "${AS[@]}" cat "$TMP/files/secret.txt" >/dev/null 2>&1 &&
    fail "nobody could open the file itself: the example proves nothing"
  echo "run_fdpass: the client runs as nobody"
fi

timeout -k 2 30 "${AS[@]}" "$BIN/fd_client" "$SOCK" secret.txt >"$TMP/got" ||
  fail "fd_client secret.txt exited with status $?"
cmp -s "$TMP/got" "$TMP/files/secret.txt" || fail "the client read something else"

# The other way: the client's standard input, read by the server.
printf 'one\ntwo\nthree\n' >"$TMP/input.txt"
chmod 0644 "$TMP/input.txt"
got=$(timeout -k 2 30 "${AS[@]}" "$BIN/fd_client" "$SOCK" --count <"$TMP/input.txt") ||
  fail "fd_client --count exited with status $?"
[ "$got" = "14 bytes, 3 lines" ] || fail "fd_client --count printed '$got'"

rc=0
timeout -k 2 30 "${AS[@]}" "$BIN/fd_client" "$SOCK" ../files/secret.txt >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a name outside the directory gave status $rc, not 1"

kill -TERM "$SPID"
for _ in $(seq 300); do
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.05
done
kill -0 "$SPID" 2>/dev/null && fail "the server did not exit within 15 s of SIGTERM"
src=0
wait "$SPID" || src=$?
SPID=""
[ "$src" = 0 ] || fail "fd_server exited with status $src after SIGTERM"
grep -q '^handing out secret.txt' "$TMP/server.log" || fail "the server did not log the hand-out"
grep -q '^counted 14 bytes' "$TMP/server.log" || fail "the server did not log the count"
echo "run_fdpass: ok (the file came through the reply's descriptor, standard input through the request's; a path was refused)"
