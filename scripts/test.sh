#!/usr/bin/env bash
# Builds ackrpc and runs every test, the way CI does:
#   deps      scripts/deps.sh (apt-get; needs root)
#   plain     -DACKRPC_WERROR=ON into $BUILD_DIR (build/), ctest
#   asan      ASan + UBSan + -Werror into $ASAN_BUILD_DIR (build-asan/), ctest
#   valgrind  the tests labelled `valgrind` in $BUILD_DIR, under valgrind
#   fuzz      each libFuzzer target (tests/fuzz/run.sh, clang) for
#             $FUZZ_SECONDS (default 60) on a copy of its committed corpus
# then prints a summary and exits non-zero if anything failed.
#
# Usage: bash scripts/test.sh [STEP...]   (default: all five, in that order)
# Environment: BUILD_DIR, ASAN_BUILD_DIR, JOBS (default 2), SKIP_DEPS=1 (leave
# out the deps step when no step is named), CMAKE_ARGS (extra
# configure arguments for both builds), VALGRIND_SUPPRESSIONS (a .supp file;
# tests/valgrind.supp is used when it exists).
#
# Valgrind convention: a test opts in with
#   set_tests_properties(NAME PROPERTIES LABELS valgrind)
# The valgrind step reads each such test's command, working directory and
# environment from `ctest --show-only=json-v1` and runs it under
#   valgrind --leak-check=full --errors-for-leak-kinds=definite
#            --error-exitcode=99 --trace-children=yes --log-file=...%p.log
# Criterion runs each test in a child process and exits 0 even when a child's
# valgrind finds errors, so the exit code is not enough: the step also fails
# when any process's log reports a nonzero ERROR SUMMARY.
#
# Sanitizers: detect_leaks=1 works with Criterion (LeakSanitizer checks each
# test's child process as it exits), but Criterion still reports the test as
# passed. So sanitizer reports go to files (log_path) under the build
# directory, and the step fails when any report file exists.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build}
ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-build-asan}
JOBS=${JOBS:-2}
read -r -a EXTRA_CMAKE_ARGS <<< "${CMAKE_ARGS:-}"

steps=("$@")
if [ ${#steps[@]} -eq 0 ]; then
  steps=(deps plain asan valgrind fuzz)
  [ "${SKIP_DEPS:-0}" = 1 ] && steps=(plain asan valgrind fuzz)
fi
for s in "${steps[@]}"; do
  case "$s" in deps|plain|asan|valgrind|fuzz) ;;
    *) echo "test.sh: unknown step '$s' (deps, plain, asan, valgrind, fuzz)" >&2; exit 2 ;;
  esac
done

summary=()      # one line per step
failed_logs=()  # "STEP LOG" for each ctest run that failed: reprinted at the end
tests_passed=0
tests_failed=0
any_failed=0

note() { printf '\n==== test.sh: %s\n' "$*"; }
record() { # STEP STATUS SECONDS DETAIL
  summary+=("$(printf '%-9s %-5s %5ss  %s' "$1" "$2" "$3" "$4")")
  [ "$2" = FAIL ] && any_failed=1
  return 0
}

# Adds ctest's closing counts from LOG to the totals and sets $ctest_counts
# to "P passed, F failed" (no command substitution: the totals must stick).
count_ctest() {
  local line total failed
  ctest_counts="no ctest summary"
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$1" | tail -n1)
  [ -z "$line" ] && return 0
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<< "$line")
  total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<< "$line")
  tests_passed=$((tests_passed + total - failed))
  tests_failed=$((tests_failed + failed))
  ctest_counts="$((total - failed)) passed, $failed failed"
}

# The names of the tests ctest listed as failed in LOG, space-separated.
failed_names() {
  sed -n '/The following tests FAILED:/,$p' "$1" |
    sed -nE 's/^[[:space:]]*[0-9]+ - ([^ ]+) .*/\1/p' | tr '\n' ' ' | sed 's/ $//'
}

# Prints the last lines of each failed test's own output in LOG (ctest
# --output-on-failure prints it under the test's result line).
print_failed_output() {
  local name
  for name in $(failed_names "$1"); do
    echo "--- $name (last 80 lines of its output)"
    awk -v n="$name" '
      $0 ~ "Test +#[0-9]+: " n " " { on = 1; print; next }
      on && /^ *[0-9]+\/[0-9]+ Test +#[0-9]+: / { on = 0 }
      on && /tests passed, [0-9]+ tests? failed/ { on = 0 }
      on { print }' "$1" | tail -n 80
  done
}

# configure + build + ctest. NAME DIR [cmake args...]
build_and_test() {
  local name=$1 dir=$2 start rc log
  shift 2
  start=$SECONDS
  log="$dir/test.sh-ctest.log"
  note "$name: configure $dir $*"
  if ! cmake -S "$ROOT" -B "$dir" "$@" "${EXTRA_CMAKE_ARGS[@]}"; then
    record "$name" FAIL $((SECONDS - start)) "configure failed"
    tests_failed=$((tests_failed + 1)); return 1
  fi
  note "$name: build"
  if ! cmake --build "$dir" -j "$JOBS"; then
    record "$name" FAIL $((SECONDS - start)) "build failed"
    tests_failed=$((tests_failed + 1)); return 1
  fi
  note "$name: ctest"
  ctest --test-dir "$dir" --output-on-failure -j "$JOBS" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  count_ctest "$log"
  if [ "$rc" -ne 0 ]; then
    failed_logs+=("$name $log")
    record "$name" FAIL $((SECONDS - start)) "ctest: $ctest_counts: $(failed_names "$log")"
    return 1
  fi
  record "$name" PASS $((SECONDS - start)) "ctest: $ctest_counts"
}

step_deps() {
  local start=$SECONDS
  note "deps: scripts/deps.sh"
  if ! bash "$ROOT/scripts/deps.sh"; then
    record deps FAIL $((SECONDS - start)) "scripts/deps.sh failed"
    return 1
  fi
  record deps PASS $((SECONDS - start)) ""
}

step_plain() {
  build_and_test plain "$BUILD_DIR" -DACKRPC_WERROR=ON
}

step_asan() {
  local logs="$ROOT/$ASAN_BUILD_DIR/sanitizer-logs" reports start=$SECONDS
  [[ "$ASAN_BUILD_DIR" = /* ]] && logs="$ASAN_BUILD_DIR/sanitizer-logs"
  rm -rf "$logs"; mkdir -p "$logs"
  ASAN_OPTIONS="detect_leaks=1:log_path=$logs/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
    build_and_test asan "$ASAN_BUILD_DIR" \
      -DACKRPC_ENABLE_ASAN=ON -DACKRPC_ENABLE_UBSAN=ON -DACKRPC_WERROR=ON
  local rc=$?
  reports=$(find "$logs" -type f | sort)
  if [ -n "$reports" ]; then
    note "asan: sanitizer reports (a test that Criterion counted as passed may have leaked)"
    for f in $reports; do echo "--- $f"; head -n 60 "$f"; done
    record asan-logs FAIL $((SECONDS - start)) "$(wc -l <<< "$reports") sanitizer report file(s) in $logs"
    tests_failed=$((tests_failed + 1))
    return 1
  fi
  return $rc
}

step_valgrind() {
  local start=$SECONDS out rc
  note "valgrind: tests labelled valgrind in $BUILD_DIR"
  if [ ! -f "$BUILD_DIR/CTestTestfile.cmake" ]; then
    record valgrind FAIL 0 "$BUILD_DIR is not a configured build (run the plain step)"
    return 1
  fi
  local supp=${VALGRIND_SUPPRESSIONS:-}
  [ -z "$supp" ] && [ -f "$ROOT/tests/valgrind.supp" ] && supp="$ROOT/tests/valgrind.supp"
  out=$(mktemp)
  python3 - "$BUILD_DIR" "$supp" <<'PY' | tee "$out"
import json, os, pathlib, re, subprocess, sys, time

build_dir, supp = pathlib.Path(sys.argv[1]).resolve(), sys.argv[2]
listing = subprocess.run(
    ["ctest", "--test-dir", str(build_dir), "-L", "^valgrind$",
     "--show-only=json-v1"], check=True, capture_output=True, text=True).stdout
tests = json.loads(listing).get("tests", [])
if not tests:
    print("valgrind: no test carries the label 'valgrind': nothing to run")
    print("valgrind-summary: 0 0")
    sys.exit(0)

vg = ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
      "--error-exitcode=99", "--trace-children=yes", "--num-callers=30"]
if supp:
    vg.append(f"--suppressions={supp}")
passed = failed = 0
for t in tests:
    name = t["name"]
    props = {p["name"]: p["value"] for p in t.get("properties", [])}
    cwd = props.get("WORKING_DIRECTORY", str(build_dir))
    env = dict(os.environ)
    for kv in props.get("ENVIRONMENT", []):
        k, _, v = kv.partition("=")
        env[k] = v
    timeout = max(float(props.get("TIMEOUT", 0)) * 4, 600)
    logdir = build_dir / "valgrind" / name
    if logdir.exists():
        for f in logdir.iterdir():
            f.unlink()
    logdir.mkdir(parents=True, exist_ok=True)
    cmd = vg + [f"--log-file={logdir}/vg.%p.log"] + t["command"]
    began = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace")
        rc, output = r.returncode, r.stdout
    except subprocess.TimeoutExpired as e:
        rc, output = f"timeout after {timeout:.0f} s", e.stdout or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
    bad_logs = []
    for log in sorted(logdir.glob("vg.*.log")):
        m = re.search(r"ERROR SUMMARY: (\d+) errors", log.read_text(errors="replace"))
        if m and int(m.group(1)) > 0:
            bad_logs.append(log)
    took = time.monotonic() - began
    if rc == 0 and not bad_logs:
        passed += 1
        print(f"valgrind: {name}: ok ({took:.1f} s)")
        continue
    failed += 1
    print(f"valgrind: {name}: FAIL ({took:.1f} s): exit {rc}, "
          f"{len(bad_logs)} process(es) with valgrind errors")
    print(output[-8000:])
    for log in bad_logs:
        print(f"--- {log}")
        print("".join(log.read_text(errors="replace").splitlines(True)[:150]))
print(f"valgrind-summary: {passed} {failed}")
sys.exit(1 if failed else 0)
PY
  rc=${PIPESTATUS[0]}
  local counts p f
  counts=$(sed -n 's/^valgrind-summary: //p' "$out"); rm -f "$out"
  p=${counts% *}; f=${counts#* }
  if [ -z "$counts" ]; then
    record valgrind FAIL $((SECONDS - start)) "the runner failed (exit $rc)"; return 1
  fi
  tests_passed=$((tests_passed + p)); tests_failed=$((tests_failed + f))
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
    record valgrind SKIP $((SECONDS - start)) "no test labelled valgrind"; return 0
  fi
  if [ "$rc" -ne 0 ]; then
    record valgrind FAIL $((SECONDS - start)) "$p passed, $f failed"; return 1
  fi
  record valgrind PASS $((SECONDS - start)) "$p passed, $f failed"
}

step_fuzz() {
  local start=$SECONDS secs=${FUZZ_SECONDS:-60} log n
  note "fuzz: every target for ${secs} s (tests/fuzz/run.sh)"
  log=$(mktemp)
  ACKRPC_FUZZ_BUILD_DIR="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}" \
    bash "$ROOT/tests/fuzz/run.sh" "$secs" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  n=$(grep -c '^fuzz: .*: ok' "$log" || true)
  local which
  which=$(sed -n 's/^fuzz: failed: *//p' "$log" | tail -n 1)
  rm -f "$log"
  if [ "$rc" -ne 0 ]; then
    tests_failed=$((tests_failed + 1))
    if [ -n "$which" ]; then
      record fuzz FAIL $((SECONDS - start)) "failed: $which (report above)"
    else
      record fuzz FAIL $((SECONDS - start)) "a target did not build"
    fi
    return 1
  fi
  tests_passed=$((tests_passed + n))
  record fuzz PASS $((SECONDS - start)) "$n target(s), ${secs} s each, no crash"
}

for s in "${steps[@]}"; do
  if [ "$s" = deps ]; then
    # Nothing else can work without the packages: stop here.
    step_deps || break
  else
    "step_$s"
  fi
done

for f in "${failed_logs[@]}"; do
  note "${f%% *}: the failed tests again"
  print_failed_output "${f#* }"
done
note "summary"
printf '%s\n' "${summary[@]}"
if [ "$any_failed" -ne 0 ]; then
  # Count a failed step that ran no test (deps, configure, build) as a failure.
  [ "$tests_failed" -eq 0 ] && tests_failed=1
  echo "test.sh: FAILED"
  echo "test.sh: $tests_passed passed, $tests_failed failed"
  exit 1
fi
echo "test.sh: $tests_passed passed, $tests_failed failed"
