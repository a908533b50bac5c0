// The baseline family's primitives: portable GCC/Clang vector extensions of 4 floats
// (SSE2 on x86-64, AdvSIMD on aarch64), no FMA: what any CPU of the architecture runs.
// Without fused multiply-adds its results differ from the FMA families' in the last
// bits (within the reference tolerance); everything else is the same arithmetic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>  // every x86-64 CPU has SSE2
#endif

#include "../kernels.hpp"

#define MLPINFER_FAMILY baseline

namespace mlpinfer::kernels::baseline {

constexpr std::size_t kLanes = 4;
constexpr bool kFusedMultiplyAdd = false;
// 16 xmm registers (SSE2): tile panels of 6 columns x 2 vectors (8 rows), as AVX2.
constexpr std::size_t kTileVectors = 2;
constexpr std::size_t kTilePanelWidth = 6;
constexpr std::size_t kTileDoublePanelWidth = 2;
// Row kernel: vectors of columns per panel for 1, 2 or 4 rows. 4 rows x 3 vectors (as
// AVX2) spilled here (no memory operands without AVX). 4 x 2 does not spill, yet costs
// more per row than a lone row on inputs without zeros (784x50 on this Xeon, under load:
// 4,700-5,000 ns a row against 2,900; 2 x 4 the same as 4 x 2): left as measured, since
// the baseline runs few rows this way (a block's last 12 at most).
constexpr std::size_t row_vectors(std::size_t rows) { return rows == 1 ? 8 : rows == 2 ? 4 : 2; }
// sparse_rows_gemm's vector FMA against tile_gemm's (see simd_avx2.hpp): digits with
// extra pixels at 70% nonzero still run faster row by row (0.92 of the time, 0.79 of
// the FMAs).
constexpr double kSparseRowFmaCost = 1.2;

typedef float Vec __attribute__((vector_size(16)));
typedef std::int32_t IntVec __attribute__((vector_size(16)));
typedef double DoubleVec __attribute__((vector_size(16)));
typedef float Vec2 __attribute__((vector_size(8)));
typedef std::uint8_t Bytes4 __attribute__((vector_size(4)));

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);  // unaligned load
  return v;
}
inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }
// Not Vec{} + x, which would turn -0.0 into +0.0.
inline Vec splat(float x) { return Vec{x, x, x, x}; }
// Two roundings: this family has no FMA (see above).
inline Vec mul_add(Vec a, Vec b, Vec c) { return a * b + c; }
inline DoubleVec mul_add(DoubleVec a, DoubleVec b, DoubleVec c) { return a * b + c; }
inline DoubleVec splat_double(double x) { return DoubleVec{x, x}; }
// Conversions between float and double: on x86-64 with SSE2's CVTPS2PD and CVTPD2PS, which
// GCC 12 does not generate from __builtin_convertvector of 2-lane vectors (it converts
// lane by lane: -Wvector-operation-performance).
#if defined(__SSE2__)
inline DoubleVec widen_low(Vec v) { return _mm_cvtps_pd(v); }
inline DoubleVec widen_high(Vec v) { return _mm_cvtps_pd(_mm_movehl_ps(v, v)); }
inline void store_narrowed(float* p, DoubleVec v) {
  const __m128 narrowed = _mm_cvtpd_ps(v);
  std::memcpy(p, &narrowed, 2 * sizeof(float));
}
#else
inline DoubleVec widen_low(Vec v) {
  return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1), DoubleVec);
}
inline DoubleVec widen_high(Vec v) {
  return __builtin_convertvector(__builtin_shufflevector(v, v, 2, 3), DoubleVec);
}
inline void store_narrowed(float* p, DoubleVec v) {
  const Vec2 narrowed = __builtin_convertvector(v, Vec2);
  std::memcpy(p, &narrowed, sizeof narrowed);
}
#endif
inline bool any_nonzero(Vec v) {
#if defined(__SSE2__)
  // One MOVMSKPS instead of four lane extractions (784 features of a tile: 264 ns a row
  // with extractions on this Xeon; see kernel_bench).
  return _mm_movemask_ps(_mm_cmpneq_ps(v, _mm_setzero_ps())) != 0;  // NaN counts
#else
  const IntVec nonzero = v != 0.0f;  // NaN != 0: NaN counts
  return (nonzero[0] | nonzero[1] | nonzero[2] | nonzero[3]) != 0;
#endif
}

template <typename T>
inline Vec load_converted(const unsigned char* address);

template <>
inline Vec load_converted<float>(const unsigned char* address) {
  Vec v;
  std::memcpy(&v, address, sizeof v);
  return v;
}

template <>
inline Vec load_converted<std::uint8_t>(const unsigned char* address) {
#if defined(__SSE2__)
  // Zero-extended by two unpacks: GCC converts a byte vector one lane at a time (a tile
  // of uint8 digits loaded in 611 ns a row, float32 in 170, on this Xeon).
  std::int32_t bytes;
  std::memcpy(&bytes, address, sizeof bytes);
  const __m128i zero = _mm_setzero_si128();
  const __m128i words = _mm_unpacklo_epi8(_mm_cvtsi32_si128(bytes), zero);
  return _mm_cvtepi32_ps(_mm_unpacklo_epi16(words, zero));
#else
  Bytes4 bytes;
  std::memcpy(&bytes, address, sizeof bytes);
  return __builtin_convertvector(bytes, Vec);
#endif
}

template <>
inline Vec load_converted<double>(const unsigned char* address) {
  DoubleVec low;
  DoubleVec high;
  std::memcpy(&low, address, sizeof low);
  std::memcpy(&high, address + sizeof low, sizeof high);
  return __builtin_shufflevector(__builtin_convertvector(low, Vec2),
                                 __builtin_convertvector(high, Vec2), 0, 1, 2, 3);
}

// rows[r] holds features 0..3 of row r; writes feature f of the 4 rows to out + f * stride.
inline void transpose_store(Vec (&rows)[kLanes], float* out, std::size_t stride) {
  const Vec t0 = __builtin_shufflevector(rows[0], rows[1], 0, 4, 1, 5);
  const Vec t1 = __builtin_shufflevector(rows[0], rows[1], 2, 6, 3, 7);
  const Vec t2 = __builtin_shufflevector(rows[2], rows[3], 0, 4, 1, 5);
  const Vec t3 = __builtin_shufflevector(rows[2], rows[3], 2, 6, 3, 7);
  store(out, __builtin_shufflevector(t0, t2, 0, 1, 4, 5));
  store(out + stride, __builtin_shufflevector(t0, t2, 2, 3, 6, 7));
  store(out + 2 * stride, __builtin_shufflevector(t1, t3, 0, 1, 4, 5));
  store(out + 3 * stride, __builtin_shufflevector(t1, t3, 2, 3, 6, 7));
}

}  // namespace mlpinfer::kernels::baseline
