// The forward pass of a dense multilayer perceptron. Plain C++17: no Python here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mlpinfer/cache_aligned.hpp"

namespace mlpinfer {

namespace kernels {
struct KernelTable;
}

enum class Activation {
  identity, sigmoid, relu, tanh, softmax, log_softmax, leaky_relu, elu, selu, gelu,
  gelu_tanh, silu, softplus, hard_sigmoid
};

// Parses an activation's name ("relu", "leaky_relu", ...; the parameters travel apart,
// in ActivationSpec); throws std::invalid_argument otherwise.
Activation parse_activation(const std::string& name);
const char* activation_name(Activation activation);

// An activation with its parameters: leaky_relu(x) = x < 0 ? alpha * x : x;
// elu(x) = x >= 0 ? x : alpha * (e^x - 1); hard_sigmoid(x) = max(0, min(1, alpha * x +
// beta)). The others ignore alpha and beta. gelu is the erf form x * Phi(x), gelu_tanh
// PyTorch's and Keras's tanh approximation; softmax and log_softmax (over each row)
// only on the last layer.
struct ActivationSpec {
  Activation kind = Activation::identity;
  float alpha = 0.0f;
  float beta = 0.0f;
};

// LayerNorm over a layer's outputs y (after the bias): (y - mean(y)) / sqrt(var(y) +
// epsilon) * gamma + beta, with the biased variance, as every framework computes it.
// Empty gamma: the layer has none.
struct LayerNormSpec {
  std::vector<float> gamma;  // outputs values, or none
  std::vector<float> beta;   // outputs values
  float epsilon = 0.0f;      // > 0
  bool after_activation = false;
  bool present() const { return !gamma.empty(); }
};

struct DenseLayer {
  std::size_t inputs = 0;
  std::size_t outputs = 0;
  std::vector<float> weights;  // row-major, inputs x outputs: y = x W + b
  std::vector<float> bias;     // outputs
  ActivationSpec activation;
  LayerNormSpec norm;
};

enum class ElementType { float32, float64, uint8 };

// A borrowed rows x cols matrix of any supported element type and any byte strides
// (negative, unaligned and zero-row views included). The caller keeps it alive
// for the duration of the call.
struct InputView {
  const void* data = nullptr;
  ElementType type = ElementType::float32;
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::ptrdiff_t row_stride_bytes = 0;
  std::ptrdiff_t col_stride_bytes = 0;
};

// A per-feature transform of the input before the first layer (a scaler or a BatchNorm
// in front of the first dense layer): feature c of every row becomes
//   float(((double)x * input_scale - shift[c]) * multiplier[c])
// in double, rounded to float once. Folding it into W instead (W' = diag(m) W) cancels
// in float32 when the features sit far from 0 against their spread: a "year" near 2000
// with std 10 is 200 spreads away, and 300 spreads cost 2.8e-5 of the output. Empty:
// none, and the loaders run exactly as without it.
struct InputTransform {
  std::vector<double> shift;       // input_width() values, or none
  std::vector<double> multiplier;  // input_width() values
  bool present() const { return !shift.empty(); }
};

class Network {
 public:
  // Validates the shape chain, activations and transform; throws std::invalid_argument
  // with the expected and the actual value.
  explicit Network(std::vector<DenseLayer> layers, InputTransform transform = {});

  std::size_t input_width() const { return layers_.front().inputs; }
  std::size_t output_width() const { return layers_.back().outputs; }
  const std::vector<DenseLayer>& layers() const { return layers_; }
  const InputTransform& input_transform() const { return transform_; }

  // Writes input.rows x output_width() floats, row-major, to `output`.
  // `input_scale` multiplies every input element before the first layer (1/255
  // turns uint8 pixels into the textbook's [0, 1]); it costs nothing, being the
  // alpha of the first GEMM; with an input transform it is applied before the
  // transform, as the formula there says. `threads` == 0 means default_threads().
  // At most as many threads as the CPUs this process may run on are used.
  // Contract: `output` does not alias the input. Safe to call concurrently from
  // several threads on one Network.
  void forward(const InputView& input, float input_scale, float* output,
               unsigned threads) const;

 private:
  class Pass;  // one call of forward(), in named steps (network.cpp)
  std::vector<DenseLayer> layers_;
  InputTransform transform_;
  const kernels::KernelTable* kernels_ = nullptr;  // the family chosen for this process
  // Each layer's W with its rows padded to a multiple of 16 columns (zeros), made once
  // at construction for the row kernels (small_gemm, and small_gemm_double for an
  // identity output layer).
  std::vector<CacheAlignedVector<float>> padded_weights_;
  std::size_t widest_hidden_ = 0;
  std::size_t widest_input_ = 0;
  // Per layer: whether products skip zero inputs (kernels::InputSelection), which needs
  // every weight finite and pays where zeros are common (the input, and the outputs of
  // a clipping activation: zeros_likely in network.cpp); and 0, 1, 2, ... for the
  // layers that visit them all.
  std::vector<bool> skip_zero_inputs_;
  std::vector<std::uint32_t> all_inputs_;
  // Each layer's W packed for the tile kernel (see kernels::pack_panels; empty for a
  // double_output_ layer, which reads W as it is), and whether the network runs in
  // tiles at all: an input tile of a very wide layer would not stay in L2, and such
  // layers go to the BLAS.
  bool tiled_ = false;
  std::size_t panel_width_ = 0;
  std::vector<CacheAlignedVector<float>> tile_panels_;
  // An identity output layer accumulates in double (kernels::small_gemm_double): its
  // outputs are unbounded logits, where float32 sums over hundreds of inputs drift by
  // several ulps (9e-6 at 18 for a 256-input layer), and the layer is a small share of
  // the work (1% of 784-256-256-10).
  bool double_output_ = false;
};

// Threads used when forward() is given 0. Defaults to the CPUs this process may run on.
unsigned default_threads();
void set_default_threads(unsigned threads);

// The kernel family in use ("avx512", "avx2", "baseline" on x86-64; "neon", "baseline"
// on aarch64), chosen once per process: the best this CPU runs, capped by the
// environment variable MLPINFER_MAX_ISA if set; and the families this CPU runs, best
// first. FMA families give bit-identical results; the baseline (no FMA) differs from
// them within the reference tolerance. Throws std::invalid_argument if MLPINFER_MAX_ISA
// names no family of this build.
struct CpuInfo {
  std::string isa;
  bool fused_multiply_add = false;
  std::vector<std::string> supported;
};
CpuInfo cpu_info();

// The name of the BLAS library and kernel in use, for benchmarks and bug reports.
std::string blas_info();

// Best seconds of an n x n x n sgemm on `threads` threads of the same BLAS: the
// benchmark's ceiling for the engine's FLOP rate. Not to be run beside forward().
double time_blas_sgemm(std::size_t n, unsigned threads, unsigned repeats);

}  // namespace mlpinfer
