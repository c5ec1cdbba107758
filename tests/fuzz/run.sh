#!/bin/sh
# Builds the libFuzzer targets (clang, ASan + UBSan, ACKRPC_ENABLE_FUZZING=ON)
# in their own build directory and runs each one for a bounded time.
#
#   tests/fuzz/run.sh [SECONDS]     (default 60 per target)
#
# Each target fuzzes a scratch copy of its seed corpus (tests/fuzz/corpus/NAME/),
# so the committed corpus never grows; inputs it finds stay in
# $BUILD/fuzz-work/NAME/. A crash leaves its input in $BUILD/fuzz-artifacts/
# and makes this script fail: minimise it, fix the bug, and commit the input
# as corpus/NAME/regress-* so that ctest (fuzz_NAME_replay) keeps checking it.
#
# Environment: ACKRPC_FUZZ_BUILD_DIR (default build-fuzz at the top of the
# tree), CC (default clang), ACKRPC_FUZZ_ARGS (extra libFuzzer flags, e.g.
# "-jobs=4 -workers=4").
set -eu

seconds=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${ACKRPC_FUZZ_BUILD_DIR:-$root/build-fuzz}
cc=${CC:-clang}
case "$cc" in *clang*) ;; *) echo "run.sh: CC must be clang (got $cc)" >&2; exit 2 ;; esac

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DACKRPC_ENABLE_FUZZING=ON -DACKRPC_ENABLE_ASAN=ON -DACKRPC_ENABLE_UBSAN=ON \
  -DACKRPC_BUILD_TESTS=ON -DACKRPC_BUILD_TOOLS=ON -DACKRPC_BUILD_EXAMPLES=OFF >/dev/null

status=0
# The targets: tests/fuzz/fuzz_*.c (corpus in tests/fuzz/corpus/NAME/) and
# tools/ackrpc/fuzz/fuzz_*.c (the ackrpc tool's codec; corpus beside it).
for src in "$here"/fuzz_*.c "$root"/tools/ackrpc/fuzz/fuzz_*.c; do
  [ -f "$src" ] || continue
  name=$(basename "$src" .c)
  corpus=${name#fuzz_}
  srcdir=$(dirname "$src")
  cmake --build "$build" --target "$name" -j "$(nproc)" >/dev/null
  work="$build/fuzz-work/$corpus"
  artifacts="$build/fuzz-artifacts"
  rm -rf "$work"
  mkdir -p "$work" "$artifacts"
  cp "$srcdir/corpus/$corpus"/* "$work"/
  dict=""
  if [ -f "$srcdir/$corpus.dict" ]; then dict="-dict=$srcdir/$corpus.dict"; fi
  echo "== $name: ${seconds}s on $(ls "$work" | wc -l) seeds"
  # shellcheck disable=SC2086 # ACKRPC_FUZZ_ARGS is a list of flags
  bin="$build/tests/fuzz/$name"
  [ -x "$bin" ] || bin="$build/tools/ackrpc/fuzz/$name"
  if ! "$bin" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$artifacts/$name-" $dict ${ACKRPC_FUZZ_ARGS:-} "$work"; then
    echo "fuzz: $name: FAILED, see $artifacts/" >&2
    status=1
  else
    echo "fuzz: $name: ok (${seconds} s, no crash)"
  fi
done
exit $status
