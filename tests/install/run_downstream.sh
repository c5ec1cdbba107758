#!/usr/bin/env bash
# Driver of the install_downstream test (see CMakeLists.txt beside this file).
# Installs the build into WORK/prefix, checks the installed tree, then builds
# and runs tests/install/downstream against it with find_package(ackrpc) and
# with pkg-config. Every failure says which step failed.
set -euo pipefail

config="" cflags="" generator="" cc="cc"
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$2 ;;
    --config) config=$2 ;;
    --source-include) source_include=$2 ;;
    --downstream) downstream=$2 ;;
    --work) work=$2 ;;
    --libdir) libdir=$2 ;;
    --includedir) includedir=$2 ;;
    --datadir) datadir=$2 ;;
    --source-proto) source_proto=$2 ;;
    --soname) soname=$2 ;;
    --generator) generator=$2 ;;
    --cc) cc=$2 ;;
    --cflags) cflags=$2 ;;
    *) echo "run_downstream.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done

step() { echo "== install_downstream: $*"; }
fail() { echo "FAIL: install_downstream: $*" >&2; exit 1; }

prefix="$work/prefix"
rm -rf "$work"
mkdir -p "$work"

step "cmake --install into $prefix"
install_args=(--install "$build_dir" --prefix "$prefix")
[ -n "$config" ] && install_args+=(--config "$config")
cmake "${install_args[@]}" > "$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }

step "check the installed tree"
for h in "$source_include"/*.h; do
  [ -f "$prefix/$includedir/ackrpc/$(basename "$h")" ] || fail "public header $(basename "$h") not installed"
done
for p in "$source_proto"/*.proto; do
  cmp -s "$p" "$prefix/$datadir/ackrpc/proto/ackrpc/$(basename "$p")" \
    || fail "$(basename "$p") not installed in $datadir/ackrpc/proto/ackrpc"
done
internal=$(find "$prefix" -name '*.pb-c.h' -o -name '*_internal.h' -o -name 'frame.h')
[ -z "$internal" ] || fail "internal headers installed: $internal"
lib="$prefix/$libdir"
[ -f "$lib/libackrpc.a" ] || fail "libackrpc.a not installed in $lib"
[ -L "$lib/libackrpc.so" ] || fail "libackrpc.so (the dev symlink) not installed in $lib"
[ -e "$lib/$soname" ] || fail "$soname not installed in $lib"
got_soname=$(readelf -d "$lib/libackrpc.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$got_soname" = "$soname" ] || fail "SONAME is '$got_soname', expected '$soname'"
for f in ackrpcConfig.cmake ackrpcConfigVersion.cmake ackrpcTargets.cmake; do
  [ -f "$lib/cmake/ackrpc/$f" ] || fail "$lib/cmake/ackrpc/$f not installed"
done
[ -f "$lib/pkgconfig/ackrpc.pc" ] || fail "$lib/pkgconfig/ackrpc.pc not installed"
outbox_soname=${soname/libackrpc/libackrpc-outbox}
[ -f "$lib/libackrpc-outbox.a" ] || fail "libackrpc-outbox.a not installed in $lib"
[ -e "$lib/$outbox_soname" ] || fail "$outbox_soname not installed in $lib"
[ -f "$lib/pkgconfig/ackrpc-outbox.pc" ] || fail "$lib/pkgconfig/ackrpc-outbox.pc not installed"
if readelf -d "$lib/$soname" | grep -q 'NEEDED.*sqlite'; then
  fail "libackrpc needs SQLite: only libackrpc-outbox may"
fi
readelf -d "$lib/$outbox_soname" | grep -q "NEEDED.*\[$soname\]" \
  || fail "libackrpc-outbox does not link $soname"

gen_args=()
[ -n "$generator" ] && gen_args=(-G "$generator")
cmake_build() { # NAME VIA [extra -D...]
  local name=$1 via=$2; shift 2
  cmake -S "$downstream" -B "$work/$name" "${gen_args[@]}" \
        -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" \
        -DCMAKE_BUILD_TYPE=Debug -DACKRPC_DOWNSTREAM_VIA="$via" "$@" \
        > "$work/$name.configure.log" 2>&1 \
    || { cat "$work/$name.configure.log"; fail "configure ($name)"; }
  cmake --build "$work/$name" > "$work/$name.build.log" 2>&1 \
    || { cat "$work/$name.build.log"; fail "build ($name)"; }
}
run() { # EXE [ARGS...]
  "$@" || fail "$(basename "$1") exited with $?"
}

step "find_package(ackrpc) with CMAKE_PREFIX_PATH"
cmake_build cmake cmake -DCMAKE_PREFIX_PATH="$prefix"
run "$work/cmake/downstream_shared"
run "$work/cmake/downstream_static"
run "$work/cmake/downstream_outbox_shared" "$work/outbox-shared.db"
run "$work/cmake/downstream_outbox_static" "$work/outbox-static.db"
readelf -d "$work/cmake/downstream_outbox_shared" | grep -q "NEEDED.*\[$outbox_soname\]" \
  || fail "downstream_outbox_shared does not link $outbox_soname"
if readelf -d "$work/cmake/downstream_shared" | grep -q 'NEEDED.*sqlite'; then
  fail "a program that does not use the outbox links SQLite"
fi
readelf -d "$work/cmake/downstream_shared" | grep -q "NEEDED.*\[$soname\]" \
  || fail "downstream_shared does not link $soname"
if readelf -d "$work/cmake/downstream_static" | grep -q 'NEEDED.*libackrpc'; then
  fail "downstream_static links libackrpc dynamically"
fi

export PKG_CONFIG_PATH="$lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
step "pkg-config with PKG_CONFIG_PATH: pkg_check_modules"
cmake_build pkgconfig pkgconfig
run "$work/pkgconfig/downstream_pkgconfig"
run "$work/pkgconfig/downstream_outbox_pkgconfig" "$work/outbox-pkgconfig.db"

step "pkg-config with PKG_CONFIG_PATH: $cc \$(pkg-config --cflags --libs ackrpc)"
[ "$(pkg-config --modversion ackrpc)" != "" ] || fail "pkg-config --modversion ackrpc"
# shellcheck disable=SC2046,SC2086
"$cc" $cflags -o "$work/downstream_cc" "$downstream/main.c" \
      $(pkg-config --cflags --libs ackrpc) \
      -Wl,-rpath,"$(pkg-config --variable=libdir ackrpc)" \
  || fail "compile with pkg-config flags"
run "$work/downstream_cc"
# shellcheck disable=SC2046,SC2086
"$cc" $cflags -o "$work/downstream_outbox_cc" "$downstream/outbox_main.c" \
      $(pkg-config --cflags --libs ackrpc-outbox) \
      -Wl,-rpath,"$(pkg-config --variable=libdir ackrpc-outbox)" \
  || fail "compile with pkg-config flags (ackrpc-outbox)"
run "$work/downstream_outbox_cc" "$work/outbox-cc.db"

step "all checks passed"
