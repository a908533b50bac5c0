// What this CPU (and its operating system) can run, asked when the kernels are chosen
// and when cpu_info() lists the families (kernel_table.cpp); no hot path queries the CPU.
#pragma once

namespace mlpinfer::kernels {

struct CpuFeatures {
  bool avx2_fma = false;  // x86-64: AVX, AVX2, FMA, and the OS saves ymm state
  bool avx512 = false;    // x86-64: avx2_fma, AVX-512 F/DQ/BW/VL, and the OS saves zmm state
  bool neon = false;      // aarch64: AdvSIMD (every ARMv8-A CPU)
};

CpuFeatures detect_cpu_features();

}  // namespace mlpinfer::kernels
