#!/usr/bin/env bash
# Renders PNG plots of ackrpc-bench results with gnuplot (docs/PERFORMANCE.md):
# calls/s and p99 latency against concurrency, and calls/s, MiB/s and p99
# against body size, one line per ackrpc mode and per peer. A measuring aid, not part
# of the build or of CI; needs gnuplot (apt-get install gnuplot-nox).
#
# usage: tools/bench/plot.sh [--out DIR] [--measure] [-d SEC] [--quick] [CSV...]
#   --measure  first run the matrix below and write DIR/matrix.csv (else the
#              CSV files given are plotted)
#   -d SEC     measured window per cell (default 3; warm-up 0.5 s)
#   --quick    a shorter matrix (0.5 s per cell) to check that it works
#   --out DIR  where matrix.csv and the PNGs go (default docs/perf)
#
# The matrix: ackrpc-bench run --csv in modes oneshot, session and pipeline
# (depth 16) against one ackrpc-bench serve, and the peers raw_halfclose and
# raw_persistent (../shared/peers, built in $PEERS_BUILD, default
# /tmp/peers-build) whose result lines are turned into the same CSV columns;
#   concurrency 1 2 4 8 16 32 at S = 64 B, and
#   S = 0 64 1K 4K 16K 64K 256K 1M 4M 16M at concurrency 1 (64M for ackrpc:
#   the raw peers refuse requests over 16 MiB).
# ackrpc-bench is $ACKRPC_BENCH, else build-perf/tools/ackrpc-bench, else
# build/tools/ackrpc-bench. CSV columns: those of "ackrpc-bench run --csv".
set -euo pipefail

HERE=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$HERE/docs/perf
MEASURE=0
DUR=3
WARM=0.5
CSVS=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT=$2; shift ;;
    --measure) MEASURE=1 ;;
    --quick) DUR=0.5; WARM=0.2 ;;
    -d) DUR=$2; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
    *) CSVS+=("$1") ;;
  esac
  shift
done
command -v gnuplot >/dev/null || { echo "gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
mkdir -p "$OUT"

BENCH=${ACKRPC_BENCH:-}
if [ -z "$BENCH" ]; then
  for b in "$HERE/build-perf/tools/ackrpc-bench" "$HERE/build/tools/ackrpc-bench"; do
    [ -x "$b" ] && { BENCH=$b; break; }
  done
fi
PB=${PEERS_BUILD:-/tmp/peers-build}
TMP=$(mktemp -d)
SPID=""
stop_server() {
  [ -n "$SPID" ] || return 0
  kill -TERM "$SPID" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=""
}
trap 'stop_server; rm -rf "$TMP"' EXIT

HEADER=peer,mode,size,conc,depth,calls_per_s,mib_per_s,p50_us,p90_us,p99_us,p999_us,max_us,errors,calls,window_s,cli_cpu_us_per_call,srv_cpu_us_per_call,srv_rss_kb,srv_hwm_kb

start_server() { # command... ; waits for $TMP/s.sock
  rm -f "$TMP/s.sock"
  "$@" >"$TMP/server.log" 2>&1 &
  SPID=$!
  for _ in $(seq 200); do [ -S "$TMP/s.sock" ] && return 0; sleep 0.05; done
  echo "server did not start: $*" >&2
  return 1
}

# One ackrpc cell: prints the CSV row.
ackrpc_cell() { # name mode size conc
  local depth=()
  [ "$2" = pipeline ] && depth=(--depth 16)
  "$BENCH" run -a "$TMP/s.sock" -p "$1" --mode "$2" "${depth[@]}" -s "$3" -c "$4" \
    -d "$DUR" -w "$WARM" --csv --server-pid "$SPID" 2>/dev/null | tail -n1 || true
}

# One peer cell: runs the peer's server and client, converts its line.
peer_cell() { # peer size conc
  local srv cli
  case $1 in
    raw_halfclose) srv=$PB/raw_halfclose_server; cli=$PB/raw_halfclose_client ;;
    raw_persistent) srv=$PB/raw_persistent_server; cli=$PB/raw_persistent_client ;;
  esac
  start_server "$srv" "$TMP/s.sock" "$2" || return 0
  timeout -k 2 60 "$cli" -p "$1" -a "$TMP/s.sock" -s "$2" -c "$3" -d "$DUR" -w "$WARM" \
    2>/dev/null | awk -v m=peer '
      /^peer=/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s,%s,%s,%s,1,%s,%.1f,%s,,%s,,,%s,,,,,,\n", v["peer"], m, v["size"],
          v["conc"], v["calls_per_s"], v["calls_per_s"] * v["size"] / 1048576,
          v["p50_us"], v["p99_us"], v["errors"] }' || true
  stop_server
}

to_bytes() { # 4K -> 4096
  local v=$1
  case $v in
    *K) echo $((${v%K} * 1024)) ;;
    *M) echo $((${v%M} * 1048576)) ;;
    *) echo "$v" ;;
  esac
}

if [ "$MEASURE" = 1 ]; then
  [ -x "$BENCH" ] || { echo "ackrpc-bench not found; set ACKRPC_BENCH" >&2; exit 1; }
  CSV=$OUT/matrix.csv
  echo "$HEADER" >"$CSV"
  CONCS="1 2 4 8 16 32"
  SIZES="0 64 1K 4K 16K 64K 256K 1M 4M 16M 64M"
  start_server "$BENCH" serve --socket "$TMP/s.sock"
  for c in $CONCS; do
    for m in oneshot session pipeline; do
      ackrpc_cell "ackrpc_$m" "$m" 64 "$c" >>"$CSV"
    done
  done
  for s in $SIZES; do
    for m in oneshot session pipeline; do
      ackrpc_cell "ackrpc_$m" "$m" "$s" 1 >>"$CSV"
    done
  done
  stop_server
  for p in raw_halfclose raw_persistent; do
    for c in $CONCS; do peer_cell "$p" 64 "$c" >>"$CSV"; done
    for s in $SIZES; do
      b=$(to_bytes "$s")
      [ "$b" -gt $((8 * 1048576)) ] && continue # the raw peers cap requests at 16 MiB
      peer_cell "$p" "$b" 1 >>"$CSV"
    done
  done
  CSVS=("$CSV")
fi
[ ${#CSVS[@]} -gt 0 ] || { echo "nothing to plot: give CSV files or --measure" >&2; exit 2; }

# One data file per series and axis: x, y columns, sorted by x. A cell that
# appears twice (S = 64 B at C = 1 is in both sweeps) is plotted once.
cat "${CSVS[@]}" | grep -v '^peer,' | awk -F, -v dir="$TMP" '
  $13 != "0" { next } # errors: only clean cells are plotted
  {
    if ($3 == 64 && !seen["c", $1, $4]++) print $4, $6, $10 > (dir "/conc." $1 ".dat")
    if ($4 == 1 && $3 > 0 && !seen["s", $1, $3]++) print $3, $6, $7, $10 > (dir "/size." $1 ".dat")
  }'
for f in "$TMP"/*.dat; do sort -n -k1,1 -o "$f" "$f"; done

# gnuplot: one PNG per figure, one line per series.
series() { # axis
  local first=1 f name
  for f in "$TMP/$1".*.dat; do
    [ -e "$f" ] || continue
    name=${f##*/$1.}
    name=${name%.dat}
    [ $first = 1 ] || printf ', '
    printf "'%s' using 1:%s with linespoints title '%s'" "$f" "$2" "${name//_/\\_}"
    first=0
  done
}
SIZE_TICS='("64" 64, "1K" 1024, "16K" 16384, "256K" 262144, "4M" 4194304, "64M" 67108864)'
plot() { # file title xlabel ylabel axis column y-scale
  local xt="set xtics (1, 2, 4, 8, 16, 32)"
  [ "$5" = size ] && xt="set xtics $SIZE_TICS; set xrange [40:1.1e8]"
  gnuplot <<EOF
set terminal pngcairo size 760,460 font ",10"
set output '$OUT/$1'
set title '$2'
set xlabel '$3'
set ylabel '$4'
set grid
set key outside right
set logscale x 2
$xt
$( [ "$7" = log ] && echo "set logscale y" )
plot $(series "$5" "$6")
EOF
}
plot conc-calls.png "calls/s vs concurrency (S = 64 B)" "client threads" "calls/s" conc 2 lin
plot conc-p99.png "p99 latency vs concurrency (S = 64 B)" "client threads" "p99 (us)" conc 3 log
plot size-calls.png "calls/s vs body size (1 client thread)" "body bytes" "calls/s" size 2 log
plot size-mibs.png "MiB/s vs body size (1 client thread)" "body bytes" "MiB/s" size 3 log
plot size-p99.png "p99 latency vs body size (1 client thread)" "body bytes" "p99 (us)" size 4 log
ls -l "$OUT"/*.png
