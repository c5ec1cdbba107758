#!/usr/bin/env bash
# Installs every Debian 12 package ackrpc needs to build, test, fuzz and run
# its demo. Run as root (or with sudo available) on a fresh machine; running
# it again is harmless (apt-get install skips what is already installed).
set -euo pipefail

packages=(
  # toolchain and build
  build-essential binutils cmake pkg-config git ca-certificates
  # protobuf: protobuf-c runtime + protoc-c, protoc and the .proto files of
  # the well-known types (libprotobuf-dev), Python protobuf for the interop
  # tests
  libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler
  python3 python3-protobuf
  # libevent 2.1 (libevent_core)
  libevent-dev
  # xxHash's header: the request digest of strict call ids (compiled in,
  # XXH_INLINE_ALL, so nothing more is linked)
  libxxhash-dev
  # tests: Criterion, valgrind; clang with its runtimes for libFuzzer targets
  libcriterion-dev valgrind clang libclang-rt-dev
  scdoc  # man pages of the ackrpc tool (the build skips them without it)
  systemd  # systemd-socket-activate, for the socket-activation test (tests/ops)
  tshark   # reads ackrpc captures with tools/wireshark/ackrpc.lua (tests/cli)
  # needed by later features
  libjansson-dev libsqlite3-dev
  # the NATS bridge (issue 16, docs/SCALE.md): the C client and the server
  # its tests start
  libnats-dev nats-server
  # the NATS TLS test makes its CA and certificates with the openssl command
  openssl
)

run_as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: run as root (or install sudo)" >&2; exit 1; }
  run_as_root=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
echo "deps.sh: apt-get update"
"${run_as_root[@]}" apt-get update -q
echo "deps.sh: apt-get install ${packages[*]}"
"${run_as_root[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
echo "deps.sh: done"
