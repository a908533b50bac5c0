// The test the zero scans make (zero_scans.cpp for a tile, tile_kernels.cpp for each lane
// group of it): whether an input is nonzero in any lane of some vectors of a feature.
#pragma once

#include <cstddef>

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

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
