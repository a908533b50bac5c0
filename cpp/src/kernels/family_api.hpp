// What every kernel family implements, declared in the namespace of the family this
// translation unit is compiled for (see simd.hpp). The shared sources (epilogues.cpp,
// row_kernels.cpp, tile_kernels.cpp, sparse_rows.cpp, zero_scans.cpp, input_loaders.cpp)
// define these once per family; family.cpp puts them in the family's KernelTable.
// Contracts: as the functions of the same names in ../kernels.hpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../kernels.hpp"
#include "simd.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {

// The lanes of a tile that tile_gemm computes at once (kTileVectors vectors); a half
// tile on AVX-512 is one vector.
constexpr std::size_t kGroupLanes = kTileVectors * kLanes;
static_assert(kTileRows % kGroupLanes == 0 && kTileRows / kGroupLanes <= kMaxLaneGroups &&
                  (kTileRows / 2) % kLanes == 0,
              "tiles and half tiles must be whole vectors and at most kMaxLaneGroups groups");

void bias_activation(float* tile, std::size_t rows, std::size_t width, const Epilogue& epilogue);
void tile_bias_activation(float* tile, std::size_t width, std::size_t lanes,
                          const Epilogue& epilogue);
void small_gemm(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc,
                const InputSelection& inputs);
void small_gemm_double(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                       std::size_t lda, const float* b, std::size_t ldb, float* c,
                       const InputSelection& inputs);
void tile_gemm(std::size_t inputs, const ActiveInputs& active, std::size_t outputs, float alpha,
               const float* in, const float* panels, std::size_t max_width, float* out,
               std::size_t lanes, RowPrefetch& prefetch);
void tile_gemm_double(const ActiveInputs& active, std::size_t outputs, float alpha,
                      const float* in, const float* weights, float* out, std::size_t lanes,
                      RowPrefetch& prefetch);
std::size_t nonzero_inputs(const float* a, std::size_t rows, std::size_t lda, std::size_t inputs,
                           std::uint32_t* active);
std::size_t tile_nonzero_inputs(const float* tile, std::size_t inputs, std::size_t lanes,
                                std::uint32_t* active);
void gather_rows(const InputView& src, std::size_t first_row, std::size_t rows, float* dst);
std::size_t load_tile(const InputView& src, std::size_t first_row, std::size_t rows,
                      std::size_t lanes, float* tile, std::uint32_t* nonzero,
                      ActiveInputs* lane_groups);
SparseRowsCost row_nonzero_masks(const float* a, std::size_t rows, std::size_t lda,
                                 std::size_t inputs, std::size_t outputs, std::uint64_t* masks);
void sparse_rows_gemm(const float* a, std::size_t lda, std::size_t rows, std::uint64_t* masks,
                      bool masks_made, std::size_t inputs, std::size_t outputs, float alpha,
                      const float* b, std::size_t ldb, float* out, std::size_t lanes,
                      float* sums, RowPrefetch& prefetch);
void transform_tile(float* tile, std::size_t width, std::size_t rows, std::size_t lanes,
                    double scale, const double* shift, const double* multiplier);

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
