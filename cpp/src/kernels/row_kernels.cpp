// Row kernels: few-row products with the output columns in vector lanes, for the rows
// that do not fill a tile (and for networks too wide to tile), where a BLAS GEMM spends
// more time packing B than multiplying. Each output is one FMA chain over the visited
// inputs in ascending order, as in tile_kernels.cpp: a row's bits do not depend on the
// kernel, the vector width or the family (among FMA families).
#include <algorithm>
#include <cstring>

#include "family_api.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {
namespace {

constexpr std::size_t kRowRows = 4;
static_assert(kPadColumns % kLanes == 0, "B's padding must hold whole vectors");

// Rows x (kLanes * Vectors) of C: the accumulators stay in registers for the whole k
// loop, so each element of B is loaded once per `Rows` rows and feeds `Rows` FMAs.
template <std::size_t Rows, std::size_t Vectors>
void panel(const ActiveInputs& active, float alpha, const float* a, std::size_t lda,
           const float* b, std::size_t ldb, float* c, std::size_t ldc, std::size_t valid) {
  Vec acc[Rows][Vectors];
  for (std::size_t r = 0; r < Rows; ++r) {
    for (std::size_t v = 0; v < Vectors; ++v) acc[r][v] = splat(0.0f);
  }
  for (std::size_t i = 0; i < active.count; ++i) {
    const std::size_t k = active.index[i];
    const float* row = b + k * ldb;
    Vec w[Vectors];
    for (std::size_t v = 0; v < Vectors; ++v) w[v] = load(row + kLanes * v);
    for (std::size_t r = 0; r < Rows; ++r) {
      const Vec x = splat(a[r * lda + k]);
      for (std::size_t v = 0; v < Vectors; ++v) acc[r][v] = mul_add(w[v], x, acc[r][v]);
    }
  }
  const Vec scale = splat(alpha);
  // Unrolled, so that acc is only indexed by constants and stays in registers: GCC 12
  // for aarch64 kept this loop, and so stored every accumulator on every k step.
#pragma GCC unroll 4
  for (std::size_t r = 0; r < Rows; ++r) {
    float out[kLanes * Vectors];
    for (std::size_t v = 0; v < Vectors; ++v) {
      store(out + kLanes * v, (acc[r][v] + 0.0f) * scale);  // + 0.0f: see InputSelection
    }
    std::memcpy(c + r * ldc, out, valid * sizeof(float));
  }
}

// The inputs that rows of `a` need visited (see InputSelection).
ActiveInputs select_inputs(const float* a, std::size_t rows, std::size_t lda, std::size_t k,
                           const InputSelection& inputs) {
  if (!inputs.skip_zeros) return {inputs.all, k};
  return {inputs.scratch, nonzero_inputs(a, rows, lda, k, inputs.scratch)};
}

template <std::size_t Rows, std::size_t Vectors>
void panel_of(std::size_t vectors, const ActiveInputs& active, float alpha, const float* a,
              std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc,
              std::size_t valid) {
  if constexpr (Vectors > 1) {
    if (vectors < Vectors) {
      panel_of<Rows, Vectors - 1>(vectors, active, alpha, a, lda, b, ldb, c, ldc, valid);
      return;
    }
  }
  panel<Rows, Vectors>(active, alpha, a, lda, b, ldb, c, ldc, valid);
}

template <std::size_t Rows>
void panels(std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
            const float* b, std::size_t ldb, float* c, std::size_t ldc,
            const InputSelection& inputs) {
  constexpr std::size_t kPanelColumns = row_vectors(Rows) * kLanes;
  const ActiveInputs active = select_inputs(a, Rows, lda, k, inputs);
  for (std::size_t j0 = 0; j0 < n; j0 += kPanelColumns) {
    const std::size_t valid = std::min(kPanelColumns, n - j0);
    panel_of<Rows, row_vectors(Rows)>((valid + kLanes - 1) / kLanes, active, alpha, a, lda, b + j0,
                                ldb, c + j0, ldc, valid);
  }
}

}  // namespace

void small_gemm(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc,
                const InputSelection& inputs) {
  std::size_t r = 0;
  for (; r + kRowRows <= m; r += kRowRows) {
    panels<kRowRows>(n, k, alpha, a + r * lda, lda, b, ldb, c + r * ldc, ldc, inputs);
  }
  for (; r + 2 <= m; r += 2) {
    panels<2>(n, k, alpha, a + r * lda, lda, b, ldb, c + r * ldc, ldc, inputs);
  }
  if (r < m) panels<1>(n, k, alpha, a + r * lda, lda, b, ldb, c + r * ldc, ldc, inputs);
}

namespace {

// Double accumulators: for identity output layers (see Network). Each element is one
// chain over k in double, rounded to float once, in the same order as tile_gemm_double.
// A float product is exact in double, so a fused and an unfused multiply-add round
// alike here: every family, FMA or not, gives these bits. Panels of kDoubleVectors float
// vectors of columns, each widened to two vectors of doubles: 8 chains of accumulators
// in registers (an array of 64 doubles on the stack took 400 ns for one row of 100x10 on
// this Xeon; see kernel_bench for this).
constexpr std::size_t kDoubleVectors = 4;

template <std::size_t Vectors>
void double_panel(const ActiveInputs& active, float alpha, const float* a, const float* b,
                  std::size_t ldb, float* c, std::size_t valid) {
  DoubleVec acc[2 * Vectors];
  for (std::size_t v = 0; v < 2 * Vectors; ++v) acc[v] = splat_double(0.0);
  for (std::size_t i = 0; i < active.count; ++i) {
    const std::size_t k = active.index[i];
    const DoubleVec x = splat_double(a[k]);
    for (std::size_t v = 0; v < Vectors; ++v) {
      const Vec w = load(b + k * ldb + kLanes * v);
      acc[2 * v] = mul_add(x, widen_low(w), acc[2 * v]);
      acc[2 * v + 1] = mul_add(x, widen_high(w), acc[2 * v + 1]);
    }
  }
  float out[kLanes * Vectors];
  const DoubleVec scale = splat_double(alpha);
  for (std::size_t v = 0; v < 2 * Vectors; ++v) store_narrowed(out + kLanes / 2 * v, acc[v] * scale);
  std::memcpy(c, out, valid * sizeof(float));
}

template <std::size_t Vectors = kDoubleVectors>
void double_panel_of(std::size_t vectors, const ActiveInputs& active, float alpha, const float* a,
                     const float* b, std::size_t ldb, float* c, std::size_t valid) {
  if constexpr (Vectors > 1) {
    if (vectors < Vectors) {
      double_panel_of<Vectors - 1>(vectors, active, alpha, a, b, ldb, c, valid);
      return;
    }
  }
  double_panel<Vectors>(active, alpha, a, b, ldb, c, valid);
}

}  // namespace

void small_gemm_double(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                       std::size_t lda, const float* b, std::size_t ldb, float* c,
                       const InputSelection& inputs) {
  constexpr std::size_t kColumns = kDoubleVectors * kLanes;
  for (std::size_t r = 0; r < m; ++r) {
    const ActiveInputs active = select_inputs(a + r * lda, 1, lda, k, inputs);
    for (std::size_t j0 = 0; j0 < n; j0 += kColumns) {
      const std::size_t valid = std::min(kColumns, n - j0);
      double_panel_of((valid + kLanes - 1) / kLanes, active, alpha, a + r * lda, b + j0, ldb,
                      c + r * n + j0, valid);
    }
  }
}

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
