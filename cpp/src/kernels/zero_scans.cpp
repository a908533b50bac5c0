// Zero scans: which inputs a product must visit (see InputSelection in ../kernels.hpp).
// Branch-free: whether an input is zero is data, and a mispredicted branch per input
// would cost more than the FMAs it saves.
#include "family_api.hpp"

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

// A feature's lanes are whole vectors: one any_nonzero per vector.
std::size_t tile_nonzero_inputs(const float* tile, std::size_t inputs, std::size_t lanes,
                                std::uint32_t* active) {
  std::size_t count = 0;
  for (std::size_t k = 0; k < inputs; ++k) {
    const float* feature = tile + k * kTileRows;
    bool nonzero = false;
    for (std::size_t lane = 0; lane < lanes; lane += kLanes) {
      nonzero |= any_nonzero(load(feature + lane));
    }
    active[count] = static_cast<std::uint32_t>(k);
    count += nonzero;
  }
  return count;
}

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
