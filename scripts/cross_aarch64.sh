#!/usr/bin/env bash
# The core on 64-bit ARM without ARM hardware: cross-compiled for aarch64 with GCC and
# with Clang (cmake/toolchains), its C++ tests run under qemu-aarch64 with the NEON
# kernels chosen, and the output digest compared with the x86-64 FMA families'.
#
#   scripts/cross_aarch64.sh [--install] [--host-cxx CXX] [--compilers "gcc clang"]
#
# --install   installs what it needs from Debian's apt (root; Debian 12 names):
#             the cross compilers, qemu-user, and arm64 OpenBLAS and C++ runtime
#             through multiarch (dpkg --add-architecture arm64).
# --host-cxx  the compiler of the host (x86-64) build, default c++: its ctest runs, and
#             output_digest under each FMA family this CPU runs must agree; that digest
#             is what every aarch64 build must print under qemu.
# --compilers the aarch64 builds (cmake/toolchains/aarch64-linux-gnu-<name>.cmake).
# Needs cmake and ninja on PATH, and for the host build the scipy-openblas32 wheel in
# the active Python (as the package's own build does). Builds under build/cross-*.
# Timings under qemu say nothing about a real ARM core, so none are taken here.
set -euo pipefail
cd "$(dirname "$0")/.."

install=false
host_cxx=c++
compilers="gcc clang"
while [ $# -gt 0 ]; do
  case "$1" in
    --install) install=true ;;
    --compilers) compilers="$2"; shift ;;
    --host-cxx) host_cxx="$2"; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if $install; then
  dpkg --add-architecture arm64
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    g++-aarch64-linux-gnu clang lld qemu-user \
    libopenblas-dev:arm64 libstdc++6:arm64 > /dev/null
fi

# "<isa> <digest>" for each test of a ctest -V log that ran (a skipped test prints none):
# test_core prints the kernels in use, then the digest of its fixed cases
# (cpp/tests/output_digest.hpp).
digests() {
  sed -n 's/^[0-9]*: kernels in use: //p; s/^[0-9]*: output digest: //p' "$1" | paste -d' ' - -
}

# Every FMA family's digest must be the first one's; the baseline has no FMA and its own.
expected=""
check_digests() {  # log, label
  local isa this
  while read -r isa this; do
    echo "$2 $isa digest: $this"
    [ "$isa" = baseline ] && continue
    [ -n "$expected" ] || expected=$this
    if [ "$this" != "$expected" ]; then
      echo "FAILED: $2 $isa digest $this, the x86-64 FMA families' is $expected" >&2
      exit 1
    fi
  done < <(digests "$1")
}

# The host build first: its tests under each kernel family, and the reference digest.
CXX="$host_cxx" cmake -S . -B build/cross-host -G Ninja -DMLPINFER_BUILD_BINDINGS=OFF \
  -DMLPINFER_BUILD_TESTS=ON -DMLPINFER_WERROR=ON > /dev/null
cmake --build build/cross-host > /dev/null
(cd build/cross-host && ctest -V > ctest.log) || { cat build/cross-host/ctest.log; exit 1; }
check_digests build/cross-host/ctest.log "x86-64 ($host_cxx)"
[ -n "$expected" ] || { echo "FAILED: this CPU runs no x86-64 FMA family" >&2; exit 1; }

for compiler in $compilers; do
  build="build/cross-aarch64-$compiler"
  cmake -S . -B "$build" -G Ninja \
    --toolchain "cmake/toolchains/aarch64-linux-gnu-$compiler.cmake" \
    -DMLPINFER_BUILD_BINDINGS=OFF -DMLPINFER_BLAS=system -DMLPINFER_BUILD_TESTS=ON \
    -DMLPINFER_WERROR=ON > /dev/null
  cmake --build "$build" > /dev/null
  # ctest runs test_core through qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR): core_neon
  # with MLPINFER_MAX_ISA=neon, so the NEON kernels or a failure (test_core checks which
  # kernels it got); core_baseline too with GCC. Clang's build of test_core.cpp itself
  # (its naive double-precision reference), not of the core, runs 6x slower under qemu
  # (27 s against 4.4 s of CPU, each test object linked with the other compiler's core),
  # so with Clang only the NEON kernels are tested.
  tests="core_neon"
  [ "$compiler" = gcc ] && tests="core_"
  (cd "$build" && ctest -V -R "$tests" > ctest.log) || { cat "$build/ctest.log"; exit 1; }
  grep -q "^[0-9]*: kernels in use: neon" "$build/ctest.log" || {
    echo "FAILED: the NEON kernels did not run under qemu ($compiler)" >&2; exit 1; }
  check_digests "$build/ctest.log" "aarch64 ($compiler, qemu)"
done
echo "aarch64 NEON under qemu gives the x86-64 FMA families' digest, $expected"
