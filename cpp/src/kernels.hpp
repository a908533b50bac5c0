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

// Columns of B are read in panels of up to kPanelWidth; B's leading dimension must be
// a multiple of kPadColumns with zeros beyond column n, so that every panel is whole.
constexpr std::size_t kPadColumns = 16;
constexpr std::size_t kPanelWidth = 64;

constexpr std::size_t padded_columns(std::size_t n) {
  return (n + kPadColumns - 1) / kPadColumns * kPadColumns;
}

// C (m x n, ldc) = alpha * A (m x k, lda) * B (k x n, ldb = padded_columns(n)).
// For the few-row products where a BLAS GEMM spends more time packing B than
// multiplying. Contract: C does not alias A or B.
void small_gemm(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc);

// dst[r * cols + c] = element (r, c) of `src` converted to float.
void gather_rows(const InputView& src, std::size_t first_row, std::size_t rows, float* dst);

}  // namespace mlpinfer::kernels
