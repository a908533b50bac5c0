# Cross-compiling the core for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu.
# Target libraries (OpenBLAS) come from Debian's multiarch packages for arm64
# (dpkg --add-architecture arm64; apt-get install libopenblas-dev:arm64), which the
# Debian cross compiler searches by default; scripts/cross_aarch64.sh does all of it
# and runs the tests under qemu-aarch64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
include("${CMAKE_CURRENT_LIST_DIR}/aarch64-linux-gnu-common.cmake")
