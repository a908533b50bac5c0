// The AVX-512 family's primitives (AVX-512 F/DQ/BW/VL, FMA): 16 floats per vector, one
// zmm register each. Compiled only into mlpinfer_kernels_avx512, whose flags enable them.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../kernels.hpp"

#define MLPINFER_FAMILY avx512

namespace mlpinfer::kernels::avx512 {

constexpr std::size_t kLanes = 16;
constexpr bool kFusedMultiplyAdd = true;
// Tile panels: 12 columns x 2 vectors (32 rows) of accumulators and 2 input vectors use
// 26 of the 32 zmm registers; the double panels 6 columns x 4 vectors.
constexpr std::size_t kTileVectors = 2;
constexpr std::size_t kTilePanelWidth = 12;
constexpr std::size_t kTileDoublePanelWidth = 6;
// Row kernel: vectors of columns per panel for 1, 2 or 4 rows. A lone row is one FMA
// chain per vector, so it needs many vectors to hide the FMA latency; 4 rows x 4 vectors
// of accumulators and 4 weight vectors use 20 of the 32 zmm registers.
constexpr std::size_t row_vectors(std::size_t rows) { return rows == 1 ? 8 : rows == 2 ? 6 : 4; }
// sparse_rows_gemm's vector FMA against tile_gemm's (see simd_avx2.hpp): random rows
// reach the tile's speed at 35% nonzero with 0.42 of its FMAs (2.4); MNIST digits take
// 1.29x the tile's time row by row with 0.44 of its FMAs at 50 outputs (a row of 50
// outputs is 4 FMA chains, too few to hide their latency, where the tile has 24), and
// 1.22x with 0.33 at 512 (from memory, one thread, this Xeon). 4.0 keeps digits on tiles
// at every width measured (50, 100, 256, 512): the whole network 784-512-10 on the
// MNIST digits, 2 threads, took 39.4 ms on tiles and 45.6 ms with 3.0.
constexpr double kSparseRowFmaCost = 4.0;

typedef float Vec __attribute__((vector_size(64)));
typedef std::int32_t IntVec __attribute__((vector_size(64)));
typedef double DoubleVec __attribute__((vector_size(64)));

inline Vec load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec splat(float x) { return _mm512_set1_ps(x); }
// a * b + c with one rounding.
inline Vec mul_add(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline DoubleVec mul_add(DoubleVec a, DoubleVec b, DoubleVec c) { return _mm512_fmadd_pd(a, b, c); }
inline DoubleVec splat_double(double x) { return _mm512_set1_pd(x); }
// Widening by intrinsics, one VCVTPS2PD a half: GCC 12 turns __builtin_convertvector
// of 8 floats into two 128-bit conversions, an extract and an insert, however the half
// is taken (kernel_bench on this Xeon, Sapphire Rapids class: tile_gemm_double 100x10
// 52 -> 35-39 ns a row, small_gemm_double 100x10 one row 297-300 -> 147-156).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
// GCC 12's own avx512fintrin.h trips this (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
inline DoubleVec widen_low(Vec v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
inline DoubleVec widen_high(Vec v) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
typedef float HalfVec __attribute__((vector_size(32)));
// kLanes / 2 floats, each the double rounded once.
inline void store_narrowed(float* p, DoubleVec v) {
  const HalfVec narrowed = __builtin_convertvector(v, HalfVec);
  std::memcpy(p, &narrowed, sizeof narrowed);
}
// Whether any lane is nonzero (NaN counts: it must reach the sum).
inline bool any_nonzero(Vec v) {
  return _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ) != 0;
}

// kLanes consecutive elements of type T as floats.
template <typename T>
inline Vec load_converted(const unsigned char* address);

template <>
inline Vec load_converted<float>(const unsigned char* address) {
  return _mm512_loadu_ps(address);
}

// Two instructions (VPMOVZXBD, VCVTDQ2PS): GCC 12 converts bytes one lane at a time
// however portable code writes it, which made uint8 input 40% slower than float32.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
// GCC 12's own avx512fintrin.h trips this (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
template <>
inline Vec load_converted<std::uint8_t>(const unsigned char* address) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(address));
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

template <>
inline Vec load_converted<double>(const unsigned char* address) {
  DoubleVec low;
  DoubleVec high;
  std::memcpy(&low, address, sizeof low);
  std::memcpy(&high, address + sizeof low, sizeof high);
  return __builtin_shufflevector(__builtin_convertvector(low, HalfVec),
                                 __builtin_convertvector(high, HalfVec), 0, 1, 2, 3, 4, 5, 6, 7,
                                 8, 9, 10, 11, 12, 13, 14, 15);
}

// rows[r] holds features 0..15 of row r; writes feature f of the 16 rows to
// out + f * stride. Four rounds of two-source shuffles; after them rows[m] holds
// feature kFeatureOf[m].
inline void transpose_store(Vec (&rows)[kLanes], float* out, std::size_t stride) {
  Vec t[16];
  for (int i = 0; i < 8; ++i) {
    const Vec a = rows[2 * i];
    const Vec b = rows[2 * i + 1];
    t[2 * i] =
        __builtin_shufflevector(a, b, 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
    t[2 * i + 1] =
        __builtin_shufflevector(a, b, 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
  }
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 2; ++j) {
      const Vec a = t[4 * i + j];
      const Vec b = t[4 * i + j + 2];
      rows[4 * i + j] =
          __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
      rows[4 * i + j + 2] =
          __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
  }
  for (int i = 0; i < 2; ++i) {
    for (int q = 0; q < 4; ++q) {
      const Vec a = rows[8 * i + q];
      const Vec b = rows[8 * i + 4 + q];
      t[8 * i + q] =
          __builtin_shufflevector(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
      t[8 * i + 4 + q] =
          __builtin_shufflevector(a, b, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    }
  }
  for (int q = 0; q < 8; ++q) {
    rows[q] = __builtin_shufflevector(t[q], t[8 + q], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20,
                                      21, 22, 23);
    rows[8 + q] = __builtin_shufflevector(t[q], t[8 + q], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26,
                                          27, 28, 29, 30, 31);
  }
  constexpr std::size_t kFeatureOf[16] = {0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15};
  for (std::size_t m = 0; m < 16; ++m) store(out + kFeatureOf[m] * stride, rows[m]);
}

}  // namespace mlpinfer::kernels::avx512
