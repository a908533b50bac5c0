// A digest of the core's outputs for fixed networks on fixed inputs, with the kernels
// this CPU runs (MLPINFER_MAX_ISA caps them): every FMA family must give the same digest
// on any CPU, x86-64 or aarch64 (README: the same bits on every CPU), the baseline its
// own. test_core prints it; comparing needs two runs, possibly on two machines or under
// qemu: scripts/cross_aarch64.sh compares x86-64's FMA families with aarch64's NEON.
// Inputs and weights come from SplitMix64, not <random>'s distributions, whose results
// the C++ standard leaves to each library. The cases cover every input loader (uint8,
// float64, strided float32), every activation (with parameters), LayerNorm before and
// after an activation and on the double-accumulator output layer,
// every batch-size path from 1 row to several tiles, and two threads.
#pragma once

#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mlpinfer/network.hpp"

namespace mlpinfer::testing {

class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1): 24 random bits, exact in float.
  float symmetric() { return static_cast<float>(next() >> 40) * 0x1p-23f - 1.0f; }
  bool one_in(unsigned n) { return next() % n == 0; }

 private:
  std::uint64_t state_;
};

// FNV-1a, 64 bits, over the bit patterns of the outputs.
class Digest {
 public:
  void add(const std::vector<float>& values) {
    for (const float value : values) {
      std::uint32_t bits;
      std::memcpy(&bits, &value, sizeof bits);
      for (int byte = 0; byte < 4; ++byte) {
        hash_ = (hash_ ^ ((bits >> (8 * byte)) & 0xffu)) * 0x100000001b3u;
      }
    }
  }
  std::uint64_t value() const { return hash_; }

 private:
  std::uint64_t hash_ = 0xcbf29ce484222325u;
};

inline std::vector<mlpinfer::DenseLayer> random_layers(const std::vector<std::size_t>& widths,
                                                       const std::vector<Activation>& activations,
                                                       SplitMix64& rng) {
  std::vector<mlpinfer::DenseLayer> layers;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    mlpinfer::DenseLayer layer;
    layer.inputs = widths[l];
    layer.outputs = widths[l + 1];
    const float scale = 2.0f / std::sqrt(static_cast<float>(widths[l]));
    for (std::size_t k = 0; k < layer.inputs * layer.outputs; ++k) {
      layer.weights.push_back(scale * rng.symmetric());
    }
    for (std::size_t k = 0; k < layer.outputs; ++k) layer.bias.push_back(rng.symmetric());
    layer.activation = {activations[l]};
    layers.push_back(std::move(layer));
  }
  return layers;
}

inline mlpinfer::Network random_network(const std::vector<std::size_t>& widths,
                                         const std::vector<Activation>& activations,
                                         SplitMix64& rng) {
  return mlpinfer::Network(random_layers(widths, activations, rng));
}

// A LayerNorm for `layer`: gamma in [0.5, 1.5), beta in [-0.5, 0.5).
inline void add_layer_norm(mlpinfer::DenseLayer& layer, float epsilon, bool after_activation,
                           SplitMix64& rng) {
  layer.norm.gamma.clear();
  layer.norm.beta.clear();
  for (std::size_t k = 0; k < layer.outputs; ++k) {
    layer.norm.gamma.push_back(1.0f + 0.5f * rng.symmetric());
    layer.norm.beta.push_back(0.5f * rng.symmetric());
  }
  layer.norm.epsilon = epsilon;
  layer.norm.after_activation = after_activation;
}

// Every activation with parameters, and LayerNorms before and after the activation.
inline std::vector<mlpinfer::DenseLayer> modern_layers(SplitMix64& rng) {
  auto layers = random_layers({60, 48, 40, 33, 24, 20, 17, 16, 9, 8, 6},
                              {Activation::leaky_relu, Activation::elu, Activation::selu,
                               Activation::gelu, Activation::gelu_tanh, Activation::silu,
                               Activation::softplus, Activation::hard_sigmoid, Activation::relu,
                               Activation::log_softmax},
                              rng);
  layers[0].activation.alpha = 0.01f;  // leaky_relu's negative slope
  layers[1].activation.alpha = 0.5f;   // elu's alpha
  layers[7].activation = {Activation::hard_sigmoid, 1.0f / 6, 0.5f};
  for (std::size_t l = 0; l < layers.size(); l += 2) add_layer_norm(layers[l], 1e-5f, false, rng);
  for (std::size_t l = 1; l + 1 < layers.size(); l += 3) add_layer_norm(layers[l], 1e-3f, true, rng);
  return layers;
}

// Runs one case, adds its outputs to `total`, prints its own digest.
inline void run_case(const char* name, const mlpinfer::Network& network,
                     const mlpinfer::InputView& input, float scale, unsigned threads,
                     Digest& total) {
  std::vector<float> outputs(input.rows * network.output_width());
  network.forward(input, scale, outputs.data(), threads);
  Digest own;
  own.add(outputs);
  total.add(outputs);
  std::printf("%-44s %016" PRIx64 "\n", name, own.value());
}

// Prints a line per case (name and its own digest) and returns the digest of all.
inline std::string output_digest() {
  SplitMix64 rng(12);
  Digest total;

  // The textbook's shape on digit-like uint8 rows (about 80% zero pixels): tiles, a half
  // tile and the row kernel (1000 = 31 tiles of 32 + 8 rows per 256-row block split),
  // zero inputs skipped, two threads.
  const auto textbook = random_network({784, 50, 100, 10},
                                       {Activation::sigmoid, Activation::sigmoid,
                                        Activation::softmax},
                                       rng);
  std::vector<std::uint8_t> pixels(1000 * 784);
  for (auto& pixel : pixels) pixel = rng.one_in(5) ? static_cast<std::uint8_t>(rng.next()) : 0;
  run_case("784-50-100-10 uint8, 1000 rows, 2 threads", textbook,
           {pixels.data(), ElementType::uint8, 1000, 784, 784, 1}, 1.0f / 255, 2, total);
  std::vector<double> doubles(pixels.begin(), pixels.begin() + 45 * 784);
  run_case("784-50-100-10 float64, 45 rows", textbook,
           {doubles.data(), ElementType::float64, 45, 784, 784 * 8, 8}, 1.0f / 255, 1, total);

  // An identity output layer (double accumulators), tanh and relu, signed zeros among the
  // inputs, every batch size path from 1 row to several tiles.
  const auto wide = random_network({513, 37, 130, 5},
                                   {Activation::tanh, Activation::relu, Activation::identity},
                                   rng);
  for (const std::size_t rows : {1, 7, 15, 24, 40, 50, 300}) {
    std::vector<float> x(rows * 513);
    for (auto& v : x) v = rng.one_in(3) ? 4.0f * rng.symmetric() : (rng.one_in(2) ? 0.0f : -0.0f);
    const std::string name = "513-37-130-5 float32, " + std::to_string(rows) + " rows";
    run_case(name.c_str(), wide,
             {x.data(), ElementType::float32, rows, 513, 513 * 4, 4}, 0.5f, 2, total);
  }

  // A strided float32 view (every other column of a wider array), a single feature.
  const auto narrow = random_network({100, 30, 4}, {Activation::relu, Activation::softmax}, rng);
  std::vector<float> wider(77 * 200);
  for (auto& v : wider) v = rng.symmetric();
  run_case("100-30-4 strided float32, 77 rows", narrow,
           {wider.data(), ElementType::float32, 77, 100, 200 * 4, 8}, 1.0f, 1, total);
  const auto single = random_network({1, 16, 3}, {Activation::sigmoid, Activation::tanh}, rng);
  std::vector<float> one(33);
  for (auto& v : one) v = 8.0f * rng.symmetric();
  run_case("1-16-3 float32, 33 rows", single, {one.data(), ElementType::float32, 33, 1, 4, 4},
           1.0f, 1, total);

  // Every activation with parameters and LayerNorm, on every path a batch takes; an
  // identity output layer (double accumulators) with a LayerNorm after it.
  const mlpinfer::Network modern(modern_layers(rng));
  auto normed_output = random_layers({50, 30, 7}, {Activation::gelu, Activation::identity}, rng);
  add_layer_norm(normed_output[0], 1e-5f, false, rng);
  add_layer_norm(normed_output[1], 1e-5f, false, rng);
  const mlpinfer::Network normed(normed_output);
  for (const std::size_t rows : {1, 7, 15, 40, 300}) {
    std::vector<float> x(rows * 60);
    for (auto& v : x) v = 3.0f * rng.symmetric();
    std::string name = "60-...-6 every activation, " + std::to_string(rows) + " rows";
    run_case(name.c_str(), modern, {x.data(), ElementType::float32, rows, 60, 60 * 4, 4}, 1.0f, 2,
             total);
    name = "50-30-7 LayerNorm on identity, " + std::to_string(rows) + " rows";
    run_case(name.c_str(), normed, {x.data(), ElementType::float32, rows, 50, 60 * 4, 4}, 1.0f, 1,
             total);
  }

  char digest[17];
  std::snprintf(digest, sizeof digest, "%016" PRIx64, total.value());
  return digest;
}

}  // namespace mlpinfer::testing
