// Zero scans: which inputs a product must visit (see InputSelection in ../kernels.hpp).
// Branch-free: whether an input is zero is data, and a mispredicted branch per input
// would cost more than the FMAs it saves.
#include <algorithm>

#include "family_api.hpp"
#include "nonzero_lanes.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {

#if defined(MLPINFER_FAMILY_AVX512)
// 16 inputs per step: a mask of the nonzero ones, their indices compressed into place
// (append_lanes), against a compare, a store and an add per input in the portable scan.
std::size_t nonzero_inputs(const float* a, std::size_t rows, std::size_t lda, std::size_t inputs,
                           std::uint32_t* active) {
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
    count += append_lanes(nonzero, static_cast<std::uint32_t>(k), active + count);
  }
  return count;
}
#elif defined(MLPINFER_FAMILY_AVX2)
// 8 inputs per step: a mask of the nonzero ones (VCMPPS, VMOVMSKPS), their indices packed
// to the front (append_lanes): the portable scan took 673 ns for 784 inputs of one row on
// this Xeon, a compare, a store and an add per input.
std::size_t nonzero_inputs(const float* a, std::size_t rows, std::size_t lda, std::size_t inputs,
                           std::uint32_t* active) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  std::size_t count = 0;
  for (std::size_t k = 0; k < inputs; k += 8) {
    const int left = static_cast<int>(std::min<std::size_t>(inputs - k, 8));
    const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);
    unsigned nonzero = 0;
    for (std::size_t r = 0; r < rows; ++r) {
      nonzero |= nonzero_lane_mask(_mm256_maskload_ps(a + r * lda + k, valid));
    }
    count += append_lanes(nonzero, static_cast<std::uint32_t>(k), active + count);
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
