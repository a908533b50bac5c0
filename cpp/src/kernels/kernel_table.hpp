// The dispatch table: one kernel family per instruction set, chosen once per process.
// ONNX Runtime's MLAS is the model (platform.cpp): each family's kernels are compiled in
// their own object library with their own flags (CMakeLists.txt, mlpinfer_kernels_<isa>),
// and fill one KernelTable; select_kernels() picks the best family this CPU runs, capped
// by MLPINFER_MAX_ISA, the first time the kernels are used. No hot path asks the CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../kernels.hpp"

namespace mlpinfer::kernels {

struct KernelTable {
  const char* isa;  // "avx512", "avx2", "baseline" (x86); "neon", "baseline" (ARM)
  // Whether the family's products use fused multiply-adds: every FMA family gives the
  // same bits (one FMA chain per output, in the same order over k); a family without
  // gives results within the reference tolerance of them.
  bool fused_multiply_add;
  // The widest tile panel (output columns) whose accumulators stay in this family's
  // registers: pack_panels and tile_gemm must be given this width.
  std::size_t tile_panel_width;

  // Each row of tile (rows x width, row-major) through the epilogue: + bias, the
  // activation and the LayerNorm. Contract: softmax, log_softmax and LayerNorm work on
  // each row; a NaN anywhere in such a row makes that whole row NaN and touches no
  // other row.
  void (*bias_activation)(float* tile, std::size_t rows, std::size_t width,
                          const Epilogue& epilogue);
  // bias_activation for a tile of `width` features (first `lanes` lanes), giving each
  // lane the bits bias_activation gives its row.
  void (*tile_bias_activation)(float* tile, std::size_t width, std::size_t lanes,
                               const Epilogue& epilogue);
  // C (m x n, ldc) = alpha * A (m x k, lda) * B (k x n, ldb = padded_columns(n)).
  // For the few-row products where a BLAS GEMM spends more time packing B than
  // multiplying. Contract: C does not alias A or B.
  void (*small_gemm)(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                     std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc,
                     const InputSelection& inputs);
  // small_gemm accumulating in double (B padded as for small_gemm), each element
  // rounded to float once; C's leading dimension is n.
  void (*small_gemm_double)(std::size_t m, std::size_t n, std::size_t k, float alpha,
                            const float* a, std::size_t lda, const float* b, std::size_t ldb,
                            float* c, const InputSelection& inputs);
  // out (outputs x kTileRows) = alpha * (in as rows) x W, for a tile `in` of `inputs`
  // features and W packed by pack_panels with max_width = tile_panel_width.
  void (*tile_gemm)(std::size_t inputs, const ActiveInputs& active, std::size_t outputs,
                    float alpha, const float* in, const float* panels, std::size_t max_width,
                    float* out, std::size_t lanes, RowPrefetch& prefetch);
  // tile_gemm accumulating in double over W as given (inputs x outputs, row-major),
  // with the same arithmetic per row as small_gemm_double.
  void (*tile_gemm_double)(const ActiveInputs& active, std::size_t outputs, float alpha,
                           const float* in, const float* weights, float* out, std::size_t lanes,
                           RowPrefetch& prefetch);
  // Writes the indices k < inputs, ascending, at which any of `rows` rows of `a`
  // (row-major, leading dimension lda) is nonzero (NaN included); returns how many.
  std::size_t (*nonzero_inputs)(const float* a, std::size_t rows, std::size_t lda,
                                std::size_t inputs, std::uint32_t* active);
  // The features of a tile (`inputs` of them) with a nonzero lane, as nonzero_inputs.
  std::size_t (*tile_nonzero_inputs)(const float* tile, std::size_t inputs, std::size_t lanes,
                                     std::uint32_t* active);
  // dst[r * cols + c] = element (r, c) of `src` converted to float.
  void (*gather_rows)(const InputView& src, std::size_t first_row, std::size_t rows, float* dst);
  // Rows first_row .. first_row + rows (rows <= lanes) of `src` as a float tile; lanes
  // from `rows` to `lanes` are zero. Writes the features with a nonzero lane to
  // nonzero[0..src.cols), as tile_nonzero_inputs would find them on the tile, and
  // returns how many; and sets lane_groups[g], for each whole lane group g that
  // tile_gemm computes at once (at most kMaxLaneGroups), to the features nonzero in some
  // lane of the group (in nonzero[(1 + g) * src.cols ..), or the tile's list for a lone
  // group). Found while loading: no second pass over the tile.
  std::size_t (*load_tile)(const InputView& src, std::size_t first_row, std::size_t rows,
                           std::size_t lanes, float* tile, std::uint32_t* nonzero,
                           ActiveInputs* lane_groups);
  // Each feature f of a tile (`width` features, first `rows` lanes) through an input
  // transform in place: (x * scale - shift[f]) * multiplier[f] in double, rounded to
  // float once; lanes `rows` to `lanes` are left zero. For a tile that load_tile filled
  // from float32 or uint8 input (each float the input element exactly), the bits of
  // transform_tile in input_transform.hpp.
  void (*transform_tile)(float* tile, std::size_t width, std::size_t rows, std::size_t lanes,
                         double scale, const double* shift, const double* multiplier);
  // The bits of each of `rows` rows of `a` (row-major, leading dimension lda) that are
  // nonzero, mask_words(inputs) words a row, for sparse_rows_gemm; and what a first
  // layer of `outputs` columns costs on either path.
  SparseRowsCost (*row_nonzero_masks)(const float* a, std::size_t rows, std::size_t lda,
                                      std::size_t inputs, std::size_t outputs,
                                      std::uint64_t* masks);
  // tile_gemm's product for `rows` rows of `a` (row-major, leading dimension lda) with
  // the columns in vector lanes, each row visiting only its nonzero inputs: out (outputs
  // x kTileRows) gets lane r = alpha * row r x W, with W padded as for small_gemm (ldb =
  // padded_columns(outputs)); lanes `rows` to `lanes` are zero. The bits of tile_gemm
  // for every lane. `masks`: the rows' masks as row_nonzero_masks writes them, or, if
  // not `masks_made`, room for them (rows x mask_words(inputs)), filled on the way.
  // `sums`: lanes x padded_columns(outputs) floats.
  void (*sparse_rows_gemm)(const float* a, std::size_t lda, std::size_t rows,
                           std::uint64_t* masks, bool masks_made, std::size_t inputs,
                           std::size_t outputs, float alpha, const float* b, std::size_t ldb,
                           float* out, std::size_t lanes, float* sums, RowPrefetch& prefetch);
};

// One function per family built for this architecture, each defined by family.cpp
// compiled in that family's object library (namespace = the family's ISA name).
#ifdef MLPINFER_FAMILY_AVX512_BUILT
namespace avx512 { const KernelTable& table(); }
#endif
#ifdef MLPINFER_FAMILY_AVX2_BUILT
namespace avx2 { const KernelTable& table(); }
#endif
#ifdef MLPINFER_FAMILY_NEON_BUILT
namespace neon { const KernelTable& table(); }
#endif
namespace baseline { const KernelTable& table(); }

// The family in use: chosen on first call (thread-safe), then fixed for the process.
// Throws std::invalid_argument if MLPINFER_MAX_ISA names no family of this build.
const KernelTable& active_kernels();

// The families this CPU can run, best first (always ending with "baseline").
std::vector<std::string> supported_isas();

// The family named `isa` if this build has it and this CPU runs it, else nullptr; for
// the micro-benchmark, which times every family in one process.
const KernelTable* find_kernels(const std::string& isa);

}  // namespace mlpinfer::kernels
