#!/usr/bin/env bash
# A functional check of ackrpc-bench (ctest "bench_smoke"), not a timed test:
# starts "ackrpc-bench serve" on a socket in a temporary directory, runs
# "ackrpc-bench run" against it for 1 s at concurrency 4 with 64-byte bodies,
# checks that it printed exactly one result line in the peers' format with
# errors=0, then stops the server with SIGTERM and checks that it exited 0
# and removed its socket file. Every wait is bounded; everything is cleaned up.
#
# usage: tools/bench_smoke.sh PATH/TO/ackrpc-bench
set -euo pipefail

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
  echo "usage: $0 PATH/TO/ackrpc-bench" >&2
  exit 2
fi
BENCH=$1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ackrpc-bench-smoke.XXXXXX")
SOCK=$TMP/bench.sock
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
  echo "bench_smoke: FAIL: $*" >&2
  for f in run.out run.err server.log; do
    [ -s "$TMP/$f" ] && { echo "--- $f:" >&2; cat "$TMP/$f" >&2; }
  done
  exit 1
}

"$BENCH" serve --socket "$SOCK" >"$TMP/server.log" 2>&1 &
SPID=$!
for _ in $(seq 100); do
  [ -S "$SOCK" ] && break
  kill -0 "$SPID" 2>/dev/null || fail "the server exited at start"
  sleep 0.05
done
[ -S "$SOCK" ] || fail "the server did not create $SOCK within 5 s"

rc=0
timeout -k 2 30 "$BENCH" run --socket "$SOCK" --duration 1 --warmup 0.2 \
  --concurrency 4 --size 64 >"$TMP/run.out" 2>"$TMP/run.err" || rc=$?
[ "$rc" = 0 ] || fail "ackrpc-bench run exited with status $rc"
[ "$(wc -l <"$TMP/run.out")" = 1 ] || fail "expected exactly one line on stdout"
re='^peer=ackrpc size=64 conc=4 calls_per_s=[0-9]+ p50_us=[0-9]+\.[0-9] p99_us=[0-9]+\.[0-9] errors=0$'
grep -Eq "$re" "$TMP/run.out" || fail "the result line does not match: $re"
grep -Eq '^# client peer=ackrpc size=64 conc=4 calls=[1-9][0-9]* calls_all=[0-9]+ window_s=[0-9.]+ cli_cpu_us_per_call=[0-9.]+$' \
  "$TMP/run.err" || fail "no '# client' line on stderr"

kill -TERM "$SPID"
for _ in $(seq 200); do
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.05
done
kill -0 "$SPID" 2>/dev/null && fail "the server did not exit within 10 s of SIGTERM"
src=0
wait "$SPID" || src=$?
SPID=""
[ "$src" = 0 ] || fail "the server exited with status $src after SIGTERM"
[ ! -e "$SOCK" ] || fail "the server left its socket file behind"
cat "$TMP/run.out"
echo "bench_smoke: ok"
