#include "kernels.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <limits>

// Runtime CPU dispatch instead of -march=native: the hot loops are compiled for
// x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline, and the loader
// picks one per process. The loops are written branch-free so that every clone
// auto-vectorises.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define MLPINFER_DISPATCH __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MLPINFER_DISPATCH
#endif
// Helpers called from a dispatched function must be forced inline: GCC otherwise
// keeps them as out-of-line baseline functions, and the clone calls those (measured:
// a 784x50 product took 14 us instead of 0.9 us).
#define MLPINFER_INLINE __attribute__((always_inline)) inline

namespace mlpinfer::kernels {
namespace {

// GCC vector extensions rather than intrinsics: each dispatched clone lowers a 16-float
// vector to one zmm, two ymm or four xmm registers.
typedef float Vec16 __attribute__((vector_size(64)));
typedef std::int32_t Int16 __attribute__((vector_size(64)));

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
MLPINFER_INLINE Vec16 exp16(Vec16 x) {
  constexpr float kMaxArg = 88.7228f;   // expf overflows above
  constexpr float kMinArg = -87.3365f;  // below: result is subnormal, return 0
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693359375f;
  constexpr float kLn2Low = -2.12194440e-4f;
  // Written so that NaN lands on kMinArg: converting NaN to int below would be undefined.
  Vec16 clamped = x >= kMinArg ? x : splat(kMinArg);
  clamped = clamped > kMaxArg ? splat(kMaxArg) : clamped;
  // Round to nearest by adding and subtracting 1.5 * 2^23; valid while |n| < 2^22.
  constexpr float kRoundingShift = 12582912.0f;
  const Vec16 n = (clamped * kLog2e + kRoundingShift) - kRoundingShift;
  const Vec16 r = (clamped - n * kLn2High) - n * kLn2Low;
  Vec16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n built in the exponent bits; n is in [-126, 128] after the clamp, and
  // 2^128 is split in two factors so that it overflows to inf instead of wrapping.
  const Int16 n_int = __builtin_convertvector(n, Int16);
  const Int16 half = n_int >> 1;
  Vec16 result = p * from_bits((half + 127) << 23) * from_bits((n_int - half + 127) << 23);
  result = x < kMinArg ? splat(0.0f) : result;
  result = x > kMaxArg ? splat(std::numeric_limits<float>::infinity()) : result;
  return x != x ? x : result;
}

MLPINFER_INLINE Vec16 abs16(Vec16 x) { return from_bits(to_bits(x) & 0x7fffffff); }

// 1 / (1 + e^-x) evaluated as e^-|x| based so that the exponential never overflows.
MLPINFER_INLINE Vec16 sigmoid16(Vec16 x) {
  const Vec16 e = exp16(-abs16(x));
  const Vec16 positive = 1.0f / (1.0f + e);
  return x >= 0.0f ? positive : e * positive;  // NaN takes e * positive: NaN
}

// tanh: a Taylor polynomial where 1 - 2/(e^2x + 1) would cancel (|x| < 0.5; truncation
// error below 5e-9 there), the exponential form elsewhere.
MLPINFER_INLINE Vec16 tanh16(Vec16 x) {
  const Vec16 a = abs16(x);
  const Vec16 e = exp16(-2.0f * a);
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
MLPINFER_INLINE void panel(std::size_t k, float alpha, const float* a, std::size_t lda,
                           const float* b, std::size_t ldb, float* c, std::size_t ldc,
                           std::size_t valid) {
  Vec16 acc[Rows][Vectors] = {};
  for (std::size_t i = 0; i < k; ++i) {
    const float* row = b + i * ldb;
    Vec16 w[Vectors];
    for (int v = 0; v < Vectors; ++v) w[v] = load16(row + 16 * v);
    for (int r = 0; r < Rows; ++r) {
      const Vec16 s = Vec16{} + a[r * lda + i];
      for (int v = 0; v < Vectors; ++v) acc[r][v] += s * w[v];
    }
  }
  for (int r = 0; r < Rows; ++r) {
    float out[16 * Vectors];
    for (int v = 0; v < Vectors; ++v) acc[r][v] *= alpha;
    std::memcpy(out, acc[r], sizeof out);
    std::memcpy(c + r * ldc, out, valid * sizeof(float));
  }
}

template <int Rows>
MLPINFER_INLINE void panels(std::size_t n, std::size_t k, float alpha, const float* a,
                            std::size_t lda, const float* b, std::size_t ldb, float* c,
                            std::size_t ldc) {
  for (std::size_t j0 = 0; j0 < n; j0 += kPanelWidth) {
    const std::size_t valid = std::min(kPanelWidth, n - j0);
    switch ((valid + kPadColumns - 1) / kPadColumns) {
      case 1: panel<Rows, 1>(k, alpha, a, lda, b + j0, ldb, c + j0, ldc, valid); break;
      case 2: panel<Rows, 2>(k, alpha, a, lda, b + j0, ldb, c + j0, ldc, valid); break;
      case 3: panel<Rows, 3>(k, alpha, a, lda, b + j0, ldb, c + j0, ldc, valid); break;
      default: panel<Rows, 4>(k, alpha, a, lda, b + j0, ldb, c + j0, ldc, valid); break;
    }
  }
}

MLPINFER_DISPATCH
void small_gemm_rows(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                     std::size_t lda, const float* b, std::size_t ldb, float* c,
                     std::size_t ldc) {
  std::size_t r = 0;
  for (; r + 4 <= m; r += 4) panels<4>(n, k, alpha, a + r * lda, lda, b, ldb, c + r * ldc, ldc);
  for (; r + 2 <= m; r += 2) panels<2>(n, k, alpha, a + r * lda, lda, b, ldb, c + r * ldc, ldc);
  if (r < m) panels<1>(n, k, alpha, a + r * lda, lda, b, ldb, c + r * ldc, ldc);
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
  const auto* base = static_cast<const unsigned char*>(src.data);
  for (std::size_t r = 0; r < rows; ++r) {
    const unsigned char* row =
        base + static_cast<std::ptrdiff_t>(first_row + r) * src.row_stride_bytes;
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

void small_gemm(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc) {
  small_gemm_rows(m, n, k, alpha, a, lda, b, ldb, c, ldc);
}

void gather_rows(const InputView& src, std::size_t first_row, std::size_t rows, float* dst) {
  switch (src.type) {
    case ElementType::float32: gather_float(src, first_row, rows, dst); break;
    case ElementType::float64: gather_double(src, first_row, rows, dst); break;
    case ElementType::uint8: gather_uint8(src, first_row, rows, dst); break;
  }
}

}  // namespace mlpinfer::kernels
