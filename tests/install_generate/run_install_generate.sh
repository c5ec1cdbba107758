#!/usr/bin/env bash
# Driver of the install_generate test (see CMakeLists.txt beside this file).
# Installs the build into WORK/prefix, checks that the package carries what
# ackrpc_generate() needs, then configures, builds and runs
# tests/install_generate/downstream with CMAKE_PREFIX_PATH=WORK/prefix. Every
# failure says which step failed; WORK is removed at the end either way.
set -euo pipefail

config="" cflags="" generator="" cc="cc"
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$2 ;;
    --config) config=$2 ;;
    --downstream) downstream=$2 ;;
    --work) work=$2 ;;
    --bindir) bindir=$2 ;;
    --libdir) libdir=$2 ;;
    --includedir) includedir=$2 ;;
    --generator) generator=$2 ;;
    --cc) cc=$2 ;;
    --cflags) cflags=$2 ;;
    --recipe) recipe_doc=$2 ;;
    *) echo "run_install_generate.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done

step() { echo "== install_generate: $*"; }
fail() { echo "FAIL: install_generate: $*" >&2; exit 1; }
show_fail() { # LOG MESSAGE
  cat "$1" >&2
  fail "$2"
}

prefix="$work/prefix"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

step "cmake --install into $prefix"
install_args=(--install "$build_dir" --prefix "$prefix")
[ -n "$config" ] && install_args+=(--config "$config")
cmake "${install_args[@]}" >"$work/install.log" 2>&1 || show_fail "$work/install.log" "cmake --install"

step "check what ackrpc_generate() needs in the installed tree"
plugin="$prefix/$bindir/protoc-gen-ackrpc"
[ -x "$plugin" ] || fail "protoc-gen-ackrpc not installed in $prefix/$bindir"
[ -f "$prefix/$includedir/ackrpc/options.proto" ] \
  || fail "ackrpc/options.proto not installed in $prefix/$includedir"
[ -f "$prefix/$libdir/cmake/ackrpc/AckrpcGenerate.cmake" ] \
  || fail "AckrpcGenerate.cmake not installed in $prefix/$libdir/cmake/ackrpc"
grep -q 'AckrpcGenerate.cmake' "$prefix/$libdir/cmake/ackrpc/ackrpcConfig.cmake" \
  || fail "ackrpcConfig.cmake does not include AckrpcGenerate.cmake"
grep -q 'ackrpc::protoc-gen-ackrpc' "$prefix/$libdir/cmake/ackrpc/"ackrpcTargets*.cmake \
  || fail "the package does not export ackrpc::protoc-gen-ackrpc"

gen_args=()
[ -n "$generator" ] && gen_args=(-G "$generator")
src="$work/src"
bld="$work/build"
# A copy of the project, so that a stray output in its source tree shows.
cp -R "$downstream" "$src"

step "configure the downstream project with CMAKE_PREFIX_PATH=$prefix"
cmake -S "$src" -B "$bld" "${gen_args[@]}" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_C_FLAGS="$cflags" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_PREFIX_PATH="$prefix" \
      >"$work/configure.log" 2>&1 || show_fail "$work/configure.log" "configure"

step "build it (ackrpc_generate with the installed plugin)"
cmake --build "$bld" --verbose >"$work/build.log" 2>&1 || show_fail "$work/build.log" "build"
grep -q -- "--plugin=protoc-gen-ackrpc=$plugin" "$work/build.log" \
  || show_fail "$work/build.log" "the build did not run the installed protoc-gen-ackrpc ($plugin)"
for f in hello/greeter.ackrpc.h hello/greeter.ackrpc.c hello/greeter.pb-c.h; do
  [ -f "$bld/ackrpc-gen/greeter/$f" ] || fail "$f was not generated in the build directory"
done
stray=$(find "$src" -name '*.pb-c.*' -o -name '*.ackrpc.*')
[ -z "$stray" ] || fail "generated files in the source tree: $stray"

step "run it: serve and call downstream.hello.Greeter over a Unix socket"
rc=0
timeout -k 2 60 "$bld/greeter" || rc=$?
[ "$rc" = 0 ] || fail "greeter exited with $rc"

if [ -n "${recipe_doc:-}" ]; then
  step "the by-hand recipe of $(basename "$recipe_doc"), run as written"
  # The fenced block after the "recipe: by-hand" marker, verbatim.
  awk '/<!-- recipe: by-hand/ { on = 1; next }
       on && /^```sh$/ { inside = 1; next }
       inside && /^```$/ { exit }
       inside { print }' "$recipe_doc" >"$work/recipe.sh"
  [ -s "$work/recipe.sh" ] || fail "no by-hand recipe block in $recipe_doc"
  hand="$work/hand"
  cp -R "$downstream" "$hand"
  # The recipe honours CC and CFLAGS as a user's shell would set them; a
  # sanitizer build's library needs its -fsanitize flags in the program.
  (cd "$hand" && PREFIX="$prefix" CC="$cc" CFLAGS="$cflags" \
     bash -euo pipefail "$work/recipe.sh") >"$work/recipe.log" 2>&1 \
    || show_fail "$work/recipe.log" "the by-hand recipe failed"
  [ -x "$hand/greeter" ] || fail "the by-hand recipe built no greeter"
  rc=0
  LD_LIBRARY_PATH="$prefix/$libdir" timeout -k 2 60 "$hand/greeter" || rc=$?
  [ "$rc" = 0 ] || fail "the greeter built by hand exited with $rc"
fi

step "all checks passed"
