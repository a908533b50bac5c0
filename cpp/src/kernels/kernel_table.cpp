#include "kernel_table.hpp"

#include <cstdlib>
#include <stdexcept>

#include "cpu_features.hpp"

namespace mlpinfer::kernels {
namespace {

struct Family {
  const char* isa;
  bool runs_here;
  const KernelTable& (*table)();
};

// Every family built for this architecture, best first; MLPINFER_MAX_ISA names one of
// them and the choice starts there.
std::vector<Family> families() {
  const CpuFeatures cpu = detect_cpu_features();
  return {
#ifdef MLPINFER_FAMILY_AVX512_BUILT
      {"avx512", cpu.avx512, &avx512::table},
#endif
#ifdef MLPINFER_FAMILY_AVX2_BUILT
      {"avx2", cpu.avx2_fma, &avx2::table},
#endif
#ifdef MLPINFER_FAMILY_NEON_BUILT
      {"neon", cpu.neon, &neon::table},
#endif
      {"baseline", true, &baseline::table},
  };
}

const KernelTable& select_kernels() {
  const std::vector<Family> all = families();
  std::size_t first = 0;
  const char* cap = std::getenv("MLPINFER_MAX_ISA");
  if (cap != nullptr && *cap != '\0') {
    const std::string wanted = cap;
    std::string valid;
    first = all.size();
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (wanted == all[i].isa) first = i;
      valid += (i == 0 ? "" : ", ") + std::string(all[i].isa);
    }
    if (first == all.size()) {
      throw std::invalid_argument("MLPINFER_MAX_ISA is '" + wanted + "'; expected one of " +
                                  valid + " (or unset, for the best this CPU runs)");
    }
  }
  for (std::size_t i = first; i < all.size(); ++i) {
    if (all[i].runs_here) return all[i].table();
  }
  return baseline::table();
}

}  // namespace

const KernelTable& active_kernels() {
  static const KernelTable& chosen = select_kernels();
  return chosen;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> isas;
  for (const Family& family : families()) {
    if (family.runs_here) isas.emplace_back(family.isa);
  }
  return isas;
}

const KernelTable* find_kernels(const std::string& isa) {
  for (const Family& family : families()) {
    if (family.runs_here && isa == family.isa) return &family.table();
  }
  return nullptr;
}

}  // namespace mlpinfer::kernels
