#include "kernels.hpp"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <limits>
#include <vector>

// Runtime CPU dispatch instead of -march=native: the hot loops are compiled for
// x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline, and the loader
// picks one per process. The loops are written branch-free so that every clone
// auto-vectorises.
// MLPINFER_PORTABLE_KERNELS builds the portable code alone, for the instruction set the
// compiler targets: the core's tests run it so that the code other CPUs take is tested
// on this one too.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(MLPINFER_PORTABLE_KERNELS)
#define MLPINFER_DISPATCH __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MLPINFER_DISPATCH
#endif
// Helpers called from a dispatched function must be forced inline: GCC otherwise
// keeps them as out-of-line baseline functions, and the clone calls those (measured:
// a 784x50 product took 14 us instead of 0.9 us).
#define MLPINFER_INLINE __attribute__((always_inline)) inline
// Where a clone needs instructions GCC does not generate from portable code, a
// function with its own target attribute is chosen by __builtin_cpu_supports.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(MLPINFER_PORTABLE_KERNELS)
#define MLPINFER_HAVE_X86_DISPATCH
#include <immintrin.h>
#endif

namespace mlpinfer::kernels {
namespace {

// GCC vector extensions rather than intrinsics: each dispatched clone lowers a 16-float
// vector to one zmm, two ymm or four xmm registers.
typedef float Vec16 __attribute__((vector_size(64)));
typedef std::int32_t Int16 __attribute__((vector_size(64)));
typedef double Double8 __attribute__((vector_size(64)));
typedef float Vec8 __attribute__((vector_size(32)));

MLPINFER_INLINE Vec16 load16(const float* p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof v);  // unaligned load
  return v;
}

MLPINFER_INLINE void store16(float* p, Vec16 v) { std::memcpy(p, &v, sizeof v); }

MLPINFER_INLINE Vec16 splat(float value) { return Vec16{} + value; }

MLPINFER_INLINE Vec16 from_bits(Int16 bits) {
  Vec16 v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

MLPINFER_INLINE Int16 to_bits(Vec16 v) {
  Int16 bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits;
}

// exp(x), 16 lanes at a time (std::exp is a libm call that GCC only vectorises under
// -ffast-math, which we never use). Cephes' range reduction and degree-5 polynomial:
// relative error below 2e-7 over the whole range. Inputs below ln(FLT_MIN) give 0,
// above ln(FLT_MAX) +inf, NaN stays NaN; no floating-point exception is raised for any
// finite input.
constexpr float kExpMaxArg = 88.7228f;   // expf overflows above
constexpr float kExpMinArg = -87.3365f;  // below: result is subnormal, return 0

// e^x = p * 2^n for x in [kExpMinArg, kExpMaxArg]: returns p, sets n.
MLPINFER_INLINE Vec16 exp_reduced(Vec16 x, Int16& n_int) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693359375f;
  constexpr float kLn2Low = -2.12194440e-4f;
  // Round to nearest by adding and subtracting 1.5 * 2^23; valid while |n| < 2^22.
  constexpr float kRoundingShift = 12582912.0f;
  const Vec16 n = (x * kLog2e + kRoundingShift) - kRoundingShift;
  const Vec16 r = (x - n * kLn2High) - n * kLn2Low;
  Vec16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  n_int = __builtin_convertvector(n, Int16);
  return p * r * r + r + 1.0f;
}

MLPINFER_INLINE Vec16 exp16(Vec16 x) {
  // Written so that NaN lands on kExpMinArg: converting NaN to int would be undefined.
  Vec16 clamped = x >= kExpMinArg ? x : splat(kExpMinArg);
  clamped = clamped > kExpMaxArg ? splat(kExpMaxArg) : clamped;
  Int16 n;
  const Vec16 p = exp_reduced(clamped, n);
  // 2^n built in the exponent bits; n is in [-126, 128] after the clamp, and
  // 2^128 is split in two factors so that it overflows to inf instead of wrapping.
  const Int16 half = n >> 1;
  Vec16 result = p * from_bits((half + 127) << 23) * from_bits((n - half + 127) << 23);
  result = x < kExpMinArg ? splat(0.0f) : result;
  result = x > kExpMaxArg ? splat(std::numeric_limits<float>::infinity()) : result;
  return x != x ? x : result;
}

// exp16 for x <= 0 or NaN, all that sigmoid and tanh ask for: with n <= 0, 2^n is one
// factor and nothing overflows. The same values as exp16 (a product by two powers of 2
// that stay normal is the product by their product), in fewer instructions.
MLPINFER_INLINE Vec16 exp_nonpositive16(Vec16 x) {
  const Vec16 clamped = x >= kExpMinArg ? x : splat(kExpMinArg);
  Int16 n;
  const Vec16 result = exp_reduced(clamped, n) * from_bits((n + 127) << 23);
  return x >= kExpMinArg ? result : (x != x ? x : splat(0.0f));
}

MLPINFER_INLINE Vec16 abs16(Vec16 x) { return from_bits(to_bits(x) & 0x7fffffff); }

// 1 / (1 + e^-x) evaluated as e^-|x| based so that the exponential never overflows.
MLPINFER_INLINE Vec16 sigmoid16(Vec16 x) {
  const Vec16 e = exp_nonpositive16(-abs16(x));
  const Vec16 positive = 1.0f / (1.0f + e);
  return x >= 0.0f ? positive : e * positive;  // NaN takes e * positive: NaN
}

// tanh: a Taylor polynomial where 1 - 2/(e^2x + 1) would cancel (|x| < 0.5; truncation
// error below 5e-9 there), the exponential form elsewhere.
MLPINFER_INLINE Vec16 tanh16(Vec16 x) {
  const Vec16 a = abs16(x);
  const Vec16 e = exp_nonpositive16(-2.0f * a);
  const Vec16 far = (1.0f - e) / (1.0f + e);
  const Vec16 x2 = a * a;
  Vec16 p = splat(21844.0f / 6081075.0f);
  p = p * x2 - 1382.0f / 155925.0f;
  p = p * x2 + 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  const Vec16 near = a + a * x2 * p;
  const Vec16 magnitude = a < 0.5f ? near : far;
  const Vec16 result = from_bits(to_bits(magnitude) | (to_bits(x) & std::int32_t{-2147483647 - 1}));
  return x != x ? x : result;
}

// Element-wise functions as structs with forced-inline operators, not lambdas: a
// lambda's operator() is compiled for the baseline target, and a clone that calls it
// out of line passes its 64-byte vectors in the wrong registers (measured: tanh gave 0).
struct Sigmoid {
  MLPINFER_INLINE Vec16 operator()(Vec16 v) const { return sigmoid16(v); }
};

struct Tanh {
  MLPINFER_INLINE Vec16 operator()(Vec16 v) const { return tanh16(v); }
};

struct ShiftedExp {
  float shift;
  MLPINFER_INLINE Vec16 operator()(Vec16 v) const { return exp16(v - shift); }
};

// row[c] = f(row[c]), 16 lanes at a time; the tail goes through a padded copy.
template <typename F>
MLPINFER_INLINE void map_row(float* row, std::size_t width, F f) {
  std::size_t c = 0;
  for (; c + 16 <= width; c += 16) store16(row + c, f(load16(row + c)));
  if (c < width) {
    float tail[16] = {};
    std::memcpy(tail, row + c, (width - c) * sizeof(float));
    store16(tail, f(load16(tail)));
    std::memcpy(row + c, tail, (width - c) * sizeof(float));
  }
}

MLPINFER_INLINE void add_bias(float* row, std::size_t width, const float* bias) {
  for (std::size_t c = 0; c < width; ++c) row[c] += bias[c];
}

MLPINFER_INLINE void add_bias_rows(float* tile, std::size_t rows, std::size_t width,
                                   const float* bias) {
  for (std::size_t r = 0; r < rows; ++r) add_bias(tile + r * width, width, bias);
}

// The element-wise activations run over the whole tile as one flat array: no per-row
// tail, one dispatched call per tile.
MLPINFER_DISPATCH
void identity_tile(float* tile, std::size_t rows, std::size_t width, const float* bias) {
  add_bias_rows(tile, rows, width, bias);
}

MLPINFER_DISPATCH
void relu_tile(float* tile, std::size_t rows, std::size_t width, const float* bias) {
  add_bias_rows(tile, rows, width, bias);
  for (std::size_t i = 0; i < rows * width; ++i) {
    tile[i] = tile[i] < 0.0f ? 0.0f : tile[i];  // NaN fails the test and passes through, as in NumPy
  }
}

MLPINFER_DISPATCH
void sigmoid_tile(float* tile, std::size_t rows, std::size_t width, const float* bias) {
  add_bias_rows(tile, rows, width, bias);
  map_row(tile, rows * width, Sigmoid{});
}

MLPINFER_DISPATCH
void tanh_tile(float* tile, std::size_t rows, std::size_t width, const float* bias) {
  add_bias_rows(tile, rows, width, bias);
  map_row(tile, rows * width, Tanh{});
}

MLPINFER_INLINE void softmax_row(float* row, std::size_t width, const float* bias) {
  float row_max = -std::numeric_limits<float>::infinity();
  for (std::size_t c = 0; c < width; ++c) {
    row[c] += bias[c];
    row_max = row[c] > row_max ? row[c] : row_max;  // skips NaN; the sum below carries it
  }
  map_row(row, width, ShiftedExp{row_max});
  float sum = 0.0f;
  for (std::size_t c = 0; c < width; ++c) sum += row[c];
  const float inverse = 1.0f / sum;
  for (std::size_t c = 0; c < width; ++c) row[c] *= inverse;
}

MLPINFER_DISPATCH
void softmax_tile(float* tile, std::size_t rows, std::size_t width, const float* bias) {
  for (std::size_t r = 0; r < rows; ++r) softmax_row(tile + r * width, width, bias);
}

// Rows x (16 * Vectors) of C: the accumulators stay in registers for the whole k loop,
// so each element of B is loaded once per `Rows` rows and feeds `Rows` FMAs.
template <int Rows, int Vectors>
MLPINFER_INLINE void panel(const ActiveInputs& active, float alpha, const float* a,
                           std::size_t lda, const float* b, std::size_t ldb, float* c,
                           std::size_t ldc, std::size_t valid) {
  Vec16 acc[Rows][Vectors] = {};
  for (std::size_t i = 0; i < active.count; ++i) {
    const std::size_t k = active.index[i];
    const float* row = b + k * ldb;
    Vec16 w[Vectors];
    for (int v = 0; v < Vectors; ++v) w[v] = load16(row + 16 * v);
    for (int r = 0; r < Rows; ++r) {
      // Vector times scalar, as in tile_panel: a broadcast written as Vec16{} + x
      // would turn -0.0 into +0.0, and a row's zero sign would depend on its kernel.
      const float x = a[r * lda + k];
      for (int v = 0; v < Vectors; ++v) acc[r][v] += w[v] * x;
    }
  }
  for (int r = 0; r < Rows; ++r) {
    float out[16 * Vectors];
    for (int v = 0; v < Vectors; ++v) acc[r][v] = (acc[r][v] + 0.0f) * alpha;  // see InputSelection
    std::memcpy(out, acc[r], sizeof out);
    std::memcpy(c + r * ldc, out, valid * sizeof(float));
  }
}

// The inputs that rows of `a` need visited (see InputSelection).
MLPINFER_INLINE ActiveInputs select_inputs(const float* a, std::size_t rows, std::size_t lda,
                                           std::size_t k, const InputSelection& inputs) {
  if (!inputs.skip_zeros) return {inputs.all, k};
  return {inputs.scratch, nonzero_inputs(a, rows, lda, k, inputs.scratch)};
}

template <int Rows>
MLPINFER_INLINE void panels(std::size_t n, std::size_t k, float alpha, const float* a,
                            std::size_t lda, const float* b, std::size_t ldb, float* c,
                            std::size_t ldc, const InputSelection& inputs) {
  const ActiveInputs active = select_inputs(a, Rows, lda, k, inputs);
  for (std::size_t j0 = 0; j0 < n; j0 += kPanelWidth) {
    const std::size_t valid = std::min(kPanelWidth, n - j0);
    switch ((valid + kPadColumns - 1) / kPadColumns) {
      case 1: panel<Rows, 1>(active, alpha, a, lda, b + j0, ldb, c + j0, ldc, valid); break;
      case 2: panel<Rows, 2>(active, alpha, a, lda, b + j0, ldb, c + j0, ldc, valid); break;
      case 3: panel<Rows, 3>(active, alpha, a, lda, b + j0, ldb, c + j0, ldc, valid); break;
      default: panel<Rows, 4>(active, alpha, a, lda, b + j0, ldb, c + j0, ldc, valid); break;
    }
  }
}

MLPINFER_DISPATCH
void small_gemm_rows(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                     std::size_t lda, const float* b, std::size_t ldb, float* c,
                     std::size_t ldc, const InputSelection& inputs) {
  std::size_t r = 0;
  for (; r + 4 <= m; r += 4) {
    panels<4>(n, k, alpha, a + r * lda, lda, b, ldb, c + r * ldc, ldc, inputs);
  }
  for (; r + 2 <= m; r += 2) {
    panels<2>(n, k, alpha, a + r * lda, lda, b, ldb, c + r * ldc, ldc, inputs);
  }
  if (r < m) panels<1>(n, k, alpha, a + r * lda, lda, b, ldb, c + r * ldc, ldc, inputs);
}

// small_gemm with double accumulators over unpadded W (k x n): for identity output
// layers (see Network). Each element is one FMA chain over k in double, rounded to
// float once, in the same order as tile_panel_double.
MLPINFER_DISPATCH
void small_gemm_double_rows(std::size_t m, std::size_t n, std::size_t k, float alpha,
                            const float* a, std::size_t lda, const float* w, float* c,
                            const InputSelection& inputs) {
  constexpr std::size_t kColumns = 64;
  for (std::size_t r = 0; r < m; ++r) {
    const ActiveInputs active = select_inputs(a + r * lda, 1, lda, k, inputs);
    for (std::size_t j0 = 0; j0 < n; j0 += kColumns) {
      const std::size_t width = std::min(kColumns, n - j0);
      double acc[kColumns] = {};
      for (std::size_t i = 0; i < active.count; ++i) {
        const std::size_t input = active.index[i];
        const double x = a[r * lda + input];
        const float* w_row = w + input * n + j0;
        for (std::size_t j = 0; j < width; ++j) acc[j] += x * static_cast<double>(w_row[j]);
      }
      for (std::size_t j = 0; j < width; ++j) {
        c[r * n + j0 + j] = static_cast<float>(acc[j] * static_cast<double>(alpha));
      }
    }
  }
}

MLPINFER_INLINE const unsigned char* row_address(const InputView& src, std::size_t row) {
  return static_cast<const unsigned char*>(src.data) +
         static_cast<std::ptrdiff_t>(row) * src.row_stride_bytes;
}

template <typename T>
MLPINFER_INLINE float load_as_float(const unsigned char* address) {
  T value;
  std::memcpy(&value, address, sizeof value);  // the view may be unaligned
  return static_cast<float>(value);
}

template <typename T>
MLPINFER_INLINE void gather(const InputView& src, std::size_t first_row, std::size_t rows,
                            float* dst) {
  for (std::size_t r = 0; r < rows; ++r) {
    const unsigned char* row = row_address(src, first_row + r);
    float* out = dst + r * src.cols;
    if (src.col_stride_bytes == static_cast<std::ptrdiff_t>(sizeof(T))) {
      for (std::size_t c = 0; c < src.cols; ++c) out[c] = load_as_float<T>(row + c * sizeof(T));
    } else {
      for (std::size_t c = 0; c < src.cols; ++c) {
        out[c] = load_as_float<T>(row + static_cast<std::ptrdiff_t>(c) * src.col_stride_bytes);
      }
    }
  }
}

MLPINFER_DISPATCH
void gather_float(const InputView& src, std::size_t first_row, std::size_t rows, float* dst) {
  gather<float>(src, first_row, rows, dst);
}

MLPINFER_DISPATCH
void gather_double(const InputView& src, std::size_t first_row, std::size_t rows, float* dst) {
  gather<double>(src, first_row, rows, dst);
}

MLPINFER_DISPATCH
void gather_uint8(const InputView& src, std::size_t first_row, std::size_t rows, float* dst) {
  gather<std::uint8_t>(src, first_row, rows, dst);
}


// --- Zero inputs ----------------------------------------------------------------
// The indices k < inputs at which any of `rows` rows, a[r * row_stride + k * input_stride],
// is nonzero. Branch-free: whether an input is zero is data, and a mispredicted branch
// per input would cost more than the FMAs it saves. Called with constant strides, so
// that each caller's inner loop is compiled for its layout.
MLPINFER_INLINE std::size_t nonzero_inputs_strided(const float* a, std::size_t rows,
                                                   std::size_t row_stride,
                                                   std::size_t input_stride,
                                                   std::size_t inputs, std::uint32_t* active) {
  std::size_t count = 0;
  for (std::size_t k = 0; k < inputs; ++k) {
    bool nonzero = false;
    for (std::size_t r = 0; r < rows; ++r) nonzero |= a[r * row_stride + k * input_stride] != 0.0f;
    active[count] = static_cast<std::uint32_t>(k);
    count += nonzero;
  }
  return count;
}

MLPINFER_DISPATCH
std::size_t nonzero_inputs_portable(const float* a, std::size_t rows, std::size_t lda,
                                    std::size_t inputs, std::uint32_t* active) {
  return nonzero_inputs_strided(a, rows, lda, 1, inputs, active);
}

MLPINFER_DISPATCH
std::size_t tile_nonzero_inputs_portable(const float* tile, std::size_t inputs,
                                         std::size_t lanes, std::uint32_t* active) {
  return nonzero_inputs_strided(tile, lanes, 1, kTileRows, inputs, active);
}

#ifdef MLPINFER_HAVE_X86_DISPATCH
// 16 inputs per step: a mask of the nonzero ones, their indices compressed into place
// (VPCOMPRESSD), against a compare, a store and an add per input above.
__attribute__((target("arch=x86-64-v4")))
std::size_t nonzero_inputs_avx512(const float* a, std::size_t rows, std::size_t lda,
                                  std::size_t inputs, std::uint32_t* active) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  std::size_t count = 0;
  for (std::size_t k = 0; k < inputs; k += 16) {
    const std::size_t left = inputs - k;
    const __mmask16 valid = left >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << left) - 1);
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

// A feature's 32 lanes are two vectors: one mask bit per feature.
__attribute__((target("arch=x86-64-v4")))
std::size_t tile_nonzero_inputs_avx512(const float* tile, std::size_t inputs,
                                       std::size_t lanes, std::uint32_t* active) {
  std::size_t count = 0;
  for (std::size_t k = 0; k < inputs; ++k) {
    const float* feature = tile + k * kTileRows;
    __mmask16 nonzero = 0;
    for (std::size_t half = 0; half < lanes; half += 16) {
      nonzero |= _mm512_cmp_ps_mask(_mm512_loadu_ps(feature + half), _mm512_setzero_ps(),
                                    _CMP_NEQ_UQ);
    }
    active[count] = static_cast<std::uint32_t>(k);
    count += nonzero != 0;
  }
  return count;
}
#endif

// --- Tiles: the batch in vector lanes -------------------------------------------
// One accumulator per (output column, 16 rows) stays in a register for the whole k
// loop; each step loads 2 vectors of the input tile (1 in a half tile) and broadcasts
// one weight per column (an embedded-broadcast FMA operand on AVX-512). Columns are never padded, so
// 50 outputs cost 50 columns of FMAs, not 64. Measured on the EPYC, one thread, per
// row: 784x50 in 283 ns (about 2 FMAs a cycle), against 361 ns for the 4 x 64 row
// kernel; 784x512 in 2,800 ns against OpenBLAS's 4,674.
template <int Width, int Halves>
MLPINFER_INLINE void tile_panel(const ActiveInputs& active, float alpha, const float* in,
                                const float* panel, float* out, RowPrefetch& prefetch) {
  Vec16 acc[Width][Halves] = {};
  for (std::size_t i = 0; i < active.count; ++i) {
    const std::size_t k = active.index[i];
    prefetch.next_line();
    Vec16 x[Halves];
    for (int h = 0; h < Halves; ++h) x[h] = load16(in + k * kTileRows + 16 * h);
    for (int c = 0; c < Width; ++c) {
      const float w = panel[k * Width + c];
      for (int h = 0; h < Halves; ++h) acc[c][h] += x[h] * w;
    }
  }
  for (int c = 0; c < Width; ++c) {
    for (int h = 0; h < Halves; ++h) {  // + 0.0f: see InputSelection
      store16(out + c * kTileRows + 16 * h, (acc[c][h] + 0.0f) * alpha);
    }
  }
}

template <int Halves>
MLPINFER_INLINE void tile_panels(std::size_t inputs, const ActiveInputs& active,
                                 std::size_t outputs, float alpha, const float* in,
                                 const float* panels, std::size_t max_width, float* out,
                                 RowPrefetch& prefetch) {
  const PanelLayout layout(outputs, max_width);
  for (std::size_t p = 0; p < layout.count; ++p) {
    const std::size_t first = layout.first_column(p);
    const float* panel = panels + first * inputs;
    float* panel_out = out + first * kTileRows;
    switch (layout.width(p)) {
      case 1: tile_panel<1, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      case 2: tile_panel<2, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      case 3: tile_panel<3, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      case 4: tile_panel<4, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      case 5: tile_panel<5, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      case 6: tile_panel<6, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      case 7: tile_panel<7, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      case 8: tile_panel<8, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      case 9: tile_panel<9, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      case 10: tile_panel<10, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      case 11: tile_panel<11, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
      default: tile_panel<12, Halves>(active, alpha, in, panel, panel_out, prefetch); break;
    }
  }
}

MLPINFER_DISPATCH
void tile_gemm_dispatched(std::size_t inputs, const ActiveInputs& active, std::size_t outputs,
                          float alpha, const float* in, const float* panels,
                          std::size_t max_width, float* out, std::size_t lanes,
                          RowPrefetch& next_tile) {
  RowPrefetch prefetch = next_tile;  // a local copy stays in registers
  if (lanes == 16) {
    tile_panels<1>(inputs, active, outputs, alpha, in, panels, max_width, out, prefetch);
  } else {
    tile_panels<2>(inputs, active, outputs, alpha, in, panels, max_width, out, prefetch);
  }
  next_tile = prefetch;
}

MLPINFER_INLINE Double8 widen(Vec16 v, int half) {
  const Vec8 part = half == 0 ? __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7)
                              : __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  return __builtin_convertvector(part, Double8);
}

// tile_panel in double, reading W (k x n, row-major) from column `w`: 2 vectors of 8
// rows per column and half tile.
template <int Width, int Halves>
MLPINFER_INLINE void tile_panel_double(const ActiveInputs& active, std::size_t n, float alpha,
                                       const float* in, const float* w, float* out,
                                       RowPrefetch& prefetch) {
  Double8 acc[Width][2 * Halves] = {};
  for (std::size_t i = 0; i < active.count; ++i) {
    const std::size_t k = active.index[i];
    prefetch.next_line();
    Double8 x[2 * Halves];
    for (int h = 0; h < Halves; ++h) {
      const Vec16 half = load16(in + k * kTileRows + 16 * h);
      x[2 * h] = widen(half, 0);
      x[2 * h + 1] = widen(half, 1);
    }
    for (int c = 0; c < Width; ++c) {
      const double weight = w[k * n + static_cast<std::size_t>(c)];
      for (int v = 0; v < 2 * Halves; ++v) acc[c][v] += x[v] * weight;
    }
  }
  for (int c = 0; c < Width; ++c) {
    for (int v = 0; v < 2 * Halves; ++v) {
      const Vec8 rounded = __builtin_convertvector(acc[c][v] * static_cast<double>(alpha), Vec8);
      std::memcpy(out + c * kTileRows + 8 * v, &rounded, sizeof rounded);
    }
  }
}

template <int Halves>
MLPINFER_INLINE void tile_panels_double(const ActiveInputs& active, std::size_t outputs,
                                        float alpha, const float* in, const float* weights,
                                        std::size_t max_width, float* out,
                                        RowPrefetch& prefetch) {
  for (std::size_t first = 0; first < outputs; first += max_width) {
    const float* w = weights + first;
    float* panel_out = out + first * kTileRows;
    switch (std::min(max_width, outputs - first)) {
      case 1: tile_panel_double<1, Halves>(active, outputs, alpha, in, w, panel_out, prefetch); break;
      case 2: tile_panel_double<2, Halves>(active, outputs, alpha, in, w, panel_out, prefetch); break;
      case 3: tile_panel_double<3, Halves>(active, outputs, alpha, in, w, panel_out, prefetch); break;
      case 4: tile_panel_double<4, Halves>(active, outputs, alpha, in, w, panel_out, prefetch); break;
      case 5: tile_panel_double<5, Halves>(active, outputs, alpha, in, w, panel_out, prefetch); break;
      default: tile_panel_double<6, Halves>(active, outputs, alpha, in, w, panel_out, prefetch); break;
    }
  }
}

MLPINFER_DISPATCH
void tile_gemm_double_dispatched(const ActiveInputs& active, std::size_t outputs, float alpha,
                                 const float* in, const float* weights, std::size_t max_width,
                                 float* out, std::size_t lanes, RowPrefetch& next_tile) {
  RowPrefetch prefetch = next_tile;
  if (lanes == 16) {
    tile_panels_double<1>(active, outputs, alpha, in, weights, max_width, out, prefetch);
  } else {
    tile_panels_double<2>(active, outputs, alpha, in, weights, max_width, out, prefetch);
  }
  next_tile = prefetch;
}

// Softmax across the features of each lane, in the same order of operations as
// softmax_row, so that a row gives the same bits whichever path it takes.
MLPINFER_INLINE void softmax_lanes(float* tile, std::size_t width, std::size_t lanes) {
  for (std::size_t lane = 0; lane < lanes; lane += 16) {
    Vec16 lane_max = splat(-std::numeric_limits<float>::infinity());
    for (std::size_t f = 0; f < width; ++f) {
      const Vec16 v = load16(tile + f * kTileRows + lane);
      lane_max = v > lane_max ? v : lane_max;  // skips NaN; the sum below carries it
    }
    Vec16 sum = {};
    for (std::size_t f = 0; f < width; ++f) {
      float* at = tile + f * kTileRows + lane;
      const Vec16 e = exp16(load16(at) - lane_max);
      store16(at, e);
      sum += e;
    }
    const Vec16 inverse = 1.0f / sum;
    for (std::size_t f = 0; f < width; ++f) {
      float* at = tile + f * kTileRows + lane;
      store16(at, load16(at) * inverse);
    }
  }
}

// tile[f][lane] = f(tile[f][lane] + bias[f]) in one pass.
template <typename F>
MLPINFER_INLINE void map_tile(float* tile, std::size_t width, std::size_t lanes, const float* bias,
                              F f) {
  for (std::size_t feature = 0; feature < width; ++feature) {
    for (std::size_t lane = 0; lane < lanes; lane += 16) {
      float* at = tile + feature * kTileRows + lane;
      store16(at, f(load16(at) + bias[feature]));
    }
  }
}

struct Identity {
  MLPINFER_INLINE Vec16 operator()(Vec16 v) const { return v; }
};

struct Relu {
  // NaN fails the test and passes through, as in NumPy
  MLPINFER_INLINE Vec16 operator()(Vec16 v) const { return v < 0.0f ? splat(0.0f) : v; }
};

MLPINFER_DISPATCH
void tile_bias_activation_dispatched(float* tile, std::size_t width, std::size_t lanes,
                                     const float* bias, Activation activation) {
  switch (activation) {
    case Activation::identity: map_tile(tile, width, lanes, bias, Identity{}); break;
    case Activation::relu: map_tile(tile, width, lanes, bias, Relu{}); break;
    case Activation::sigmoid: map_tile(tile, width, lanes, bias, Sigmoid{}); break;
    case Activation::tanh: map_tile(tile, width, lanes, bias, Tanh{}); break;
    case Activation::softmax:
      map_tile(tile, width, lanes, bias, Identity{});
      softmax_lanes(tile, width, lanes);
      break;
  }
}

// 16 rows of 16 features, rows[r][f], stored feature-major: tile[f * kTileRows + r].
// Four rounds of two-source shuffles; after them rows[m] holds feature kFeatureOf[m].
MLPINFER_INLINE void transpose_into_tile(Vec16 (&rows)[16], float* tile) {
  Vec16 t[16];
  for (int i = 0; i < 8; ++i) {
    const Vec16 a = rows[2 * i];
    const Vec16 b = rows[2 * i + 1];
    t[2 * i] =
        __builtin_shufflevector(a, b, 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
    t[2 * i + 1] =
        __builtin_shufflevector(a, b, 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
  }
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 2; ++j) {
      const Vec16 a = t[4 * i + j];
      const Vec16 b = t[4 * i + j + 2];
      rows[4 * i + j] =
          __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
      rows[4 * i + j + 2] =
          __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
  }
  for (int i = 0; i < 2; ++i) {
    for (int q = 0; q < 4; ++q) {
      const Vec16 a = rows[8 * i + q];
      const Vec16 b = rows[8 * i + 4 + q];
      t[8 * i + q] =
          __builtin_shufflevector(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
      t[8 * i + 4 + q] =
          __builtin_shufflevector(a, b, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    }
  }
  for (int q = 0; q < 8; ++q) {
    rows[q] = __builtin_shufflevector(t[q], t[8 + q], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20,
                                      21, 22, 23);
    rows[8 + q] = __builtin_shufflevector(t[q], t[8 + q], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26,
                                          27, 28, 29, 30, 31);
  }
  constexpr int kFeatureOf[16] = {0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15};
  for (int m = 0; m < 16; ++m) store16(tile + kFeatureOf[m] * kTileRows, rows[m]);
}


// 16 consecutive elements of type T as floats.
template <typename T>
MLPINFER_INLINE Vec16 load16_as_float(const unsigned char* address);

template <>
MLPINFER_INLINE Vec16 load16_as_float<float>(const unsigned char* address) {
  return load16(reinterpret_cast<const float*>(address));
}

template <>
MLPINFER_INLINE Vec16 load16_as_float<std::uint8_t>(const unsigned char* address) {
  float converted[16];
  for (int i = 0; i < 16; ++i) converted[i] = static_cast<float>(address[i]);
  return load16(converted);
}

template <>
MLPINFER_INLINE Vec16 load16_as_float<double>(const unsigned char* address) {
  Double8 low;
  Double8 high;
  std::memcpy(&low, address, sizeof low);
  std::memcpy(&high, address + sizeof low, sizeof high);
  const Vec8 low_f = __builtin_convertvector(low, Vec8);
  const Vec8 high_f = __builtin_convertvector(high, Vec8);
  return __builtin_shufflevector(low_f, high_f, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                 15);
}

// Features [first_feature, cols) one element at a time: what is left after the
// whole 16-feature blocks, or every feature of a strided view.
template <typename T>
MLPINFER_INLINE void load_tile_features(const InputView& src, std::size_t first_row,
                                        std::size_t rows, std::size_t lanes,
                                        std::size_t first_feature, float* tile) {
  for (std::size_t f = first_feature; f < src.cols; ++f) {
    const std::ptrdiff_t offset = static_cast<std::ptrdiff_t>(f) * src.col_stride_bytes;
    for (std::size_t r = 0; r < lanes; ++r) {
      tile[f * kTileRows + r] =
          r < rows ? load_as_float<T>(row_address(src, first_row + r) + offset) : 0.0f;
    }
  }
}

template <typename T>
MLPINFER_INLINE bool contiguous_rows(const InputView& src) {
  return src.col_stride_bytes == static_cast<std::ptrdiff_t>(sizeof(T));
}

// Each row is read 64 bytes at a time, 32 rows side by side: too many streams for the
// hardware prefetcher, so each row asks for its line 256 bytes ahead (the first float32
// tile of a call, from memory, one thread: 16.0-16.6 us without, 12.7-13.1 with; 128 and
// 512 bytes ahead did worse). uint8 rows (16 bytes a step) ask 128 bytes ahead: 13.1-14.4
// us without, 10.7 with, as fast as from cache.
constexpr std::size_t kLoadAhead = 256;
// Converting while transposing, 16 rows x 16 features at a time.
template <typename T>
MLPINFER_INLINE void load_tile_as(const InputView& src, std::size_t first_row, std::size_t rows,
                                  std::size_t lanes, float* tile) {
  std::size_t f = 0;
  for (; contiguous_rows<T>(src) && f + 16 <= src.cols; f += 16) {
    for (std::size_t half = 0; half < lanes; half += 16) {
      Vec16 block[16];
      const bool ahead = f * sizeof(T) + kLoadAhead < src.cols * sizeof(T);
      for (std::size_t r = 0; r < 16; ++r) {
        if (half + r < rows) {
          const unsigned char* row = row_address(src, first_row + half + r);
          if (ahead) __builtin_prefetch(row + f * sizeof(T) + kLoadAhead, 0, 3);
          block[r] = load16_as_float<T>(row + f * sizeof(T));
        } else {
          block[r] = Vec16{};
        }
      }
      transpose_into_tile(block, tile + f * kTileRows + half);
    }
  }
  load_tile_features<T>(src, first_row, rows, lanes, f, tile);
}

MLPINFER_DISPATCH
void load_tile_float(const InputView& src, std::size_t first_row, std::size_t rows,
                     std::size_t lanes, float* tile) {
  load_tile_as<float>(src, first_row, rows, lanes, tile);
}

MLPINFER_DISPATCH
void load_tile_double(const InputView& src, std::size_t first_row, std::size_t rows,
                      std::size_t lanes, float* tile) {
  load_tile_as<double>(src, first_row, rows, lanes, tile);
}

MLPINFER_DISPATCH
void load_tile_uint8(const InputView& src, std::size_t first_row, std::size_t rows,
                     std::size_t lanes, float* tile) {
  load_tile_as<std::uint8_t>(src, first_row, rows, lanes, tile);
}

#ifdef MLPINFER_HAVE_X86_DISPATCH
// load_tile_as<std::uint8_t> with the conversion in two instructions (VPMOVZXBD,
// VCVTDQ2PS): GCC 12 converts bytes to floats one lane at a time however it is
// written (__builtin_convertvector, shuffles, a loop), which made uint8 input 40%
// slower than float32. Written out rather than shared because an always_inline
// helper cannot carry a target attribute its template caller lacks.
constexpr std::size_t kLoadAheadUint8 = 128;  // see kLoadAhead
#pragma GCC diagnostic push
// GCC 12's own avx512fintrin.h trips this (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("arch=x86-64-v4")))
void load_tile_uint8_avx512(const InputView& src, std::size_t first_row, std::size_t rows,
                            std::size_t lanes, float* tile) {
  std::size_t f = 0;
  for (; contiguous_rows<std::uint8_t>(src) && f + 16 <= src.cols; f += 16) {
    for (std::size_t half = 0; half < lanes; half += 16) {
      Vec16 block[16];
      const bool ahead = f + kLoadAheadUint8 < src.cols;
      for (std::size_t r = 0; r < 16; ++r) {
        if (half + r < rows) {
          const unsigned char* row = row_address(src, first_row + half + r);
          if (ahead) __builtin_prefetch(row + f + kLoadAheadUint8, 0, 3);
          const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + f));
          block[r] = reinterpret_cast<Vec16>(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)));
        } else {
          block[r] = Vec16{};
        }
      }
      transpose_into_tile(block, tile + f * kTileRows + half);
    }
  }
  load_tile_features<std::uint8_t>(src, first_row, rows, lanes, f, tile);
}
#pragma GCC diagnostic pop
#endif

}  // namespace

void bias_activation(float* tile, std::size_t rows, std::size_t width, const float* bias,
                     Activation activation) {
  switch (activation) {
    case Activation::identity: identity_tile(tile, rows, width, bias); break;
    case Activation::sigmoid: sigmoid_tile(tile, rows, width, bias); break;
    case Activation::relu: relu_tile(tile, rows, width, bias); break;
    case Activation::tanh: tanh_tile(tile, rows, width, bias); break;
    case Activation::softmax: softmax_tile(tile, rows, width, bias); break;
  }
}

std::size_t nonzero_inputs(const float* a, std::size_t rows, std::size_t lda,
                           std::size_t inputs, std::uint32_t* active) {
#ifdef MLPINFER_HAVE_X86_DISPATCH
  if (__builtin_cpu_supports("x86-64-v4")) return nonzero_inputs_avx512(a, rows, lda, inputs, active);
#endif
  return nonzero_inputs_portable(a, rows, lda, inputs, active);
}

std::size_t tile_nonzero_inputs(const float* tile, std::size_t inputs, std::size_t lanes,
                                std::uint32_t* active) {
#ifdef MLPINFER_HAVE_X86_DISPATCH
  if (__builtin_cpu_supports("x86-64-v4")) {
    return tile_nonzero_inputs_avx512(tile, inputs, lanes, active);
  }
#endif
  return tile_nonzero_inputs_portable(tile, inputs, lanes, active);
}

void small_gemm(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc,
                const InputSelection& inputs) {
  small_gemm_rows(m, n, k, alpha, a, lda, b, ldb, c, ldc, inputs);
}

void gather_rows(const InputView& src, std::size_t first_row, std::size_t rows, float* dst) {
  switch (src.type) {
    case ElementType::float32: gather_float(src, first_row, rows, dst); break;
    case ElementType::float64: gather_double(src, first_row, rows, dst); break;
    case ElementType::uint8: gather_uint8(src, first_row, rows, dst); break;
  }
}

PanelLayout::PanelLayout(std::size_t outputs, std::size_t max_width)
    : count((outputs + max_width - 1) / max_width),
      base_width(outputs / count),
      wider(outputs % count) {}

std::size_t PanelLayout::first_column(std::size_t panel) const {
  return panel * base_width + std::min(panel, wider);
}

std::size_t PanelLayout::width(std::size_t panel) const {
  return base_width + (panel < wider ? 1 : 0);
}

std::size_t max_panel_width() {
  // 2 x 12 accumulators and 2 input vectors use 26 of AVX-512's 32 registers. With
  // 16 registers (AVX2: a 16-float vector is two of them) 2 columns is what fits.
#ifdef MLPINFER_HAVE_X86_DISPATCH
  if (__builtin_cpu_supports("x86-64-v4")) return 12;
#endif
  return 2;
}

std::vector<float> pack_panels(const std::vector<float>& weights, std::size_t inputs,
                               std::size_t outputs, std::size_t max_width) {
  std::vector<float> packed(inputs * outputs);
  const PanelLayout layout(outputs, max_width);
  for (std::size_t p = 0; p < layout.count; ++p) {
    const std::size_t first = layout.first_column(p);
    const std::size_t width = layout.width(p);
    for (std::size_t i = 0; i < inputs; ++i) {
      std::copy_n(weights.begin() + static_cast<std::ptrdiff_t>(i * outputs + first), width,
                  packed.begin() + static_cast<std::ptrdiff_t>(first * inputs + i * width));
    }
  }
  return packed;
}

void tile_gemm(std::size_t inputs, const ActiveInputs& active, std::size_t outputs, float alpha,
               const float* in, const float* panels, std::size_t max_width, float* out,
               std::size_t lanes, RowPrefetch& prefetch) {
  tile_gemm_dispatched(inputs, active, outputs, alpha, in, panels, max_width, out, lanes,
                       prefetch);
}

void small_gemm_double(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                       std::size_t lda, const float* w, float* c, const InputSelection& inputs) {
  small_gemm_double_rows(m, n, k, alpha, a, lda, w, c, inputs);
}

void tile_gemm_double(const ActiveInputs& active, std::size_t outputs, float alpha,
                      const float* in, const float* weights, std::size_t max_width, float* out,
                      std::size_t lanes, RowPrefetch& prefetch) {
  // Half a float panel: 6 columns x 4 double vectors on AVX-512, 1 column elsewhere.
  tile_gemm_double_dispatched(active, outputs, alpha, in, weights, max_width / 2, out, lanes,
                              prefetch);
}

void tile_bias_activation(float* tile, std::size_t width, std::size_t lanes, const float* bias,
                          Activation activation) {
  tile_bias_activation_dispatched(tile, width, lanes, bias, activation);
}

void load_tile(const InputView& src, std::size_t first_row, std::size_t rows, std::size_t lanes,
               float* tile) {
  switch (src.type) {
    case ElementType::float32: load_tile_float(src, first_row, rows, lanes, tile); break;
    case ElementType::float64: load_tile_double(src, first_row, rows, lanes, tile); break;
    case ElementType::uint8:
#ifdef MLPINFER_HAVE_X86_DISPATCH
      if (__builtin_cpu_supports("x86-64-v4")) {
        load_tile_uint8_avx512(src, first_row, rows, lanes, tile);
        break;
      }
#endif
      load_tile_uint8(src, first_row, rows, lanes, tile);
      break;
  }
}

RowPrefetch::RowPrefetch(const InputView& src, std::size_t first_row, std::size_t rows) {
  const std::size_t element = src.type == ElementType::uint8     ? 1
                              : src.type == ElementType::float32 ? 4
                                                                 : 8;
  if (src.col_stride_bytes != static_cast<std::ptrdiff_t>(element)) return;
  data_ = static_cast<const char*>(src.data);
  row_offset_ = static_cast<std::ptrdiff_t>(first_row) * src.row_stride_bytes;
  row_stride_ = src.row_stride_bytes;
  row_bytes_ = src.cols * element;
  rows_left_ = rows;
}

void store_tile(const float* tile, std::size_t width, std::size_t rows, float* out) {
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t f = 0; f < width; ++f) out[r * width + f] = tile[f * kTileRows + r];
  }
}

}  // namespace mlpinfer::kernels
