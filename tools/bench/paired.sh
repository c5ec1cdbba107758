#!/usr/bin/env bash
# Paired repetitions of the default cells (docs/PERFORMANCE.md, section 2.1):
# for each repetition and each cell (S = 64, 4096; C = 1, 32), one run of the
# peers' run.sh with raw_halfclose, raw_persistent, grpc_uds and ackrpc's three
# modes back to back, so that every ratio can be taken within one file.
# Then: tools/bench/targets.py OUTDIR/*.txt [--ref ...].
#
# usage: tools/bench/paired.sh OUTDIR [REPETITIONS (default 5)] [-d SEC]
# Needs ACKRPC_BENCH (or build-perf/tools/ackrpc-bench) and the peers built in
# $PEERS_BUILD (default /tmp/peers-build); $PEERS_DIR is ../shared/peers by
# default. A measuring aid: not part of the build or of CI.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -ge 1 ] || { sed -n '2,11p' "$0"; exit 2; }
OUT=$1
REPS=${2:-5}
DUR=1.5
[ "${3:-}" = -d ] && DUR=$4
PEERS_DIR=${PEERS_DIR:-$HERE/../shared/peers}
export ACKRPC_BENCH=${ACKRPC_BENCH:-$HERE/build-perf/tools/ackrpc-bench}
export PEERS_BUILD=${PEERS_BUILD:-/tmp/peers-build}
mkdir -p "$OUT"
for r in $(seq "$REPS"); do
  for cell in "64 1" "64 32" "4096 1" "4096 32"; do
    set -- $cell
    f=$OUT/r$r-s$1-c$2.txt
    "$PEERS_DIR/run.sh" --no-build --peers "raw_halfclose raw_persistent grpc_uds" \
      --extra ackrpc="$HERE/tools/peers" --extra ackrpc_session="$HERE/tools/peers-session" \
      --extra ackrpc_pipeline="$HERE/tools/peers-pipeline" \
      --sizes "$1" --conc "$2" -d "$DUR" -w 0.3 >"$f" 2>&1
    echo "# load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$f"
  done
done
echo "wrote $((REPS * 4)) files to $OUT" >&2
