// The core on its own, without Python: every fast path against a naive double-precision
// forward pass at awkward sizes (STYLE.md: kernels tested against a naive reference).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels.hpp"
#include "kernels/kernel_table.hpp"
#include "mlpinfer/network.hpp"
#include "output_digest.hpp"

namespace {

int failures = 0;

void check(bool condition, const std::string& what) {
  if (!condition) {
    ++failures;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

using mlpinfer::Activation;

double activate(const mlpinfer::ActivationSpec& activation, double x) {
  const double alpha = activation.alpha;
  switch (activation.kind) {
    case Activation::identity: return x;
    case Activation::sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case Activation::relu: return x < 0.0 ? 0.0 : x;
    case Activation::tanh: return std::tanh(x);
    case Activation::softmax: return x;      // applied per row below
    case Activation::log_softmax: return x;  // applied per row below
    case Activation::leaky_relu: return x < 0.0 ? alpha * x : x;
    case Activation::elu: return x >= 0.0 ? x : alpha * std::expm1(x);
    case Activation::selu:
      return 1.0507009873554804934 * (x >= 0.0 ? x : 1.6732632423543772848 * std::expm1(x));
    case Activation::gelu: return x * 0.5 * std::erfc(-x / std::sqrt(2.0));
    case Activation::gelu_tanh:
      return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case Activation::silu: return x / (1.0 + std::exp(-x));
    case Activation::softplus: return x > 0.0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
    case Activation::hard_sigmoid: return std::min(1.0, std::max(0.0, alpha * x + activation.beta));
  }
  return x;
}

// Softmax or log_softmax of one row, in place.
void activate_row(Activation activation, double* z, std::size_t width) {
  double top = -INFINITY;
  for (std::size_t j = 0; j < width; ++j) top = std::fmax(top, z[j]);
  double total = 0.0;
  for (std::size_t j = 0; j < width; ++j) total += std::exp(z[j] - top);
  for (std::size_t j = 0; j < width; ++j) {
    z[j] = activation == Activation::softmax ? std::exp(z[j] - top) / total
                                             : z[j] - top - std::log(total);
  }
}

void layer_norm(const mlpinfer::LayerNormSpec& norm, double* z, std::size_t width) {
  double mean = 0.0, variance = 0.0;
  for (std::size_t j = 0; j < width; ++j) mean += z[j] / static_cast<double>(width);
  for (std::size_t j = 0; j < width; ++j) variance += (z[j] - mean) * (z[j] - mean) / static_cast<double>(width);
  for (std::size_t j = 0; j < width; ++j) {
    z[j] = (z[j] - mean) / std::sqrt(variance + norm.epsilon) * norm.gamma[j] + norm.beta[j];
  }
}

// The layers on `rows` rows of inputs `a`, in double.
std::vector<double> naive_layers(const std::vector<mlpinfer::DenseLayer>& layers,
                                 std::vector<double> a, std::size_t rows) {
  for (const auto& layer : layers) {
    std::vector<double> z(rows * layer.outputs);
    const Activation kind = layer.activation.kind;
    for (std::size_t r = 0; r < rows; ++r) {
      double* row = &z[r * layer.outputs];
      for (std::size_t j = 0; j < layer.outputs; ++j) {
        double sum = layer.bias[j];
        for (std::size_t i = 0; i < layer.inputs; ++i) {
          sum += a[r * layer.inputs + i] * layer.weights[i * layer.outputs + j];
        }
        row[j] = sum;
      }
      if (layer.norm.present() && !layer.norm.after_activation) layer_norm(layer.norm, row, layer.outputs);
      for (std::size_t j = 0; j < layer.outputs; ++j) row[j] = activate(layer.activation, row[j]);
      if (kind == Activation::softmax || kind == Activation::log_softmax) {
        activate_row(kind, row, layer.outputs);
      }
      if (layer.norm.present() && layer.norm.after_activation) layer_norm(layer.norm, row, layer.outputs);
    }
    a = std::move(z);
  }
  return a;
}

std::vector<double> naive_forward(const std::vector<mlpinfer::DenseLayer>& layers,
                                  const std::vector<float>& x, std::size_t rows, double scale) {
  std::vector<double> a(x.begin(), x.end());
  for (double& v : a) v *= scale;
  return naive_layers(layers, std::move(a), rows);
}

// The largest |y - expected| / max(1, |expected|); NaN if any is NaN.
double worst_relative_error(const std::vector<float>& y, const std::vector<double>& expected) {
  double worst = 0.0;
  for (std::size_t k = 0; k < y.size(); ++k) {
    const double error = std::fabs(y[k] - expected[k]) / std::max(1.0, std::fabs(expected[k]));
    worst = error > worst || std::isnan(error) ? error : worst;  // NaN sticks
  }
  return worst;
}

std::vector<mlpinfer::DenseLayer> random_layers(const std::vector<std::size_t>& widths,
                                                Activation hidden, Activation output,
                                                std::mt19937& rng) {
  std::vector<mlpinfer::DenseLayer> layers;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    mlpinfer::DenseLayer layer;
    layer.inputs = widths[l];
    layer.outputs = widths[l + 1];
    std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(widths[l])));
    for (std::size_t k = 0; k < layer.inputs * layer.outputs; ++k) layer.weights.push_back(normal(rng));
    for (std::size_t k = 0; k < layer.outputs; ++k) layer.bias.push_back(normal(rng));
    layer.activation = {l + 2 == widths.size() ? output : hidden};
    layers.push_back(std::move(layer));
  }
  return layers;
}

void test_against_naive_reference() {
  std::mt19937 rng(7);
  const Activation hidden[] = {Activation::identity, Activation::sigmoid, Activation::relu,
                               Activation::tanh};
  for (std::size_t width : {1, 50, 513}) {
    // 15 rows: a half tile; 24: a partial tile; 40: a tile and 8 rows in the row kernel;
    // 50: a tile, a half tile and 2 rows.
    for (std::size_t rows : {1, 7, 15, 24, 40, 50, 300}) {
      for (Activation h : hidden) {
        for (Activation out : {Activation::softmax, Activation::tanh, Activation::identity}) {
          auto layers = random_layers({width, 37, 130, 5}, h, out, rng);
          const mlpinfer::Network network(layers);
          std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
          std::vector<float> x(rows * width);
          for (float& v : x) v = uniform(rng);
          // Mostly zeros (+0.0 and -0.0), like digits: the kernels skip those inputs.
          if (out == Activation::tanh) {
            for (float& v : x) v = rng() % 5 == 0 ? v : (rng() % 2 == 0 ? 0.0f : -0.0f);
          }
          std::vector<float> y(rows * 5);
          const mlpinfer::InputView view{x.data(), mlpinfer::ElementType::float32, rows, width,
                                         static_cast<std::ptrdiff_t>(width * sizeof(float)),
                                         sizeof(float)};
          network.forward(view, 0.5f, y.data(), 2);
          const auto expected = naive_forward(layers, x, rows, 0.5);
          // Not std::fmax, which drops NaN (a NaN output would pass) and, reducing a
          // float widened to double, crashes GCC 12.2's aarch64 vectoriser at -O3
          // (internal compiler error in vect_transform_reduction).
          double worst = 0.0;
          for (std::size_t k = 0; k < y.size(); ++k) {
            const double error = std::fabs(y[k] - expected[k]);
            worst = error > worst || std::isnan(error) ? error : worst;  // NaN sticks
          }
          check(worst <= 1e-5, "width " + std::to_string(width) + ", rows " + std::to_string(rows) +
                                   ": max error " + std::to_string(worst));
        }
      }
    }
  }
}

// The activations with parameters and LayerNorm, on every batch path, against the naive
// double-precision pass (the same networks as the output digest's "every activation").
void test_modern_layers_against_naive_reference() {
  mlpinfer::testing::SplitMix64 rng(21);
  for (int variant = 0; variant < 2; ++variant) {
    auto layers = mlpinfer::testing::modern_layers(rng);
    if (variant == 1) {  // an identity output layer (double accumulators) with a LayerNorm
      layers.back().activation = {Activation::identity};
      mlpinfer::testing::add_layer_norm(layers.back(), 1e-5f, false, rng);
    }
    const mlpinfer::Network network(layers);
    for (std::size_t rows : {1, 7, 15, 24, 40, 50, 300}) {
      std::vector<float> x(rows * 60);
      for (float& v : x) v = 3.0f * rng.symmetric();
      std::vector<float> y(rows * 6);
      network.forward({x.data(), mlpinfer::ElementType::float32, rows, 60, 240, 4}, 1.0f, y.data(), 2);
      const auto expected = naive_forward(layers, x, rows, 1.0);
      const double worst = worst_relative_error(y, expected);
      check(worst <= 1e-5, "modern layers, variant " + std::to_string(variant) + ", rows " +
                               std::to_string(rows) + ": max error " + std::to_string(worst));
    }
  }
}

// Features near 2000 with spreads near 10 through an input transform, as float64 rows
// (every batch path) and as uint8 pixels with a scale, against the transform in double.
void test_input_transform_against_naive_reference() {
  std::mt19937 rng(11);
  for (std::size_t width : {1, 50, 513}) {
    auto layers = random_layers({width, 37, 5}, Activation::tanh, Activation::identity, rng);
    mlpinfer::InputTransform transform;
    std::normal_distribution<double> normal(0.0, 1.0);
    for (std::size_t c = 0; c < width; ++c) {
      transform.shift.push_back(2000.0 + 50.0 * normal(rng));
      transform.multiplier.push_back(1.0 / (10.0 + 5.0 * std::fabs(normal(rng))));
    }
    const mlpinfer::Network network(layers, transform);
    for (std::size_t rows : {1, 7, 15, 24, 40, 50, 300}) {
      std::vector<double> x(rows * width), transformed(rows * width);
      for (std::size_t k = 0; k < x.size(); ++k) {
        const std::size_t c = k % width;
        x[k] = transform.shift[c] + normal(rng) / transform.multiplier[c];
        transformed[k] = (x[k] - transform.shift[c]) * transform.multiplier[c];
      }
      std::vector<float> y(rows * 5);
      network.forward({x.data(), mlpinfer::ElementType::float64, rows, width,
                       static_cast<std::ptrdiff_t>(width * sizeof(double)), sizeof(double)},
                      1.0f, y.data(), 2);
      const auto expected = naive_layers(layers, transformed, rows);
      const double worst = worst_relative_error(y, expected);
      check(worst <= 1e-5, "input transform, width " + std::to_string(width) + ", rows " +
                               std::to_string(rows) + ": max error " + std::to_string(worst));
    }
  }
  // uint8 pixels: the scale multiplies before the transform.
  auto layers = random_layers({20, 9, 3}, Activation::relu, Activation::softmax, rng);
  const mlpinfer::InputTransform transform{std::vector<double>(20, 0.5),
                                           std::vector<double>(20, 4.0)};
  const mlpinfer::Network network(layers, transform);
  std::vector<std::uint8_t> pixels(40 * 20);
  std::vector<double> transformed(pixels.size());
  for (std::size_t k = 0; k < pixels.size(); ++k) {
    pixels[k] = static_cast<std::uint8_t>(rng());
    transformed[k] = (pixels[k] * static_cast<double>(1.0f / 255) - 0.5) * 4.0;
  }
  std::vector<float> y(40 * 3);
  network.forward({pixels.data(), mlpinfer::ElementType::uint8, 40, 20, 20, 1}, 1.0f / 255,
                  y.data(), 1);
  const auto expected = naive_layers(layers, transformed, 40);
  double worst = 0.0;
  for (std::size_t k = 0; k < y.size(); ++k) {
    const double error = std::fabs(y[k] - expected[k]);
    worst = error > worst || std::isnan(error) ? error : worst;
  }
  check(worst <= 1e-6, "input transform on uint8 pixels: max error " + std::to_string(worst));
}

void test_uint8_rows_read_in_place() {
  std::mt19937 rng(3);
  auto layers = random_layers({784, 50, 100, 10}, Activation::sigmoid, Activation::softmax, rng);
  const mlpinfer::Network network(layers);
  const std::size_t rows = 33;
  std::vector<std::uint8_t> pixels(rows * 784);
  std::vector<float> as_float(rows * 784);
  for (std::size_t k = 0; k < pixels.size(); ++k) as_float[k] = pixels[k] = static_cast<std::uint8_t>(rng());
  std::vector<float> from_pixels(rows * 10), from_floats(rows * 10);
  network.forward({pixels.data(), mlpinfer::ElementType::uint8, rows, 784, 784, 1}, 1.0f / 255,
                  from_pixels.data(), 1);
  network.forward({as_float.data(), mlpinfer::ElementType::float32, rows, 784, 784 * 4, 4},
                  1.0f / 255, from_floats.data(), 1);
  check(from_pixels == from_floats, "uint8 pixels and the same values as floats differ");
}

// Whether `network` gives each row of `view`, in one batch on `threads` threads, the bits
// it gives that row alone (the row kernel), with input_scale 1/255.
bool batch_equals_single_rows(const mlpinfer::Network& network, const mlpinfer::InputView& view,
                              std::size_t outputs, unsigned threads) {
  std::vector<float> whole(view.rows * outputs), single(view.rows * outputs);
  network.forward(view, 1.0f / 255, whole.data(), threads);
  for (std::size_t r = 0; r < view.rows; ++r) {
    mlpinfer::InputView row = view;
    row.data = static_cast<const unsigned char*>(view.data) +
               static_cast<std::ptrdiff_t>(r) * view.row_stride_bytes;
    row.rows = 1;
    network.forward(row, 1.0f / 255, single.data() + r * outputs, 1);
  }
  return std::memcmp(whole.data(), single.data(), whole.size() * sizeof(float)) == 0;
}

// The tiles' lists of nonzero inputs (found by load_tile, for the tile and for each lane
// group) against rows run one at a time, which scan their own: bit for bit. Each input
// feature is nonzero in one row only (a different lane group from feature to feature),
// some inputs are -0.0, the width is no multiple of any vector, and the same values come
// as float32 (contiguous and strided), float64 and uint8; hidden layers after ReLU are
// scanned, after sigmoid not.
void test_tile_zero_lists_match_single_rows() {
  std::mt19937 rng(11);
  const std::size_t rows = 70;  // two tiles and a half tile's worth
  const std::size_t width = 37;
  for (const Activation hidden : {Activation::relu, Activation::sigmoid}) {
    const mlpinfer::Network network(random_layers({width, 23, 19, 5}, hidden,
                                                  Activation::softmax, rng));
    std::vector<std::uint8_t> pixels(rows * width, 0);
    for (std::size_t f = 0; f < width; ++f) {
      pixels[((f * 7) % rows) * width + f] = static_cast<std::uint8_t>(1 + rng() % 255);
    }
    std::vector<float> x(pixels.begin(), pixels.end());
    for (std::size_t k = 3; k < x.size(); k += 11) {
      if (x[k] == 0.0f) x[k] = -0.0f;
    }
    std::vector<double> x64(x.begin(), x.end());
    std::vector<float> strided(2 * x.size(), 5.0f);
    for (std::size_t k = 0; k < x.size(); ++k) strided[2 * k] = x[k];
    const auto stride = static_cast<std::ptrdiff_t>(width);
    const mlpinfer::InputView views[] = {
        {x.data(), mlpinfer::ElementType::float32, rows, width, stride * 4, 4},
        {strided.data(), mlpinfer::ElementType::float32, rows, width, stride * 8, 8},
        {x64.data(), mlpinfer::ElementType::float64, rows, width, stride * 8, 8},
        {pixels.data(), mlpinfer::ElementType::uint8, rows, width, stride, 1}};
    for (const mlpinfer::InputView& view : views) {
      check(batch_equals_single_rows(network, view, 5, 1),
            std::string("tiles and single rows differ (") + mlpinfer::activation_name(hidden) +
                " hidden layers, element stride " + std::to_string(view.col_stride_bytes) + ")");
    }
  }
}

// Sparse rows with the values that break careless arithmetic: -0.0, subnormals, values
// near the float range's ends, infinities and a NaN, about `density` of them nonzero.
std::vector<float> hostile_sparse_rows(std::size_t rows, std::size_t width, double density,
                                       std::mt19937& rng) {
  const float pool[] = {0.5f, -1.25f, 3.0e-39f, -7.0e-42f, 1.0e30f, -2.0e-30f, 0.003921569f,
                        -0.0f, 1.0f, 250.0f};
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::vector<float> x(rows * width, 0.0f);
  for (float& v : x) {
    if (coin(rng) < density) v = pool[rng() % std::size(pool)];
  }
  if (rows > 2 && width > 2) {
    x[1 * width + width / 2] = INFINITY;
    x[2 * width + width - 1] = NAN;
  }
  return x;
}

// The first layer row by row (sparse_rows_gemm) against the tile (load_tile, tile_gemm),
// bit for bit on every lane, in the family in use, at widths around the 64-input mask
// words and the vector widths, on hostile sparse rows; and the masks against a scalar
// scan. Also that such rows cost less row by row, which the network test below needs.
void test_sparse_rows_match_tile_gemm() {
  namespace k = mlpinfer::kernels;
  const k::KernelTable& kernels = k::active_kernels();
  std::mt19937 rng(23);
  const mlpinfer::InputView no_rows{};
  for (const std::size_t inputs : {1, 5, 63, 64, 65, 200, 784}) {
    for (const std::size_t outputs : {1, 7, 50, 100, 130}) {  // 130: two panels on AVX-512
      for (const std::size_t rows : {1, 7, 16, 21, 32}) {
        const std::size_t lanes = rows <= 16 ? 16 : k::kTileRows;
        const std::vector<float> x = hostile_sparse_rows(rows, inputs, 0.1, rng);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<float> w(inputs * outputs);
        for (float& v : w) v = normal(rng);
        const std::string where = kernels.isa + std::string(", ") + std::to_string(inputs) +
                                  "x" + std::to_string(outputs) + ", " + std::to_string(rows) +
                                  " rows";
        // A negative alpha makes the lanes without a row -0.0 on the tile path.
        const float alpha = rows % 2 == 0 ? 1.0f / 255 : -0.5f;
        // The tile, as Network runs it.
        const mlpinfer::InputView view{x.data(), mlpinfer::ElementType::float32, rows, inputs,
                                       static_cast<std::ptrdiff_t>(inputs * 4), 4};
        std::vector<float> tile(inputs * k::kTileRows);
        std::vector<std::uint32_t> lists((1 + k::kMaxLaneGroups) * inputs + 64);
        k::ActiveInputs groups[k::kMaxLaneGroups];
        const std::size_t count =
            kernels.load_tile(view, 0, rows, lanes, tile.data(), lists.data(), groups);
        const auto panels =
            k::pack_panels(w, inputs, outputs, kernels.tile_panel_width);
        std::vector<float> by_tile(outputs * k::kTileRows, 7.0f);
        k::RowPrefetch prefetch(no_rows, 0, 0);
        kernels.tile_gemm(inputs, {lists.data(), count, true, groups}, outputs, alpha,
                          tile.data(), panels.data(), kernels.tile_panel_width, by_tile.data(),
                          lanes, prefetch);
        // Row by row.
        const std::size_t words = k::mask_words(inputs);
        std::vector<std::uint64_t> masks(rows * words);
        kernels.row_nonzero_masks(x.data(), rows, inputs, inputs, outputs, masks.data());
        bool masks_right = true;
        for (std::size_t r = 0; r < rows; ++r) {
          for (std::size_t i = 0; i < inputs; ++i) {
            const bool set = (masks[r * words + i / 64] >> (i % 64)) & 1u;
            masks_right &= set == (x[r * inputs + i] != 0.0f);
          }
        }
        check(masks_right, where + ": a mask bit differs from its input's being nonzero");
        const auto padded = k::pad_columns(w, inputs, outputs);
        std::vector<float> by_rows(outputs * k::kTileRows, 7.0f);
        std::vector<float> sums(k::kTileRows * k::padded_columns(outputs));
        kernels.sparse_rows_gemm(x.data(), inputs, rows, masks.data(), true, inputs, outputs, alpha,
                                 padded.data(), k::padded_columns(outputs), by_rows.data(),
                                 lanes, sums.data(), prefetch);
        // And with the masks found on the way, in a buffer left with other bits.
        std::vector<std::uint64_t> found(rows * words, 0x5555555555555555u);
        std::vector<float> by_rows_found(outputs * k::kTileRows, 7.0f);
        kernels.sparse_rows_gemm(x.data(), inputs, rows, found.data(), false, inputs, outputs,
                                 alpha, padded.data(), k::padded_columns(outputs),
                                 by_rows_found.data(), lanes, sums.data(), prefetch);
        check(found == masks, where + ": the masks found on the way differ from the scan's");
        bool same = true;
        for (std::size_t c = 0; c < outputs; ++c) {
          for (const std::vector<float>* rows_out : {&by_rows, &by_rows_found}) {
            same &= std::memcmp(rows_out->data() + c * k::kTileRows,
                                by_tile.data() + c * k::kTileRows, lanes * sizeof(float)) == 0;
          }
        }
        check(same, where + ": row by row and the tile differ");
      }
    }
  }
  // Digit-like rows (each about 5% nonzero, in different places) cost less row by row.
  const std::vector<float> sparse = hostile_sparse_rows(32, 784, 0.05, rng);
  std::vector<std::uint64_t> masks(32 * k::mask_words(784));
  const k::SparseRowsCost cost =
      kernels.row_nonzero_masks(sparse.data(), 32, 784, 784, 50, masks.data());
  check(cost.rows < cost.tile, std::string(kernels.isa) + ": 5% nonzero rows cost " +
                                   std::to_string(cost.rows) + " row by row, " +
                                   std::to_string(cost.tile) + " as a tile");
  const std::vector<float> dense(32 * 784, 1.0f);
  const k::SparseRowsCost dense_cost =
      kernels.row_nonzero_masks(dense.data(), 32, 784, 784, 50, masks.data());
  check(dense_cost.rows > dense_cost.tile, std::string(kernels.isa) + ": rows without zeros cost " +
                                               std::to_string(dense_cost.rows) + " row by row, " +
                                               std::to_string(dense_cost.tile) + " as a tile");
}

// A network whose first layer runs row by row (5% nonzero rows: checked below to cost
// less so, at this network's shape, in the family in use) against the same rows one at
// a time (the row kernel), bit for bit, from float32 (contiguous and strided), float64
// and uint8 input; with ReLU hidden layers (scanned for zeros) and sigmoid ones. 50 rows
// on one thread are a half tile (which decides for the block, from masks of its own),
// a tile (which finds its masks on the way) and 2 rows for the row kernel; 114 rows
// three tiles after the half tile, and on 2 threads 57 rows each: 32 and 25.
void test_sparse_first_layer_matches_single_rows() {
  namespace k = mlpinfer::kernels;
  std::mt19937 rng(29);
  const std::size_t most = 114;
  const std::size_t width = 784;
  const std::vector<float> hostile = hostile_sparse_rows(most, width, 0.05, rng);
  for (const std::size_t lanes : {k::kTileRows / 2, k::kTileRows}) {
    std::vector<std::uint64_t> masks(lanes * k::mask_words(width));
    const k::SparseRowsCost cost = k::active_kernels().row_nonzero_masks(
        hostile.data(), lanes, width, width, 50, masks.data());
    check(cost.rows < cost.tile, "the network test's first " + std::to_string(lanes) +
                                     " rows do not cost less row by row");
  }
  std::vector<std::uint8_t> pixels(most * width);
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    pixels[i] = hostile[i] == 0.0f ? 0 : static_cast<std::uint8_t>(1 + rng() % 255);
  }
  const std::vector<float> from_pixels(pixels.begin(), pixels.end());
  for (const Activation hidden : {Activation::relu, Activation::sigmoid}) {
    const mlpinfer::Network network(
        random_layers({width, 50, 100, 10}, hidden, Activation::softmax, rng));
    for (const std::vector<float>* x : {&hostile, &from_pixels}) {
      std::vector<double> x64(x->begin(), x->end());
      std::vector<float> strided(2 * x->size(), 5.0f);
      for (std::size_t i = 0; i < x->size(); ++i) strided[2 * i] = (*x)[i];
      const auto stride = static_cast<std::ptrdiff_t>(width);
      for (const std::size_t rows : {std::size_t{50}, most}) {
        std::vector<mlpinfer::InputView> views = {
            {x->data(), mlpinfer::ElementType::float32, rows, width, stride * 4, 4},
            {strided.data(), mlpinfer::ElementType::float32, rows, width, stride * 8, 8},
            {x64.data(), mlpinfer::ElementType::float64, rows, width, stride * 8, 8}};
        if (x == &from_pixels) {
          views.push_back({pixels.data(), mlpinfer::ElementType::uint8, rows, width, stride, 1});
        }
        for (const mlpinfer::InputView& view : views) {
          for (const unsigned threads : {1u, 2u}) {
            check(batch_equals_single_rows(network, view, 10, threads),
                  std::string("sparse rows: a batch and single rows differ (") +
                      mlpinfer::activation_name(hidden) + " hidden layers, " +
                      (x == &hostile ? "hostile values" : "pixels") + ", " +
                      std::to_string(rows) + " rows, element stride " +
                      std::to_string(view.col_stride_bytes) + ", " + std::to_string(threads) +
                      " threads)");
          }
        }
      }
    }
  }
}

// A NaN input among zeros must reach the sums, in the row kernel and in a tile.
void test_nan_among_zeros_is_not_skipped() {
  std::mt19937 rng(5);
  auto layers = random_layers({100, 30, 4}, Activation::sigmoid, Activation::softmax, rng);
  const mlpinfer::Network network(layers);
  for (std::size_t rows : {1, 3, 40}) {
    std::vector<float> x(rows * 100, 0.0f);
    x[(rows / 2) * 100 + 77] = NAN;
    std::vector<float> y(rows * 4);
    network.forward({x.data(), mlpinfer::ElementType::float32, rows, 100, 400, 4}, 1.0f, y.data(), 1);
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t j = 0; j < 4; ++j) {
        check(std::isnan(y[r * 4 + j]) == (r == rows / 2),
              std::to_string(rows) + " rows: NaN in row " + std::to_string(rows / 2) +
                  " gave " + std::to_string(y[r * 4 + j]) + " in row " + std::to_string(r));
      }
    }
  }
}

// Zero inputs are skipped only where that changes nothing: 0 * inf is NaN, as in NumPy,
// so a layer with a non-finite weight visits every input. (The Python package refuses
// such weights; the core computes them as IEEE arithmetic says.)
void test_zero_input_times_infinite_weight_is_nan() {
  mlpinfer::DenseLayer layer;
  layer.inputs = 3;
  layer.outputs = 2;
  layer.weights = {1.0f, 1.0f, INFINITY, 1.0f, 1.0f, 1.0f};
  layer.bias = {0.0f, 0.0f};
  const mlpinfer::Network network({layer});
  for (std::size_t rows : {1, 40}) {
    std::vector<float> x(rows * 3, 0.0f);
    std::vector<float> y(rows * 2);
    network.forward({x.data(), mlpinfer::ElementType::float32, rows, 3, 12, 4}, 1.0f, y.data(), 1);
    for (std::size_t r = 0; r < rows; ++r) {  // rows 32..39 in the row kernel
      check(std::isnan(y[r * 2]) && y[r * 2 + 1] == 0.0f,
            std::to_string(rows) + " rows: 0 * inf gave " + std::to_string(y[r * 2]) +
                " in row " + std::to_string(r));
    }
  }
}

void test_contract_errors() {
  std::mt19937 rng(1);
  auto layers = random_layers({4, 3, 2}, Activation::relu, Activation::softmax, rng);
  auto bad = layers;
  bad[1].inputs = 5;
  bad[1].weights.resize(10);
  bool thrown = false;
  try {
    mlpinfer::Network{bad};
  } catch (const std::invalid_argument& error) {
    thrown = std::string(error.what()) == "layer 2: W has 5 rows, previous layer has 3 outputs";
  }
  check(thrown, "a broken shape chain is refused with expected and actual sizes");
  const mlpinfer::Network network(layers);
  std::vector<float> x(6), y(4);
  thrown = false;
  try {
    network.forward({x.data(), mlpinfer::ElementType::float32, 2, 3, 12, 4}, 1.0f, y.data(), 1);
  } catch (const std::invalid_argument&) {
    thrown = true;
  }
  check(thrown, "a wrong input width is refused");

  auto refused = [&](std::vector<mlpinfer::DenseLayer> bad_layers, const std::string& message) {
    std::string what;
    try {
      mlpinfer::Network{std::move(bad_layers)};
    } catch (const std::invalid_argument& error) {
      what = error.what();
    }
    check(what == message, "expected '" + message + "', got '" + what + "'");
  };
  auto hidden_log_softmax = layers;
  hidden_log_softmax[0].activation = {Activation::log_softmax};
  refused(hidden_log_softmax, "layer 1: log_softmax is only supported on the last layer");
  auto no_epsilon = layers;
  no_epsilon[0].norm = {{1, 1, 1}, {0, 0, 0}, 0.0f, false};
  refused(no_epsilon, "layer 1: LayerNorm epsilon must be positive and finite, got 0.000000");
  auto short_gamma = layers;
  short_gamma[0].norm = {{1, 1}, {0, 0, 0}, 1e-5f, false};
  refused(short_gamma, "layer 1: LayerNorm gamma and beta must have 3 values (the layer's outputs), got 2 and 3");
  auto after_softmax = layers;
  after_softmax[1].norm = {{1, 1}, {0, 0}, 1e-5f, true};
  refused(after_softmax, "layer 2: a LayerNorm after softmax is not supported");
  auto infinite_slope = layers;
  infinite_slope[0].activation = {Activation::leaky_relu, INFINITY, 0.0f};
  refused(infinite_slope, "layer 1: leaky_relu: parameters must be finite");

  auto transform_refused = [&](mlpinfer::InputTransform transform, const std::string& message) {
    std::string what;
    try {
      mlpinfer::Network{layers, std::move(transform)};
    } catch (const std::invalid_argument& error) {
      what = error.what();
    }
    check(what == message, "expected '" + message + "', got '" + what + "'");
  };
  transform_refused({{0, 0, 0}, {1, 1, 1, 1}},
                    "the input transform must have 4 shifts and multipliers (the network's "
                    "inputs), got 3 and 4");
  transform_refused({{}, {1, 1, 1, 1}},
                    "the input transform must have 4 shifts and multipliers (the network's "
                    "inputs), got 0 and 4");
  transform_refused({{0, NAN, 0, 0}, {1, 1, 1, 1}},
                    "the input transform of feature 1 must be finite, got shift nan and "
                    "multiplier 1.000000");
}

// The kernels' weights and buffers start on a cache line at every size, as they grow,
// and keep their values: a vector load from them never straddles two lines.
void test_weights_and_buffers_start_on_a_cache_line() {
  const auto on_line = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; };
  mlpinfer::CacheAlignedVector<float> grown;
  for (std::size_t size = 1; size <= 3000; size += size / 3 + 1) {
    grown.resize(size, static_cast<float>(size));
    check(on_line(grown.data()), "a buffer of " + std::to_string(size) + " floats on a line");
    check(grown.front() == 1.0f && grown.back() == static_cast<float>(size),
          "a grown buffer keeps its values");
    mlpinfer::CacheAlignedVector<std::uint64_t> words(size);
    check(on_line(words.data()), "a buffer of " + std::to_string(size) + " words on a line");
  }
  const mlpinfer::CacheAlignedVector<float> copied = grown;
  check(on_line(copied.data()) && copied == grown, "a copied buffer on a line, equal");
  const mlpinfer::kernels::KernelTable& kernels = mlpinfer::kernels::active_kernels();
  for (const std::size_t outputs : {1, 7, 50, 513}) {
    const std::vector<float> w(3 * outputs, 0.5f);
    const auto padded = mlpinfer::kernels::pad_columns(w, 3, outputs);
    const auto panels = mlpinfer::kernels::pack_panels(w, 3, outputs, kernels.tile_panel_width);
    check(on_line(padded.data()) && on_line(panels.data()),
          "weights for " + std::to_string(outputs) + " outputs on a line");
  }
}

}  // namespace

// Usage: test_core [ISA]. With an ISA (ctest gives one per kernel family, with
// MLPINFER_MAX_ISA set to it), the tests run only if that family is the one in use, and
// exit 77 (skipped) when this CPU cannot run it.
int main(int argc, char** argv) {
  const mlpinfer::CpuInfo cpu = mlpinfer::cpu_info();
  if (argc > 1 && cpu.isa != argv[1]) {
    std::printf("skipped: kernels '%s' asked for, this CPU runs '%s' at most\n", argv[1],
                cpu.isa.c_str());
    return 77;
  }
  std::printf("kernels in use: %s\n", cpu.isa.c_str());
  std::printf("output digest: %s\n", mlpinfer::testing::output_digest().c_str());
  test_against_naive_reference();
  test_modern_layers_against_naive_reference();
  test_input_transform_against_naive_reference();
  test_uint8_rows_read_in_place();
  test_contract_errors();
  test_zero_input_times_infinite_weight_is_nan();
  test_nan_among_zeros_is_not_skipped();
  test_tile_zero_lists_match_single_rows();
  test_sparse_rows_match_tile_gemm();
  test_sparse_first_layer_matches_single_rows();
  test_weights_and_buffers_start_on_a_cache_line();
  std::printf("%s\n", failures == 0 ? "all core tests passed" : "core tests FAILED");
  return failures == 0 ? 0 : 1;
}
