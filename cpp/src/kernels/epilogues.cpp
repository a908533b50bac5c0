// Epilogues: bias, LayerNorm and activation applied to a product's output while it is
// still in cache, for row-major results (bias_activation) and tiles (tile_bias_activation).
// A row gets the same arithmetic in both, so its result does not depend on the path it
// took. The activation is chosen once per call (per layer), never per element.
// Generated code (GCC 12.2, objdump and stack-traffic on each activation's loop alone):
// on avx2 and avx512 every element-wise activation keeps its vectors in registers, no
// spill; softplus reads the two integer masks of log_vec from the stack, where they were
// hoisted out of its loop. normalize_lanes's lane loops run on ymm (avx2) and zmm
// (avx512) vectors of doubles.
#include <cmath>
#include <cstring>
#include <limits>

#include "family_api.hpp"
#include "vector_math.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {
namespace {

constexpr float kInfinity = std::numeric_limits<float>::infinity();

// x * g(x), where g(-inf) = 0: -inf * 0 is taken as the limit, -0.0, not NaN.
inline Vec gated(Vec x, Vec g) { return x == -kInfinity ? splat(-0.0f) : x * g; }

struct Identity {
  Vec operator()(Vec v) const { return v; }
};

struct Relu {
  // NaN fails the test and passes through, as in NumPy
  Vec operator()(Vec v) const { return v < 0.0f ? splat(0.0f) : v; }
};

struct Sigmoid {
  Vec operator()(Vec v) const { return sigmoid_vec(v); }
};

struct Tanh {
  Vec operator()(Vec v) const { return tanh_vec(v); }
};

struct LeakyRelu {
  float slope;
  Vec operator()(Vec v) const { return v < 0.0f ? v * slope : v; }
};

// v >= 0 keeps -0.0 as it is; NaN takes expm1: NaN.
struct Elu {
  float alpha;
  Vec operator()(Vec v) const { return v >= 0.0f ? v : alpha * expm1_nonpositive(v); }
};

struct Selu {
  // PyTorch's and Keras's constants (Klambauer et al. 2017); kScaleAlpha is their
  // product rounded once.
  static constexpr float kScale = 1.0507009873554804934f;
  static constexpr float kScaleAlpha = 1.7580993408473766f;
  Vec operator()(Vec v) const {
    return v >= 0.0f ? kScale * v : kScaleAlpha * expm1_nonpositive(v);
  }
};

// x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2: for x < 0 from the tail of erfc, which
// keeps its relative accuracy where 1 + erf(x / sqrt 2) would cancel.
struct Gelu {
  Vec operator()(Vec x) const {
    const Vec half_tail = 0.5f * erfc_nonnegative(abs_vec(x) * 0.70710678118654752f);
    return gated(x, x >= 0.0f ? 1.0f - half_tail : half_tail);
  }
};

// 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), written as x * sigmoid(2u):
// the same function without the cancellation of 1 + tanh(u) for x < 0.
struct GeluTanh {
  Vec operator()(Vec x) const {
    const Vec twice_u = x * mul_add(x * x, splat(0.07135481627260025f), splat(1.5957691216057308f));
    return gated(x, sigmoid_vec(twice_u));
  }
};

struct Silu {
  Vec operator()(Vec x) const { return gated(x, sigmoid_vec(x)); }
};

// log(1 + e^x) = max(x, 0) + log1p(e^-|x|): nothing overflows; NaN stays NaN.
struct Softplus {
  Vec operator()(Vec x) const {
    const Vec positive = x > 0.0f ? x : splat(0.0f);
    return positive + log1p_nonnegative(exp_nonpositive(-abs_vec(x)));
  }
};

// max(0, min(1, slope * x + offset)); NaN fails both tests and passes through.
struct HardSigmoid {
  float slope;
  float offset;
  Vec operator()(Vec x) const {
    Vec v = mul_add(x, splat(slope), splat(offset));
    v = v < 0.0f ? splat(0.0f) : v;
    return v > 1.0f ? splat(1.0f) : v;
  }
};

// Calls apply(f) with the function object of an element-wise activation (identity for
// softmax and log_softmax, which work on whole rows and are applied apart).
template <typename Apply>
void with_activation(const ActivationSpec& activation, Apply&& apply) {
  switch (activation.kind) {
    case Activation::identity:
    case Activation::softmax:
    case Activation::log_softmax: apply(Identity{}); break;
    case Activation::relu: apply(Relu{}); break;
    case Activation::sigmoid: apply(Sigmoid{}); break;
    case Activation::tanh: apply(Tanh{}); break;
    case Activation::leaky_relu: apply(LeakyRelu{activation.alpha}); break;
    case Activation::elu: apply(Elu{activation.alpha}); break;
    case Activation::selu: apply(Selu{}); break;
    case Activation::gelu: apply(Gelu{}); break;
    case Activation::gelu_tanh: apply(GeluTanh{}); break;
    case Activation::silu: apply(Silu{}); break;
    case Activation::softplus: apply(Softplus{}); break;
    case Activation::hard_sigmoid: apply(HardSigmoid{activation.alpha, activation.beta}); break;
  }
}

bool is_row_activation(const ActivationSpec& activation) {
  return activation.kind == Activation::softmax || activation.kind == Activation::log_softmax;
}

bool has_norm(const Epilogue& epilogue) {
  return epilogue.norm != nullptr && epilogue.norm->present();
}

// row[c] = f(row[c]), kLanes at a time; the tail goes through a padded copy.
template <typename F>
void map_row(float* row, std::size_t width, F f) {
  std::size_t c = 0;
  for (; c + kLanes <= width; c += kLanes) store(row + c, f(load(row + c)));
  if (c < width) {
    float tail[kLanes] = {};
    std::memcpy(tail, row + c, (width - c) * sizeof(float));
    store(tail, f(load(tail)));
    std::memcpy(row + c, tail, (width - c) * sizeof(float));
  }
}

void add_bias_rows(float* tile, std::size_t rows, std::size_t width, const float* bias) {
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = tile + r * width;
    for (std::size_t c = 0; c < width; ++c) row[c] += bias[c];
  }
}

float row_max(const float* row, std::size_t width) {
  float top = -kInfinity;
  for (std::size_t c = 0; c < width; ++c) {
    top = row[c] > top ? row[c] : top;  // skips NaN; the sum after carries it
  }
  return top;
}

Vec lane_max(const float* tile, std::size_t width, std::size_t lane) {
  Vec top = splat(-kInfinity);
  for (std::size_t f = 0; f < width; ++f) {
    const Vec v = load(tile + f * kTileRows + lane);
    top = v > top ? v : top;  // skips NaN; the sum after carries it
  }
  return top;
}

void softmax_row(float* row, std::size_t width) {
  const float shift = row_max(row, width);
  map_row(row, width, [&](Vec v) { return exp_vec(v - shift); });
  float sum = 0.0f;
  for (std::size_t c = 0; c < width; ++c) sum += row[c];
  const float inverse = 1.0f / sum;
  for (std::size_t c = 0; c < width; ++c) row[c] *= inverse;
}

// x - max - log(sum e^(x - max)): the log of the softmax without its rounding. The sum
// is accumulated in double (its float rounding would be the output's absolute error:
// 1e-6 at 513 outputs when it was summed in float; 1.2e-7 x max(1, |y|) at 2 to 2,000
// outputs now, against float64 on random rows, Sapphire Rapids Xeon, avx512) and
// rounded to float once.
void log_softmax_row(float* row, std::size_t width) {
  const float shift = row_max(row, width);
  double sum = 0.0;
  for (std::size_t c = 0; c < width; c += kLanes) {
    const std::size_t part = width - c < kLanes ? width - c : kLanes;
    float exps[kLanes] = {};
    std::memcpy(exps, row + c, part * sizeof(float));
    store(exps, exp_vec(load(exps) - shift));
    for (std::size_t j = 0; j < part; ++j) sum += static_cast<double>(exps[j]);
  }
  float log_sum[kLanes];
  store(log_sum, log_vec(splat(static_cast<float>(sum))));
  map_row(row, width, [&](Vec v) { return (v - shift) - log_sum[0]; });
}

// Softmax across the features of each lane, in the same order of operations as
// softmax_row.
void softmax_lanes(float* tile, std::size_t width, std::size_t lanes) {
  for (std::size_t lane = 0; lane < lanes; lane += kLanes) {
    const Vec shift = lane_max(tile, width, lane);
    Vec sum = splat(0.0f);
    for (std::size_t f = 0; f < width; ++f) {
      float* at = tile + f * kTileRows + lane;
      const Vec e = exp_vec(load(at) - shift);
      store(at, e);
      sum += e;
    }
    const Vec inverse = 1.0f / sum;
    for (std::size_t f = 0; f < width; ++f) {
      float* at = tile + f * kTileRows + lane;
      store(at, load(at) * inverse);
    }
  }
}

// log_softmax_row on each lane: each lane's sum in double, in feature order.
void log_softmax_lanes(float* tile, std::size_t width, std::size_t lanes) {
  for (std::size_t lane = 0; lane < lanes; lane += kLanes) {
    const Vec shift = lane_max(tile, width, lane);
    DoubleVec low = splat_double(0.0);
    DoubleVec high = splat_double(0.0);
    for (std::size_t f = 0; f < width; ++f) {
      const Vec e = exp_vec(load(tile + f * kTileRows + lane) - shift);
      low += widen_low(e);
      high += widen_high(e);
    }
    float sums[kLanes];
    store_narrowed(sums, low);
    store_narrowed(sums + kLanes / 2, high);
    const Vec log_sum = log_vec(load(sums));
    for (std::size_t f = 0; f < width; ++f) {
      float* at = tile + f * kTileRows + lane;
      store(at, (load(at) - shift) - log_sum);
    }
  }
}

// LayerNorm's arithmetic on one value, shared by the row and the tile path so that both
// give the same bits: mean and variance in double (summed in feature order), each
// output rounded to float once. The double sums make the result exact to the float's
// rounding for any width, and depend on nothing but the row.
inline double inverse_deviation(double squares, std::size_t width, float epsilon) {
  return 1.0 / std::sqrt(squares / static_cast<double>(width) + static_cast<double>(epsilon));
}

inline float normalized(float y, double mean, double inverse, float gamma, float beta) {
  return static_cast<float>((static_cast<double>(y) - mean) * inverse * static_cast<double>(gamma) +
                            static_cast<double>(beta));
}

// A lone row's sums are one chain of dependent double adds each (the tile's lanes make
// them independent): kernel_bench, Sapphire Rapids Xeon under load, relu + LayerNorm over
// 100 features, 160-220 ns for one row against 27-36 ns a row in a tile.
void normalize_row(float* row, std::size_t width, const LayerNormSpec& norm) {
  double sum = 0.0;
  for (std::size_t c = 0; c < width; ++c) sum += static_cast<double>(row[c]);
  const double mean = sum / static_cast<double>(width);
  double squares = 0.0;
  for (std::size_t c = 0; c < width; ++c) {
    const double deviation = static_cast<double>(row[c]) - mean;
    squares += deviation * deviation;
  }
  const double inverse = inverse_deviation(squares, width, norm.epsilon);
  for (std::size_t c = 0; c < width; ++c) {
    row[c] = normalized(row[c], mean, inverse, norm.gamma[c], norm.beta[c]);
  }
}

// normalize_row on each lane of a tile: the loops run over lanes innermost, which the
// compiler vectorises (each lane's sums stay in feature order).
void normalize_lanes(float* tile, std::size_t width, std::size_t lanes,
                     const LayerNormSpec& norm) {
  double mean[kTileRows] = {};
  for (std::size_t f = 0; f < width; ++f) {
    const float* values = tile + f * kTileRows;
    for (std::size_t lane = 0; lane < lanes; ++lane) mean[lane] += static_cast<double>(values[lane]);
  }
  for (std::size_t lane = 0; lane < lanes; ++lane) mean[lane] /= static_cast<double>(width);
  double inverse[kTileRows] = {};
  for (std::size_t f = 0; f < width; ++f) {
    const float* values = tile + f * kTileRows;
    for (std::size_t lane = 0; lane < lanes; ++lane) {
      const double deviation = static_cast<double>(values[lane]) - mean[lane];
      inverse[lane] += deviation * deviation;
    }
  }
  for (std::size_t lane = 0; lane < lanes; ++lane) {
    inverse[lane] = inverse_deviation(inverse[lane], width, norm.epsilon);
  }
  for (std::size_t f = 0; f < width; ++f) {
    float* values = tile + f * kTileRows;
    const float gamma = norm.gamma[f];
    const float beta = norm.beta[f];
    for (std::size_t lane = 0; lane < lanes; ++lane) {
      values[lane] = normalized(values[lane], mean[lane], inverse[lane], gamma, beta);
    }
  }
}

// tile[f][lane] = f(tile[f][lane] + bias[f]) in one pass.
template <typename F>
void map_tile(float* tile, std::size_t width, std::size_t lanes, const float* bias, F f) {
  for (std::size_t feature = 0; feature < width; ++feature) {
    const Vec b = splat(bias[feature]);
    for (std::size_t lane = 0; lane < lanes; lane += kLanes) {
      float* at = tile + feature * kTileRows + lane;
      store(at, f(load(at) + b));
    }
  }
}

// tile[f][lane] = f(tile[f][lane]).
template <typename F>
void map_lanes(float* tile, std::size_t width, std::size_t lanes, F f) {
  for (std::size_t feature = 0; feature < width; ++feature) {
    for (std::size_t lane = 0; lane < lanes; lane += kLanes) {
      float* at = tile + feature * kTileRows + lane;
      store(at, f(load(at)));
    }
  }
}

void activate_rows(float* tile, std::size_t rows, std::size_t width,
                   const ActivationSpec& activation) {
  if (activation.kind == Activation::softmax) {
    for (std::size_t r = 0; r < rows; ++r) softmax_row(tile + r * width, width);
  } else if (activation.kind == Activation::log_softmax) {
    for (std::size_t r = 0; r < rows; ++r) log_softmax_row(tile + r * width, width);
  } else if (activation.kind != Activation::identity) {
    // Element-wise: over the whole output as one flat array, no per-row tail.
    with_activation(activation, [&](auto f) { map_row(tile, rows * width, f); });
  }
}

void activate_lanes(float* tile, std::size_t width, std::size_t lanes,
                    const ActivationSpec& activation) {
  if (activation.kind == Activation::softmax) {
    softmax_lanes(tile, width, lanes);
  } else if (activation.kind == Activation::log_softmax) {
    log_softmax_lanes(tile, width, lanes);
  } else if (activation.kind != Activation::identity) {
    with_activation(activation, [&](auto f) { map_lanes(tile, width, lanes, f); });
  }
}

}  // namespace

void bias_activation(float* tile, std::size_t rows, std::size_t width, const Epilogue& epilogue) {
  add_bias_rows(tile, rows, width, epilogue.bias);
  const bool norm = has_norm(epilogue);
  if (norm && !epilogue.norm->after_activation) {
    for (std::size_t r = 0; r < rows; ++r) normalize_row(tile + r * width, width, *epilogue.norm);
  }
  activate_rows(tile, rows, width, epilogue.activation);
  if (norm && epilogue.norm->after_activation) {
    for (std::size_t r = 0; r < rows; ++r) normalize_row(tile + r * width, width, *epilogue.norm);
  }
}

void tile_bias_activation(float* tile, std::size_t width, std::size_t lanes,
                          const Epilogue& epilogue) {
  const ActivationSpec& activation = epilogue.activation;
  if (!has_norm(epilogue) && !is_row_activation(activation)) {
    // The common case in one pass over the tile: bias and activation together.
    with_activation(activation, [&](auto f) { map_tile(tile, width, lanes, epilogue.bias, f); });
    return;
  }
  map_tile(tile, width, lanes, epilogue.bias, Identity{});
  const bool norm = has_norm(epilogue);
  if (norm && !epilogue.norm->after_activation) normalize_lanes(tile, width, lanes, *epilogue.norm);
  activate_lanes(tile, width, lanes, activation);
  if (norm && epilogue.norm->after_activation) normalize_lanes(tile, width, lanes, *epilogue.norm);
}

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
