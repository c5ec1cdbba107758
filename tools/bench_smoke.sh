#!/usr/bin/env bash
# A functional check of ackrpc-bench (ctest "bench_smoke"), not a timed test:
# starts "ackrpc-bench serve" on a socket in a temporary directory, runs
# "ackrpc-bench run" against it for 1 s at concurrency 4 with 64-byte bodies,
# checks that it printed exactly one result line in the peers' format with
# errors=0; then runs each mode (oneshot, session, pipeline) for 0.5 s, the
# large-body modes (--memfd-threshold, --body-buffer, --body-reuse), one
# with --csv and --server-pid, and "ackrpc-bench idle" with a few connections,
# each with errors=0 (the numbers are not checked); then pauses the server
# with SIGSTOP and checks that a run against it fails, saying that no call
# completed; then resumes it, stops it with SIGTERM and checks that it exited
# 0 and removed its socket file. Every wait is bounded; everything is cleaned
# up.
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
cp "$TMP/run.out" "$TMP/first.out"

# Each mode, briefly: a functional check only.
for mode in oneshot session pipeline; do
  rc=0
  timeout -k 2 30 "$BENCH" run --socket "$SOCK" --mode "$mode" --depth 4 --duration 0.5 \
    --warmup 0.1 --concurrency 2 --size 1K >"$TMP/run.out" 2>"$TMP/run.err" || rc=$?
  [ "$rc" = 0 ] || fail "ackrpc-bench run --mode $mode exited with status $rc"
  re='^peer=ackrpc size=1024 conc=2 calls_per_s=[1-9][0-9]* p50_us=[0-9.]+ p99_us=[0-9.]+ errors=0$'
  grep -Eq "$re" "$TMP/run.out" || fail "--mode $mode: the result line does not match: $re"
  grep -Eq "^# latency peer=ackrpc mode=$mode depth=[0-9]+ p50_us=.* p999_us=" "$TMP/run.err" ||
    fail "--mode $mode: no '# latency' line on stderr"
done
# Large bodies by memfd: bodies over the threshold, bodies built in an
# ackrpc_body, one resent (the ack checks id and length either way).
for opts in "--memfd-threshold 1K" "--body-buffer" "--body-reuse"; do
  rc=0
  # shellcheck disable=SC2086 # the options are meant to be split
  timeout -k 2 30 "$BENCH" run --socket "$SOCK" --mode session --duration 0.3 \
    --warmup 0.1 --size 4K $opts >"$TMP/run.out" 2>"$TMP/run.err" || rc=$?
  [ "$rc" = 0 ] || fail "ackrpc-bench run $opts exited with status $rc"
  grep -Eq 'calls_per_s=[1-9][0-9]* .*errors=0$' "$TMP/run.out" ||
    fail "run $opts: no calls, or errors"
done
rc=0
timeout -k 2 30 "$BENCH" run --socket "$SOCK" --mode pipeline --duration 0.5 --warmup 0.1 \
  --csv --server-pid "$SPID" >"$TMP/run.out" 2>"$TMP/run.err" || rc=$?
[ "$rc" = 0 ] || fail "ackrpc-bench run --csv exited with status $rc"
[ "$(wc -l <"$TMP/run.out")" = 2 ] || fail "--csv: expected a header and one row"
head -n1 "$TMP/run.out" | grep -q '^peer,mode,size,conc,depth,calls_per_s,' ||
  fail "--csv: no header"
tail -n1 "$TMP/run.out" | grep -Eq '^ackrpc,pipeline,64,1,16,[1-9][0-9]*,.*,0,[0-9]+,' ||
  fail "--csv: the row does not show errors=0"
grep -q '^# server pid=' "$TMP/run.err" || fail "--server-pid: no '# server' line"
rc=0
timeout -k 2 30 "$BENCH" idle --socket "$SOCK" --connections 8 --hold 0.6 --call \
  --server-pid "$SPID" >"$TMP/run.out" 2>"$TMP/run.err" || rc=$?
[ "$rc" = 0 ] || fail "ackrpc-bench idle exited with status $rc"
grep -Eq '^idle connections=8 open=8 rss_before_kb=' "$TMP/run.out" ||
  fail "idle: unexpected output"

# A stopped server completes no call: that is a failure, not errors=0. Each
# call waits 2 s (--timeout-ms), so none ends inside the 0.5 s window.
kill -STOP "$SPID"
rc=0
timeout -k 2 30 "$BENCH" run --socket "$SOCK" --duration 0.5 --warmup 0.1 \
  --timeout-ms 2000 >"$TMP/run.out" 2>"$TMP/run.err" || rc=$?
kill -CONT "$SPID"
[ "$rc" = 1 ] || fail "run against a stopped server exited with status $rc, not 1"
grep -q 'no call completed in the' "$TMP/run.err" ||
  fail "run against a stopped server did not say that no call completed"

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
cat "$TMP/first.out"
echo "bench_smoke: ok"
