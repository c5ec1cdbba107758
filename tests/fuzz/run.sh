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
# Each target's build and libFuzzer output go to $BUILD/fuzz-logs/NAME.log
# (with -jobs=N in ACKRPC_FUZZ_ARGS, libFuzzer writes fuzz-N.log files in
# the current directory instead); this script
# prints its final stats, and, for a target that failed, the sanitizer report
# and the crashing input (base64, first 4 KiB) again at the very end, so that
# a CI log that keeps only its tail still says what broke and how to replay it.
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
  -DACKRPC_BUILD_TESTS=ON -DACKRPC_BUILD_TOOLS=ON -DACKRPC_BUILD_EXAMPLES=OFF \
  -DACKRPC_GENERATE_FUZZ=ON >/dev/null

status=0
failed=""
# fuzz TARGET BIN_DIR CORPUS_DIR DICT: builds TARGET, fuzzes a scratch copy of
# CORPUS_DIR with BIN_DIR/TARGET for $seconds (DICT may be empty).
fuzz() {
  name=$1
  corpus=$(basename "$3")
  work="$build/fuzz-work/$corpus"
  artifacts="$build/fuzz-artifacts"
  log="$build/fuzz-logs/$name.log"
  rm -rf "$work"
  mkdir -p "$work" "$artifacts" "$build/fuzz-logs"
  rm -f "$artifacts/$name-"* # a report shows this run's inputs only
  if ! cmake --build "$build" --target "$name" -j "$(nproc)" >"$log" 2>&1; then
    echo "fuzz: $name: FAILED to build, see $log" >&2
    status=1
    failed="$failed $name"
    return 0
  fi
  cp "$3"/* "$work"/
  dict=""
  if [ -n "$4" ] && [ -f "$4" ]; then dict="-dict=$4"; fi
  echo "== $name: ${seconds}s on $(ls "$work" | wc -l) seeds"
  # shellcheck disable=SC2086 # ACKRPC_FUZZ_ARGS is a list of flags
  if ! "$2/$name" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$artifacts/$name-" $dict ${ACKRPC_FUZZ_ARGS:-} "$work" \
      >"$log" 2>&1; then
    echo "fuzz: $name: FAILED, see $log and $artifacts/" >&2
    status=1
    failed="$failed $name"
  else
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" || tail -n 3 "$log"
    echo "fuzz: $name: ok (${seconds} s, no crash)"
  fi
}

# The first line of a sanitizer's or libFuzzer's report.
first_error='^==[0-9]+==|runtime error:|^(ERROR|SUMMARY): |deadly signal|out-of-memory|timeout after'

# report NAME: what a failed target left, for a log read from its tail.
report() {
  log="$build/fuzz-logs/$1.log"
  echo "==== fuzz: $1 failed; the end of its report ($log):"
  if grep -qE "$first_error" "$log"; then
    # From the first error line on, bounded.
    awk -v re="$first_error" '$0 ~ re { on = 1 } on { print; if (++n >= 80) exit }' "$log"
  else
    tail -n 40 "$log" # a build failure, or a report this script does not know
  fi
  for a in "$build/fuzz-artifacts/$1-"*; do
    [ -f "$a" ] || continue
    echo "==== input $(basename "$a") ($(wc -c <"$a") bytes), base64 of its first 4 KiB:"
    head -c 4096 "$a" | base64
  done
}

# The targets: tests/fuzz/fuzz_*.c (corpus in tests/fuzz/corpus/NAME/) and
# tools/ackrpc/fuzz/fuzz_*.c (the ackrpc tool's codec; corpus beside it).
for src in "$here"/fuzz_*.c "$root"/tools/ackrpc/fuzz/fuzz_*.c; do
  [ -f "$src" ] || continue
  name=$(basename "$src" .c)
  srcdir=$(dirname "$src")
  bindir="$build/tests/fuzz"
  [ "$srcdir" = "$here" ] || bindir="$build/tools/ackrpc/fuzz"
  fuzz "$name" "$bindir" "$srcdir/corpus/${name#fuzz_}" "$srcdir/${name#fuzz_}.dict"
done
# The entry protoc-gen-ackrpc generates for tests/gen/fixtures/fds/files.proto,
# which passes descriptors (docs/GENERATOR.md); its seeds are the real frames
# of tests/gen/test_gen_fuzz_fds.c (ACKRPC_FUZZ_SEEDS=DIR writes them); ctest
# replays them, and a regress-* input committed beside them, as
# fuzz_gen_fds_replay (tests/gen/CMakeLists.txt).
fuzz gen_fixtures_fuzz_fds_files "$build/tests/gen" "$here/corpus/gen_fds" "$here/frame.dict"
for name in $failed; do report "$name"; done
[ -z "$failed" ] || echo "fuzz: failed:$failed" >&2
exit $status
