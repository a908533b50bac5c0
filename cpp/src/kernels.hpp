// Epilogues applied to a GEMM output tile while it is still in cache.
#pragma once

#include <cstddef>

#include "mlpinfer/network.hpp"

namespace mlpinfer::kernels {

// tile[r * width + c] = activation(tile[r * width + c] + bias[c]) for rows x width.
// Contract: softmax normalises each row; a NaN anywhere in a row makes that whole
// row NaN and touches no other row.
void bias_activation(float* tile, std::size_t rows, std::size_t width, const float* bias,
                     Activation activation);

// dst[r * cols + c] = element (r, c) of `src` converted to float.
void gather_rows(const InputView& src, std::size_t first_row, std::size_t rows, float* dst);

}  // namespace mlpinfer::kernels
