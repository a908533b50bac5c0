#!/usr/bin/env bash
# The whole Python package on 64-bit ARM under qemu-aarch64: Debian's arm64 Python and
# NumPy unpacked into a sysroot (never installed on the host), and mlpinfer either
# from source (the extension _core cross-built with GCC from the same CMakeLists.txt and
# sources that pip builds, python/mlpinfer beside it) or from a manylinux aarch64 wheel
# (scripts/build_wheels.sh --arch aarch64), installed with pip as a user would. Then the
# textbook check (scripts/aarch64_package_check.py) runs there with the NEON kernels and
# natively under this CPU's best FMA family: the accuracy must be 0.9352 and the outputs'
# SHA-256 the same on both.
#
#   scripts/cross_aarch64_python.sh [--wheel WHEEL] DATA_DIR
#
# Needs what scripts/cross_aarch64.sh --install installs (arm64 apt lists, cross GCC,
# qemu-user), and the active Python: the same minor version as Debian's arm64 python3
# (3.11 on Debian 12), with mlpinfer installed, and without --wheel cmake, ninja and
# pybind11. Builds under build/cross-aarch64-python (--wheel: build/cross-aarch64-wheel).
set -euo pipefail
wheel=""
if [ $# -eq 3 ] && [ "$1" = --wheel ]; then
  wheel=$(realpath "$2")
  shift 2
fi
if [ $# -ne 1 ]; then
  echo "usage: $0 [--wheel WHEEL] DATA_DIR" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
data=$(realpath "$1")
work="$PWD/build/cross-aarch64-python"
[ -n "$wheel" ] && work="$PWD/build/cross-aarch64-wheel"
sysroot="$work/sysroot"

python_version=$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$python_version" != 3.11 ]; then
  echo "FAILED: the arm64 sysroot has Debian 12's Python 3.11, this Python is $python_version" >&2
  exit 1
fi

rm -rf "$work" && mkdir -p "$work/debs" "$sysroot"
(cd "$work/debs" && apt-get download -q \
  python3.11-minimal:arm64 libpython3.11-minimal:arm64 libpython3.11-stdlib:arm64 \
  libpython3.11-dev:arm64 python3.11-dev:arm64 python3-numpy:arm64 \
  libc6:arm64 libstdc++6:arm64 libgcc-s1:arm64 libgfortran5:arm64 \
  libopenblas0-pthread:arm64 libblas3:arm64 liblapack3:arm64 \
  libexpat1:arm64 zlib1g:arm64 libffi8:arm64 libbz2-1.0:arm64 liblzma5:arm64 \
  libcrypt1:arm64 libuuid1:arm64 libssl3:arm64 libsqlite3-0:arm64 libncursesw6:arm64 \
  libtinfo6:arm64 libreadline8:arm64 libdb5.3:arm64 libnsl2:arm64 libtirpc3:arm64 > /dev/null)
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$sysroot"; done
# What update-alternatives would link on an arm64 system.
lib="$sysroot/usr/lib/aarch64-linux-gnu"
ln -sf openblas-pthread/libblas.so.3 "$lib/libblas.so.3"
ln -sf openblas-pthread/liblapack.so.3 "$lib/liblapack.so.3"
ln -sf openblas-pthread/libopenblas.so.0 "$lib/libopenblas.so.0"

if [ -n "$wheel" ]; then
  # What pip does on an arm64 machine, NumPy aside (Debian's, in the sysroot).
  python -m pip install -q --no-deps --target "$work/site" --platform manylinux_2_28_aarch64 \
    --python-version 3.11 --only-binary=:all: "$wheel"
else
  # The extension: the arm64 Python's headers (pyconfig.h includes its multiarch half,
  # hence -idirafter), the host interpreter for pybind11's configuration only.
  cmake -S . -B "$work/build" -G Ninja --toolchain cmake/toolchains/aarch64-linux-gnu-gcc.cmake \
    -DMLPINFER_BLAS=system -DPython_EXECUTABLE="$(command -v python)" \
    -DPython_INCLUDE_DIR="$sysroot/usr/include/python3.11" \
    -DCMAKE_CXX_FLAGS="-idirafter $sysroot/usr/include" \
    -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" > /dev/null
  cmake --build "$work/build" --target _core > /dev/null
  mkdir -p "$work/site"
  cp -r python/mlpinfer "$work/site/"
  # Named for the arm64 interpreter (CMake took the suffix from the host's).
  cp "$work"/build/_core.*.so "$work/site/mlpinfer/_core.cpython-311-aarch64-linux-gnu.so"
fi

native=$(python scripts/aarch64_package_check.py "$data")
emulated=$(qemu-aarch64 -L "$sysroot" -E PYTHONPATH="$work/site" "$sysroot/usr/bin/python3.11" \
  scripts/aarch64_package_check.py "$data")
echo "x86-64: $(tr '\n' ' ' <<< "$native")"
echo "aarch64 (qemu): $(tr '\n' ' ' <<< "$emulated")"
grep -qx "kernels neon" <<< "$emulated" || { echo "FAILED: not the NEON kernels" >&2; exit 1; }
grep -qx "accuracy 0.9352" <<< "$emulated" || { echo "FAILED: accuracy" >&2; exit 1; }
if [ "$(grep '^outputs' <<< "$native")" != "$(grep '^outputs' <<< "$emulated")" ]; then
  echo "FAILED: the NEON outputs differ from x86-64's" >&2
  exit 1
fi
case "$(grep '^kernels' <<< "$native")" in
  "kernels avx512" | "kernels avx2") ;;
  *) echo "FAILED: the x86-64 side ran no FMA family" >&2; exit 1 ;;
esac
echo "the package under qemu (NEON${wheel:+, from $(basename "$wheel")}) gives 0.9352 and" \
  "x86-64's outputs bit for bit"
[ -n "$wheel" ] || exit 0

# The installed wheel against the NumPy reference at awkward sizes (widths 1, 50, 513;
# batches 0, 1, 7; every activation pair: 180 cases, 14 s under qemu at load 3 on the
# 2-core Sapphire Rapids Xeon), with pytest and hypothesis (pure Python) beside it. All
# of tests/test_engine.py passes there too (324 cases) but takes 10.5 min; tests that
# start a Python subprocess (test_isa.py) cannot run, as qemu-user without binfmt_misc
# cannot exec an arm64 program.
python -m pip install -q --target "$work/test-tools" --platform manylinux_2_28_aarch64 \
  --python-version 3.11 --only-binary=:all: pytest hypothesis
qemu-aarch64 -L "$sysroot" -E PYTHONPATH="$work/site:$work/test-tools" \
  "$sysroot/usr/bin/python3.11" -m pytest -q -p no:cacheprovider tests/test_engine.py \
  -k "awkward_sizes and not 10000"
