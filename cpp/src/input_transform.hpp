// Input rows converted through a Network's InputTransform (see network.hpp), for the
// row kernels (row-major) and the tile kernels (feature-major). Scalar double
// arithmetic, the same on every CPU and kernel family: the transform is a first-layer
// input's only rounding, so results stay bit-identical across ISAs, tiles and threads.
// Tiles of float32 and uint8 input, whose elements are exact as floats, take the
// family's loader and vector transform instead (KernelTable::transform_tile, the same
// bits); float64 tiles and all rows come here.
#pragma once

#include <cstddef>

#include "mlpinfer/network.hpp"

namespace mlpinfer {

// Throws std::invalid_argument unless `transform` is empty or has `width` finite
// shifts and multipliers.
void check_input_transform(const InputTransform& transform, std::size_t width);

// rows x src.cols floats, row-major, to dst: rows first_row .. first_row + rows.
void transform_rows(const InputView& src, float input_scale, const InputTransform& transform,
                    std::size_t first_row, std::size_t rows, float* dst);

// The same rows into a tile (tile[f * kernels::kTileRows + r]); lanes rows .. lanes
// are zeros, as kernels::load_tile leaves them.
void transform_tile(const InputView& src, float input_scale, const InputTransform& transform,
                    std::size_t first_row, std::size_t rows, std::size_t lanes, float* tile);

}  // namespace mlpinfer
