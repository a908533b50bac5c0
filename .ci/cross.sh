#!/usr/bin/env bash
# CI for other compilers and CPUs (issue 12): the core built with Clang for this x86-64
# machine (ctest under each kernel family it runs), and cross-built for aarch64 with GCC
# and Clang, its tests run under qemu-aarch64 with the NEON kernels, whose output digest
# must equal the x86-64 FMA families'; then the whole package under qemu (0.9352, and
# x86-64's outputs bit for bit), cross-built from source and as the manylinux_2_28_aarch64
# wheel (scripts/build_wheels.sh --arch aarch64) installed with pip. Called from .ci/run
# with its virtual environment active (cmake, ninja, scipy-openblas32, pybind11, mlpinfer
# installed). On the 2-core Sapphire Rapids Xeon, shared with other jobs, apt packages
# already there: 108 s (1.7 min of CPU) in a quiet minute, 4.4 min at load 10, before the
# wheel; with it 186 s at load 3, of which the wheel's steps 87 s (its build with Zig's
# cache empty, the qemu check and 180 engine tests).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
scripts/cross_aarch64.sh --install --host-cxx clang++
scripts/cross_aarch64_python.sh ../shared/data
wheel_start=$SECONDS
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
scripts/build_wheels.sh --arch aarch64 "$wheels"
scripts/cross_aarch64_python.sh --wheel "$(ls "$wheels"/mlpinfer-*-manylinux_2_28_aarch64.whl)" \
  ../shared/data
echo "cross builds and qemu runs: $((SECONDS - start)) s, of which the aarch64 wheel" \
  "$((SECONDS - wheel_start)) s"
