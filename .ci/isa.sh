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

# On a CPU with AVX-512, the whole suite once more on an emulated AVX2-only CPU (every
# library in the process sees no AVX-512: hide-avx512.so, README "Kernels per CPU"), where
# mlpinfer chooses avx2 by itself: what a Zen 3 CI machine would run. Skipped where AVX-512
# cannot be hidden (an AVX2-only CPU runs the README's test command as it is). pytest's
# faulthandler would take each trapped CPUID for a crash, hence -p no:faulthandler. On the
# 2-core Sapphire Rapids Xeon: 126 s in CI (2,165 tests, the framework tests included).
library=$(python -c "from mlpinfer._cpu import avx512_can_be_hidden, hiding_library
print(hiding_library() if avx512_can_be_hidden() else '')")
if [ -n "$library" ]; then
  echo "the whole test suite on an emulated AVX2-only CPU (LD_PRELOAD=$library)"
  LD_PRELOAD="$library" python -m pytest -q -p no:cacheprovider -p no:faulthandler
fi
