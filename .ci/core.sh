#!/usr/bin/env bash
# CI: the core's own C++ tests, built by plain CMake against the same pinned OpenBLAS.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q cmake ninja pybind11 "scipy-openblas32==0.3.34.481.3"
cmake -S . -B build/ci-core -G Ninja -DMLPINFER_BUILD_TESTS=ON \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" > /dev/null
cmake --build build/ci-core --target test_core > /dev/null
(cd build/ci-core && ctest --output-on-failure)
