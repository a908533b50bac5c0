// The tests the zero scans make (zero_scans.cpp, input_loaders.cpp, tile_kernels.cpp):
// which inputs are nonzero in some lane, and the list of their indices.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "simd.hpp"
#include "vector_math.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {

// Whether any lane of the `Vectors` vectors at p (kLanes floats apart) is nonzero, NaN
// included. Their bits are ORed first and compared once: a lane of the OR is +-0 only
// where the lane is +-0 in every vector, and a NaN or any other nonzero value leaves a
// bit below the sign set. One compare per vector instead made the scans of a 32-row
// tile on AVX2 about 11% of the whole network's time on inputs without zeros (Intel
// Xeon, Sapphire Rapids class, perf: 5% the tile's scan, 8% of tile_gemm its groups').
template <std::size_t Vectors>
inline bool any_nonzero_lane(const float* p) {
  IntVec bits = to_bits(load(p));
  for (std::size_t v = 1; v < Vectors; ++v) bits |= to_bits(load(p + kLanes * v));
  return any_nonzero(from_bits(bits));
}

// Bit j set: lane j of v is nonzero (NaN included; +-0 is zero).
inline unsigned nonzero_lane_mask(Vec v) {
#if defined(MLPINFER_FAMILY_AVX512)
  return _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
#elif defined(MLPINFER_FAMILY_AVX2)
  return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ)));
#elif defined(MLPINFER_FAMILY_BASELINE) && defined(__SSE2__)
  return static_cast<unsigned>(_mm_movemask_ps(_mm_cmpneq_ps(v, _mm_setzero_ps())));
#else
  unsigned mask = 0;  // NaN != 0: NaN counts
  for (std::size_t j = 0; j < kLanes; ++j) mask |= static_cast<unsigned>(v[j] != 0.0f) << j;
  return mask;
#endif
}

#if defined(MLPINFER_FAMILY_AVX2)
// kPackedLanes[mask]: the lanes set in an 8-bit mask, ascending, one per byte.
constexpr std::array<std::uint64_t, 256> pack_table() {
  std::array<std::uint64_t, 256> table{};
  for (unsigned mask = 0; mask < 256; ++mask) {
    unsigned found = 0;
    for (unsigned lane = 0; lane < 8; ++lane) {
      if (mask & (1u << lane)) table[mask] |= std::uint64_t{lane} << (8 * found++);
    }
  }
  return table;
}
inline constexpr std::array<std::uint64_t, 256> kPackedLanes = pack_table();
#endif

// Writes first + j for each bit j of `mask` (j < kLanes), ascending, to active[0..);
// returns how many. Branch-free: whether an input is zero is data. May write anywhere
// in active[0..kLanes): the caller's list must have room for a whole vector of lanes.
inline std::size_t append_lanes(unsigned mask, std::uint32_t first, std::uint32_t* active) {
  const unsigned found = static_cast<unsigned>(__builtin_popcount(mask));
#if defined(MLPINFER_FAMILY_AVX512)
  // VPCOMPRESSD: the indices of the set lanes, packed to the front.
  const __m512i index = _mm512_add_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(static_cast<int>(first)));
  _mm512_mask_storeu_epi32(active, static_cast<__mmask16>((1u << found) - 1),
                           _mm512_maskz_compress_epi32(static_cast<__mmask16>(mask), index));
#elif defined(MLPINFER_FAMILY_AVX2)
  // The set lanes packed to the front from a table, stored masked.
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i packed = _mm256_add_epi32(
      _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(kPackedLanes[mask]))),
      _mm256_set1_epi32(static_cast<int>(first)));
  _mm256_maskstore_epi32(reinterpret_cast<int*>(active),
                         _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(found)), lane),
                         packed);
#else
  std::size_t count = 0;
  for (std::size_t j = 0; j < kLanes; ++j) {
    active[count] = first + static_cast<std::uint32_t>(j);
    count += (mask >> j) & 1u;
  }
#endif
  return found;
}

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
