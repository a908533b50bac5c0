// The AVX2 family's primitives (AVX2 + FMA, x86-64-v3 CPUs without AVX-512): 8 floats
// per vector, one ymm register each. Compiled only into mlpinfer_kernels_avx2.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../kernels.hpp"

#define MLPINFER_FAMILY avx2

namespace mlpinfer::kernels::avx2 {

constexpr std::size_t kLanes = 8;
constexpr bool kFusedMultiplyAdd = true;
// AVX2 has 16 ymm registers. Tile panels: 6 columns x 2 vectors (16 rows) of
// accumulators, 2 input vectors and 1 broadcast weight make 15. The double panels:
// 2 columns x 4 vectors of 4 doubles, 4 inputs, 1 weight: 13.
constexpr std::size_t kTileVectors = 2;
constexpr std::size_t kTilePanelWidth = 6;
constexpr std::size_t kTileDoublePanelWidth = 2;
// Row kernel: vectors of columns per panel for 1, 2 or 4 rows. A lone row is one FMA
// chain per vector: 8 chains hide the FMA latency (784x50, one row: 2 vectors, 3.6 us;
// 8 vectors, see kernel_bench). 4 rows x 3 vectors of accumulators leave 4 registers
// for the weights and the broadcast input.
constexpr std::size_t row_vectors(std::size_t rows) { return rows == 1 ? 8 : rows == 2 ? 5 : 3; }
// sparse_rows_gemm's vector FMA against tile_gemm's: where a row's FMA costs the same
// time as this many of the tile's, either path is as fast (the first layer 784x50 on
// sparse inputs, from memory, one thread, this Xeon: random rows reach it at 60% nonzero
// with 0.68 of the tile's FMAs, digits with extra pixels at 50% with 0.66).
constexpr double kSparseRowFmaCost = 1.5;

typedef float Vec __attribute__((vector_size(32)));
typedef std::int32_t IntVec __attribute__((vector_size(32)));
typedef double DoubleVec __attribute__((vector_size(32)));

inline Vec load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec splat(float x) { return _mm256_set1_ps(x); }
inline Vec mul_add(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline DoubleVec mul_add(DoubleVec a, DoubleVec b, DoubleVec c) { return _mm256_fmadd_pd(a, b, c); }
inline DoubleVec splat_double(double x) { return _mm256_set1_pd(x); }
inline DoubleVec widen_low(Vec v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
inline DoubleVec widen_high(Vec v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
inline void store_narrowed(float* p, DoubleVec v) { _mm_storeu_ps(p, _mm256_cvtpd_ps(v)); }
inline bool any_nonzero(Vec v) {
  return _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ)) != 0;
}

template <typename T>
inline Vec load_converted(const unsigned char* address);

template <>
inline Vec load_converted<float>(const unsigned char* address) {
  return _mm256_loadu_ps(reinterpret_cast<const float*>(address));
}

template <>
inline Vec load_converted<std::uint8_t>(const unsigned char* address) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(address));
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
}

template <>
inline Vec load_converted<double>(const unsigned char* address) {
  const __m128 low = _mm256_cvtpd_ps(_mm256_loadu_pd(reinterpret_cast<const double*>(address)));
  const __m128 high =
      _mm256_cvtpd_ps(_mm256_loadu_pd(reinterpret_cast<const double*>(address + 32)));
  return _mm256_set_m128(high, low);
}

// rows[r] holds features 0..7 of row r; writes feature f of the 8 rows to out + f * stride.
inline void transpose_store(Vec (&rows)[kLanes], float* out, std::size_t stride) {
  __m256 t[8];
  __m256 s[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
  }
  // s[4 * h + j]: features j and j + 4 of rows 4h .. 4h + 3 (one per 128-bit half).
  for (int h = 0; h < 2; ++h) {
    s[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
    s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
  }
  for (std::size_t j = 0; j < 4; ++j) {
    _mm256_storeu_ps(out + j * stride, _mm256_permute2f128_ps(s[j], s[4 + j], 0x20));
    _mm256_storeu_ps(out + (j + 4) * stride, _mm256_permute2f128_ps(s[j], s[4 + j], 0x31));
  }
}

}  // namespace mlpinfer::kernels::avx2
