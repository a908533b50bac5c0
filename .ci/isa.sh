#!/usr/bin/env bash
# CI: the engine's exactness tests under every kernel family this CPU runs but does not
# choose by itself (the README's full test run covers the best one). Needs the package
# installed in the active environment. The core's C++ tests run per family in ctest
# (core_<isa>, see CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

families=$(python -c "import mlpinfer; print(' '.join(mlpinfer.cpu_info()['supported'][1:]))")
for isa in $families; do
  echo "engine tests with MLPINFER_MAX_ISA=$isa"
  MLPINFER_MAX_ISA=$isa python -m pytest -q -p no:cacheprovider \
    tests/test_engine.py tests/test_mnist.py tests/test_isa.py::test_cpu_info_reports_the_choice
done
