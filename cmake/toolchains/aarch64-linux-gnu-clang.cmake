# Cross-compiling the core for 64-bit ARM Linux with Clang (>= 14): Clang's own code
# generator, with the headers, C++ library and start files of Debian's GCC cross
# toolchain (g++-aarch64-linux-gnu), linked by lld.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER clang)
set(CMAKE_CXX_COMPILER clang++)
set(CMAKE_C_COMPILER_TARGET aarch64-linux-gnu)
set(CMAKE_CXX_COMPILER_TARGET aarch64-linux-gnu)
set(CMAKE_EXE_LINKER_FLAGS_INIT -fuse-ld=lld)
set(CMAKE_SHARED_LINKER_FLAGS_INIT -fuse-ld=lld)
set(CMAKE_MODULE_LINKER_FLAGS_INIT -fuse-ld=lld)
include("${CMAKE_CURRENT_LIST_DIR}/aarch64-linux-gnu-common.cmake")
