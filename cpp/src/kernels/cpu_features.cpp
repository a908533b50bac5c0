#include "cpu_features.hpp"

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace mlpinfer::kernels {

#if defined(__x86_64__) || defined(_M_X64)
namespace {

struct CpuidRegisters {
  std::uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

// CPUID leaf/subleaf; all zero when the leaf is beyond what the CPU reports.
CpuidRegisters cpuid(std::uint32_t leaf, std::uint32_t subleaf) {
  CpuidRegisters r;
#if defined(_MSC_VER)
  int regs[4];
  __cpuid(regs, 0);
  if (static_cast<std::uint32_t>(regs[0]) < leaf) return r;
  __cpuidex(regs, static_cast<int>(leaf), static_cast<int>(subleaf));
  r = {static_cast<std::uint32_t>(regs[0]), static_cast<std::uint32_t>(regs[1]),
       static_cast<std::uint32_t>(regs[2]), static_cast<std::uint32_t>(regs[3])};
#else
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(leaf, subleaf, &a, &b, &c, &d) == 0) return r;
  r = {a, b, c, d};
#endif
  return r;
}

// XCR0: which register states the operating system saves on a context switch. A CPU
// with AVX-512 under an OS that does not save zmm registers must not use them.
std::uint64_t extended_control_register0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  std::uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
#endif
}

bool bit(std::uint32_t reg, int index) { return (reg >> index) & 1u; }

}  // namespace

CpuFeatures detect_cpu_features() {
  CpuFeatures features;
  const CpuidRegisters leaf1 = cpuid(1, 0);
  const bool fma = bit(leaf1.ecx, 12);
  const bool osxsave = bit(leaf1.ecx, 27);
  const bool avx = bit(leaf1.ecx, 28);
  if (!osxsave || !avx) return features;
  const std::uint64_t xcr0 = extended_control_register0();
  const bool ymm_saved = (xcr0 & 0x6) == 0x6;            // SSE and AVX state
  const bool zmm_saved = (xcr0 & 0xe6) == 0xe6;          // and opmask, ZMM_Hi256, Hi16_ZMM
  const CpuidRegisters leaf7 = cpuid(7, 0);
  const bool avx2 = bit(leaf7.ebx, 5);
  const bool avx512 = bit(leaf7.ebx, 16) && bit(leaf7.ebx, 17) &&  // F, DQ
                      bit(leaf7.ebx, 30) && bit(leaf7.ebx, 31);    // BW, VL
  features.avx2_fma = ymm_saved && avx && avx2 && fma;
  features.avx512 = features.avx2_fma && zmm_saved && avx512;
  return features;
}

#elif defined(__aarch64__) || defined(_M_ARM64)

// AdvSIMD is part of every ARMv8-A CPU and of the AArch64 ABI; the operating system is
// still asked, as for any optional feature (this is where SVE would be detected).
CpuFeatures detect_cpu_features() {
  CpuFeatures features;
#if defined(__linux__)
  features.neon = (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#elif defined(__APPLE__)
  int advsimd = 0;
  std::size_t size = sizeof advsimd;
  features.neon =
      sysctlbyname("hw.optional.AdvSIMD", &advsimd, &size, nullptr, 0) == 0 && advsimd != 0;
#else
  features.neon = true;
#endif
  return features;
}

#else

CpuFeatures detect_cpu_features() { return CpuFeatures{}; }

#endif

}  // namespace mlpinfer::kernels
