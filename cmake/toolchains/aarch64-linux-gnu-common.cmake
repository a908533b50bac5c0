# Shared by the aarch64-linux-gnu toolchain files: where target libraries live, and how
# to run target programs (ctest, try_run) on an x86 host.
# Debian's multiarch layout: arm64 libraries under /usr/lib/aarch64-linux-gnu, the C
# library of the cross toolchain under /usr/aarch64-linux-gnu. Neither is a sysroot of
# its own, so the search stays on the host root but never picks host programs.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# ctest runs the test programs through qemu (Debian's qemu-user) on the multiarch root:
# the dynamic loader /lib/ld-linux-aarch64.so.1 and the C library both from libc6:arm64.
# Not "-L /usr/aarch64-linux-gnu": that takes the loader from the cross toolchain's
# glibc build and libc.so.6 from libc6:arm64 (through the host's ld.so.cache), whose
# private loader data differ, and pthread_create then loops forever (seen with glibc
# 2.36-8cross1 against 2.36-9+deb12u14: every program that starts a thread hangs).
find_program(MLPINFER_QEMU_AARCH64 qemu-aarch64)
if(MLPINFER_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${MLPINFER_QEMU_AARCH64}")
endif()
