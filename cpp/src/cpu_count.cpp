#include "cpu_count.hpp"

#include <cstddef>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#elif defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX  // windows.h would otherwise define min and max as macros
#endif
#include <windows.h>
#endif

namespace mlpinfer {
namespace {

unsigned hardware_concurrency() {
  const unsigned count = std::thread::hardware_concurrency();  // 0 when unknown
  return count > 0 ? count : 1;
}

#if defined(__APPLE__)
// A sysctl integer, or 0 if this system has no such name.
unsigned sysctl_count(const char* name) {
  int value = 0;
  std::size_t size = sizeof value;
  if (sysctlbyname(name, &value, &size, nullptr, 0) != 0 || value <= 0) return 0;
  return static_cast<unsigned>(value);
}
#endif

}  // namespace

unsigned cpus_available() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return static_cast<unsigned>(count);
  }
#elif defined(__APPLE__)
  if (const unsigned performance = sysctl_count("hw.perflevel0.logicalcpu")) return performance;
  if (const unsigned logical = sysctl_count("hw.logicalcpu")) return logical;
#elif defined(_WIN32)
  const DWORD count = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
  if (count > 0) return static_cast<unsigned>(count);
#endif
  return hardware_concurrency();
}

}  // namespace mlpinfer
