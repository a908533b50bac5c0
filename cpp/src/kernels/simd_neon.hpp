// The NEON family's primitives (AArch64 AdvSIMD, every ARMv8-A CPU): 4 floats per
// vector, one of the 32 128-bit v registers each, with a fused multiply-add (FMLA).
// Compiled only into mlpinfer_kernels_neon, on aarch64 targets.
//
// Same bits as the x86 FMA families: the shared kernels evaluate every output as one
// chain of mul_add over the inputs in ascending order, the kernel sources are built with
// -ffp-contract=off, and mul_add here is vfmaq_f32 (one rounding, as VFMADD231PS), so a
// chain does not depend on the vector width. Conversions (float <-> double, uint8 ->
// float) round to nearest as on x86. scripts/cross_aarch64.sh checks it: the digest that
// test_core prints under qemu equals the one of the x86 AVX2 and AVX-512 families.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../kernels.hpp"

#define MLPINFER_FAMILY neon

namespace mlpinfer::kernels::neon {

constexpr std::size_t kLanes = 4;
constexpr bool kFusedMultiplyAdd = true;
// Blocking for 32 registers (AVX2 has 16 and AVX-512 32 of 4x the width); chosen by
// register count, not timed: no ARM hardware was at hand, and qemu's timing says
// nothing about a real core.
// Tile panels: 6 columns x 4 vectors (16 rows) of accumulators = 24 registers, 4 input
// vectors, and each column's weight taken as a scalar operand of FMLA (by element), so
// a k step is 4 + 6 loads for 24 FMAs: enough independent chains for 2 FMA pipes of
// latency 4 (Neoverse N1/V1, Cortex-A76 class). 6 columns x 5 vectors would not fit.
constexpr std::size_t kTileVectors = 4;
constexpr std::size_t kTilePanelWidth = 6;
// Double panels: 2 columns x 8 vectors of 2 doubles = 16 accumulators and the 8
// widened inputs; a third column would need 32 for accumulators and inputs alone.
constexpr std::size_t kTileDoublePanelWidth = 2;
// Row kernel: vectors of columns per panel for 1, 2 or 4 rows. A lone row is one FMA
// chain per vector, 8 cover 2 pipes x latency 4; 2 rows x 8 and 4 rows x 5 keep the
// accumulators (16, 20), the weight vectors (8, 5) and the broadcast inputs in registers.
constexpr std::size_t row_vectors(std::size_t rows) { return rows == 4 ? 5 : 8; }
// sparse_rows_gemm's vector FMA against tile_gemm's (see simd_avx2.hpp): not measured
// on ARM hardware; AVX2's, whose row panels are as many FMA chains.
constexpr double kSparseRowFmaCost = 1.5;

typedef float Vec __attribute__((vector_size(16)));
typedef std::int32_t IntVec __attribute__((vector_size(16)));
typedef double DoubleVec __attribute__((vector_size(16)));

inline Vec load(const float* p) { return vld1q_f32(p); }
inline void store(float* p, Vec v) { vst1q_f32(p, v); }
inline Vec splat(float x) { return vdupq_n_f32(x); }  // keeps -0.0
// vfmaq(c, a, b) = c + a * b, rounded once.
inline Vec mul_add(Vec a, Vec b, Vec c) { return vfmaq_f32(c, a, b); }
inline DoubleVec mul_add(DoubleVec a, DoubleVec b, DoubleVec c) { return vfmaq_f64(c, a, b); }
inline DoubleVec splat_double(double x) { return vdupq_n_f64(x); }
inline DoubleVec widen_low(Vec v) { return vcvt_f64_f32(vget_low_f32(v)); }
inline DoubleVec widen_high(Vec v) { return vcvt_high_f64_f32(v); }
inline void store_narrowed(float* p, DoubleVec v) { vst1_f32(p, vcvt_f32_f64(v)); }
inline bool any_nonzero(Vec v) {
  // A lane equal to zero (+0.0 or -0.0) is all ones; NaN compares unequal, so it counts.
  return vminvq_u32(vceqzq_f32(v)) == 0;
}

template <typename T>
inline Vec load_converted(const unsigned char* address);

template <>
inline Vec load_converted<float>(const unsigned char* address) {
  return vld1q_f32(reinterpret_cast<const float*>(address));
}

template <>
inline Vec load_converted<std::uint8_t>(const unsigned char* address) {
  std::uint32_t bytes;
  std::memcpy(&bytes, address, sizeof bytes);  // 4 pixels, unaligned
  const uint16x8_t words = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(bytes)));
  return vcvtq_f32_u32(vmovl_u16(vget_low_u16(words)));
}

template <>
inline Vec load_converted<double>(const unsigned char* address) {
  const float64x2_t low = vld1q_f64(reinterpret_cast<const double*>(address));
  const float64x2_t high = vld1q_f64(reinterpret_cast<const double*>(address) + 2);
  return vcvt_high_f32_f64(vcvt_f32_f64(low), high);
}

// rows[r] holds features 0..3 of row r; writes feature f of the 4 rows to out + f * stride.
inline void transpose_store(Vec (&rows)[kLanes], float* out, std::size_t stride) {
  // t01_even = r0[0] r1[0] r0[2] r1[2], t01_odd = r0[1] r1[1] r0[3] r1[3], and so on;
  // then 64-bit halves pair them up.
  const float64x2_t t01_even = vreinterpretq_f64_f32(vtrn1q_f32(rows[0], rows[1]));
  const float64x2_t t01_odd = vreinterpretq_f64_f32(vtrn2q_f32(rows[0], rows[1]));
  const float64x2_t t23_even = vreinterpretq_f64_f32(vtrn1q_f32(rows[2], rows[3]));
  const float64x2_t t23_odd = vreinterpretq_f64_f32(vtrn2q_f32(rows[2], rows[3]));
  vst1q_f32(out, vreinterpretq_f32_f64(vtrn1q_f64(t01_even, t23_even)));
  vst1q_f32(out + stride, vreinterpretq_f32_f64(vtrn1q_f64(t01_odd, t23_odd)));
  vst1q_f32(out + 2 * stride, vreinterpretq_f32_f64(vtrn2q_f64(t01_even, t23_even)));
  vst1q_f32(out + 3 * stride, vreinterpretq_f32_f64(vtrn2q_f64(t01_odd, t23_odd)));
}

}  // namespace mlpinfer::kernels::neon
