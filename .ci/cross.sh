#!/usr/bin/env bash
# CI for other compilers and CPUs (issue 12): the core built with Clang for this x86-64
# machine (ctest under each kernel family it runs), and cross-built for aarch64 with GCC
# and Clang, its tests run under qemu-aarch64 with the NEON kernels, whose output digest
# must equal the x86-64 FMA families'; then the whole package under qemu (0.9352, and
# x86-64's outputs bit for bit). Called from .ci/run with its virtual environment active
# (cmake, ninja, scipy-openblas32, pybind11, mlpinfer installed). On the 2-core Sapphire
# Rapids Xeon, shared with other jobs, apt packages already there: 108 s (1.7 min of
# CPU) in a quiet minute, 4.4 min at load 10.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
scripts/cross_aarch64.sh --install --host-cxx clang++
scripts/cross_aarch64_python.sh ../shared/data
echo "cross builds and qemu runs: $((SECONDS - start)) s"
