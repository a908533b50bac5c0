// Epilogues: bias and activation applied to a product's output while it is still in
// cache, for row-major results (bias_activation) and tiles (tile_bias_activation). A row
// gets the same arithmetic in both, so its result does not depend on the path it took.
#include <cstring>
#include <limits>

#include "family_api.hpp"
#include "vector_math.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {
namespace {

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

struct ShiftedExp {
  float shift;
  Vec operator()(Vec v) const { return exp_vec(v - shift); }
};

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

void softmax_row(float* row, std::size_t width, const float* bias) {
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

// Softmax across the features of each lane, in the same order of operations as
// softmax_row.
void softmax_lanes(float* tile, std::size_t width, std::size_t lanes) {
  for (std::size_t lane = 0; lane < lanes; lane += kLanes) {
    Vec lane_max = splat(-std::numeric_limits<float>::infinity());
    for (std::size_t f = 0; f < width; ++f) {
      const Vec v = load(tile + f * kTileRows + lane);
      lane_max = v > lane_max ? v : lane_max;  // skips NaN; the sum below carries it
    }
    Vec sum = splat(0.0f);
    for (std::size_t f = 0; f < width; ++f) {
      float* at = tile + f * kTileRows + lane;
      const Vec e = exp_vec(load(at) - lane_max);
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

}  // namespace

// The element-wise activations run over the whole output as one flat array: no per-row
// tail.
void bias_activation(float* tile, std::size_t rows, std::size_t width, const float* bias,
                     Activation activation) {
  if (activation == Activation::softmax) {
    for (std::size_t r = 0; r < rows; ++r) softmax_row(tile + r * width, width, bias);
    return;
  }
  add_bias_rows(tile, rows, width, bias);
  switch (activation) {
    case Activation::identity: break;
    case Activation::relu: map_row(tile, rows * width, Relu{}); break;
    case Activation::sigmoid: map_row(tile, rows * width, Sigmoid{}); break;
    case Activation::tanh: map_row(tile, rows * width, Tanh{}); break;
    case Activation::softmax: break;
  }
}

void tile_bias_activation(float* tile, std::size_t width, std::size_t lanes, const float* bias,
                          Activation activation) {
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

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
