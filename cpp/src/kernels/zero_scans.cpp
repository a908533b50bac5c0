// Zero scans: which inputs a product must visit (see InputSelection in ../kernels.hpp).
// Branch-free: whether an input is zero is data, and a mispredicted branch per input
// would cost more than the FMAs it saves.
#include <algorithm>
#include <array>

#include "family_api.hpp"
#include "nonzero_lanes.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {

#if defined(MLPINFER_FAMILY_AVX512)
// 16 inputs per step: a mask of the nonzero ones, their indices compressed into place
// (VPCOMPRESSD), against a compare, a store and an add per input in the portable scan.
std::size_t nonzero_inputs(const float* a, std::size_t rows, std::size_t lda, std::size_t inputs,
                           std::uint32_t* active) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  std::size_t count = 0;
  for (std::size_t k = 0; k < inputs; k += 16) {
    const std::size_t left = inputs - k;
    const __mmask16 valid =
        left >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << left) - 1);
    __mmask16 nonzero = 0;
    for (std::size_t r = 0; r < rows; ++r) {
      // NEQ_UQ: NaN counts as nonzero, so that it reaches the sum.
      nonzero |= _mm512_mask_cmp_ps_mask(valid, _mm512_maskz_loadu_ps(valid, a + r * lda + k),
                                         _mm512_setzero_ps(), _CMP_NEQ_UQ);
    }
    const __m512i index = _mm512_add_epi32(lane, _mm512_set1_epi32(static_cast<int>(k)));
    const unsigned found = static_cast<unsigned>(__builtin_popcount(nonzero));
    _mm512_mask_storeu_epi32(active + count, static_cast<__mmask16>((1u << found) - 1),
                             _mm512_maskz_compress_epi32(nonzero, index));
    count += found;
  }
  return count;
}
#elif defined(MLPINFER_FAMILY_AVX2)
// packed_lanes[mask]: the lanes set in an 8-bit mask, ascending, one per byte.
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
constexpr std::array<std::uint64_t, 256> kPackedLanes = pack_table();

// 8 inputs per step: a mask of the nonzero ones (VCMPPS, VMOVMSKPS), their indices packed
// to the front from a table and stored masked: the portable scan took 673 ns for 784
// inputs of one row on this Xeon, a compare, a store and an add per input.
std::size_t nonzero_inputs(const float* a, std::size_t rows, std::size_t lda, std::size_t inputs,
                           std::uint32_t* active) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  std::size_t count = 0;
  for (std::size_t k = 0; k < inputs; k += 8) {
    const int left = static_cast<int>(std::min<std::size_t>(inputs - k, 8));
    const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);
    int nonzero = 0;
    for (std::size_t r = 0; r < rows; ++r) {
      // NEQ_UQ: NaN counts as nonzero, so that it reaches the sum.
      const __m256 x = _mm256_maskload_ps(a + r * lda + k, valid);
      nonzero |= _mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    }
    const __m256i packed = _mm256_add_epi32(
        _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(kPackedLanes[static_cast<unsigned>(nonzero)]))),
        _mm256_set1_epi32(static_cast<int>(k)));
    const int found = __builtin_popcount(static_cast<unsigned>(nonzero));
    _mm256_maskstore_epi32(reinterpret_cast<int*>(active + count),
                           _mm256_cmpgt_epi32(_mm256_set1_epi32(found), lane), packed);
    count += static_cast<std::size_t>(found);
  }
  return count;
}
#else
// The indices k < inputs at which any of `rows` rows, a[r * lda + k], is nonzero.
std::size_t nonzero_inputs(const float* a, std::size_t rows, std::size_t lda, std::size_t inputs,
                           std::uint32_t* active) {
  std::size_t count = 0;
  for (std::size_t k = 0; k < inputs; ++k) {
    bool nonzero = false;
    for (std::size_t r = 0; r < rows; ++r) nonzero |= a[r * lda + k] != 0.0f;
    active[count] = static_cast<std::uint32_t>(k);
    count += nonzero;
  }
  return count;
}
#endif

namespace {

// A feature's lanes are whole vectors: `Vectors` of them per feature.
template <std::size_t Vectors>
std::size_t nonzero_features(const float* tile, std::size_t inputs, std::uint32_t* active) {
  std::size_t count = 0;
  for (std::size_t k = 0; k < inputs; ++k) {
    active[count] = static_cast<std::uint32_t>(k);
    count += any_nonzero_lane<Vectors>(tile + k * kTileRows);
  }
  return count;
}

}  // namespace

std::size_t tile_nonzero_inputs(const float* tile, std::size_t inputs, std::size_t lanes,
                                std::uint32_t* active) {
  static_assert((kTileRows / 2) % kLanes == 0, "a half tile must be whole vectors");
  return lanes == kTileRows ? nonzero_features<kTileRows / kLanes>(tile, inputs, active)
                            : nonzero_features<kTileRows / 2 / kLanes>(tile, inputs, active);
}

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
