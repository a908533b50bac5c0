#include "mlpinfer/network.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <thread>

#include "blas.hpp"
#include "cpu_count.hpp"
#include "input_transform.hpp"
#include "kernels.hpp"
#include "kernels/kernel_table.hpp"
#include "thread_pool.hpp"

namespace mlpinfer {
namespace {

// Rows of one block, carried through every layer before the next block starts:
// 256 rows of the widest textbook layer (784 floats in, 100 out) is ~0.9 MB, which
// stays in this machine's 1 MB L2 per core.
constexpr std::size_t kBlockRows = 256;
// Which kernel runs a row. Measured on the 2-core EPYC, one thread, ns per row of the
// textbook's 784-50-100-10 (whole network): tiles (kernels::tile_gemm, the batch in
// vector lanes, weights packed once at load) 475-500 on inputs without zeros and
// 350-360 on MNIST digits, whose zero pixels they skip; the row kernel
// (kernels::small_gemm, columns in lanes, padded to 16) about 520 on digits; OpenBLAS
// 610-914, and 1,360 at 17 rows, as it packs the weights on every call. For 784x512:
// tiles 2,800, OpenBLAS 4,674.
// Every row of a tile gets the same arithmetic as a lone row in small_gemm, so in a
// tiled network each row's result is bit-identical whatever batch_size, threads or
// Dask chunking. A block's last rows go to small_gemm when fewer than kMinTileRows are
// left: a tile costs what 21 rows cost there (digits: 20 rows in 10.1-10.4 us in the
// row kernel, 10.4-10.6 as a tile; 23 rows in 12.2-12.7 against 10.5).
// A tile's first layer may instead run row by row (kernels::sparse_rows_gemm, each row
// over its own nonzero inputs) where its rows are sparse and each in places of its own,
// as digits are: see sparse_first_layer. The same bits, so the choice is only speed:
// AVX2, the textbook network on the 10,000 MNIST digits, 2 threads, this Xeon (Sapphire
// Rapids class, AVX-512 hidden), A/B in one process type: 4.3-4.4 -> 3.5-3.7 ms.
constexpr std::size_t kTileRows = kernels::kTileRows;
constexpr std::size_t kMinTileRows = 21;
// Fewer rows than that, but at least kMinHalfTileRows, take a half tile (16 lanes, one
// vector of rows per step) and the rest the row kernel: digits, one thread, 16 rows in
// 7.3 us against 8.9 in the row kernel, 18 in 8.8 against 10.2, 12 in 7.1 against 6.7.
constexpr std::size_t kHalfTileRows = 16;
constexpr std::size_t kMinHalfTileRows = 13;
// A layer's input tile (inputs x kTileRows floats) must stay in the 1 MB L2 while each
// of its panels reads it: 4096 inputs make 512 KB. The same bound on outputs keeps the
// per-thread tile buffers, which are kept between calls, at 1 MB. Networks with a wider
// layer run in small_gemm up to kSmallGemmRows rows and in the BLAS beyond, for layers
// of more than kNarrowColumns outputs.
constexpr std::size_t kMaxTileWidth = 4096;
constexpr std::size_t kSmallGemmRows = 16;
constexpr std::size_t kNarrowColumns = 128;
constexpr std::size_t kGatherRows = 8;  // see forward()
// Below this many rows per thread, waking a worker costs more than it saves (measured
// from C++, 2 threads, uint8 digits: 14 rows in 6.2 us on one thread, 5.1 on two; 12
// rows in 5.0 on one, 5.3-5.8 on two).
constexpr std::size_t kMinRowsPerThread = 7;

std::atomic<unsigned>& default_thread_setting() {
  static std::atomic<unsigned> threads{cpus_available()};
  return threads;
}

// How a block's tiles run their first layer (see Network::Pass::run_block).
enum class FirstLayer { undecided, rows, tile };

// Per-thread buffers, grown on demand and kept: repeated calls allocate nothing.
struct Scratch {
  CacheAlignedVector<float> input;
  CacheAlignedVector<float> tile;
  CacheAlignedVector<float> ping;
  CacheAlignedVector<float> pong;
  std::vector<std::uint32_t> active_inputs;
  std::vector<std::uint64_t> masks;  // a tile's rows' nonzero inputs (sparse_first_layer)
  CacheAlignedVector<float> sums;    // their first layer's sums, row-major
};

template <typename T, typename Allocator>
T* at_least(std::vector<T, Allocator>& buffer, std::size_t size) {
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

std::string layer_error(std::size_t index, const std::string& what) {
  return "layer " + std::to_string(index + 1) + ": " + what;
}

bool fits_blas_int(std::size_t value) { return value <= static_cast<std::size_t>(INT_MAX); }

// Process exit while a (daemon) thread is inside forward(): exit() runs OpenBLAS's
// teardown, which unmaps the buffers that thread's sgemm is using (a segfault seen in
// about 1 exit in 6). An atexit handler, which runs before any library's destructors,
// waits for calls in flight and parks calls that start later: by then only daemon
// threads are left, and the process is ending.
std::atomic<unsigned> forwards_in_flight{0};
std::atomic<bool> process_exiting{false};

void wait_for_forwards_at_exit() {
  process_exiting.store(true);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (forwards_in_flight.load() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

class ForwardInFlight {
 public:
  ForwardInFlight() {
    forwards_in_flight.fetch_add(1);
    if (process_exiting.load()) {
      forwards_in_flight.fetch_sub(1);
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    }
  }
  ~ForwardInFlight() { forwards_in_flight.fetch_sub(1); }
  ForwardInFlight(const ForwardInFlight&) = delete;
  ForwardInFlight& operator=(const ForwardInFlight&) = delete;
};

void configure_process() {
  blas::make_single_threaded();
  std::atexit(wait_for_forwards_at_exit);
}

constexpr Activation kActivations[] = {
    Activation::identity,   Activation::sigmoid, Activation::relu,      Activation::tanh,
    Activation::softmax,    Activation::log_softmax, Activation::leaky_relu, Activation::elu,
    Activation::selu,       Activation::gelu,    Activation::gelu_tanh, Activation::silu,
    Activation::softplus,   Activation::hard_sigmoid};

bool is_row_activation(Activation activation) {
  return activation == Activation::softmax || activation == Activation::log_softmax;
}

bool all_finite(const std::vector<float>& values) {
  return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
}

// The activation's parameters and the LayerNorm of layer `i` of `count`.
void check_epilogue(const DenseLayer& layer, std::size_t i, std::size_t count) {
  const ActivationSpec& activation = layer.activation;
  const char* name = activation_name(activation.kind);
  if (!std::isfinite(activation.alpha) || !std::isfinite(activation.beta)) {
    throw std::invalid_argument(layer_error(i, std::string(name) + ": parameters must be finite"));
  }
  if (is_row_activation(activation.kind) && i + 1 != count) {
    throw std::invalid_argument(layer_error(i, std::string(name) + " is only supported on the last layer"));
  }
  const LayerNormSpec& norm = layer.norm;
  if (!norm.present()) {
    if (!norm.beta.empty()) throw std::invalid_argument(layer_error(i, "LayerNorm beta without gamma"));
    return;
  }
  if (norm.gamma.size() != layer.outputs || norm.beta.size() != layer.outputs) {
    throw std::invalid_argument(layer_error(
        i, "LayerNorm gamma and beta must have " + std::to_string(layer.outputs) +
               " values (the layer's outputs), got " + std::to_string(norm.gamma.size()) +
               " and " + std::to_string(norm.beta.size())));
  }
  if (!all_finite(norm.gamma) || !all_finite(norm.beta)) {
    throw std::invalid_argument(layer_error(i, "LayerNorm gamma and beta must be finite"));
  }
  if (!(norm.epsilon > 0.0f) || !std::isfinite(norm.epsilon)) {
    throw std::invalid_argument(layer_error(
        i, "LayerNorm epsilon must be positive and finite, got " + std::to_string(norm.epsilon)));
  }
  if (norm.after_activation && is_row_activation(activation.kind)) {
    throw std::invalid_argument(
        layer_error(i, std::string("a LayerNorm after ") + name + " is not supported"));
  }
}

// Whether a layer's outputs are often exactly zero, so that the next layer gains by
// skipping them: ReLU and hard sigmoid clip to 0; sigmoid, tanh, softplus and the
// others reach 0 only by underflow or at x = 0 exactly, and a LayerNorm after the
// activation moves the zeros. Visiting a zero or skipping it gives the same bits (see
// kernels::InputSelection): this chooses only whether a scan runs. The textbook network
// (sigmoid hidden layers), MNIST, batch 10,000, one thread, CPU time per row, three
// interleaved rounds on this Xeon (Sapphire Rapids class, load average 3.5): AVX-512
// 552-567 -> 543-554 ns, AVX2 789-812 -> 775-789 without the hidden layers' scans.
bool zeros_likely(const DenseLayer& layer) {
  const Activation kind = layer.activation.kind;
  const bool clips = kind == Activation::relu || kind == Activation::hard_sigmoid ||
                     (kind == Activation::leaky_relu && layer.activation.alpha == 0.0f);
  return clips && !(layer.norm.present() && layer.norm.after_activation);
}

kernels::Epilogue epilogue_of(const DenseLayer& layer) {
  return {layer.bias.data(), layer.activation, &layer.norm};
}

}  // namespace

Activation parse_activation(const std::string& name) {
  std::string known;
  for (Activation a : kActivations) {
    if (name == activation_name(a)) return a;
    known += known.empty() ? activation_name(a) : std::string(", ") + activation_name(a);
  }
  throw std::invalid_argument("unknown activation '" + name + "'; expected one of " + known);
}

const char* activation_name(Activation activation) {
  switch (activation) {
    case Activation::identity: return "identity";
    case Activation::sigmoid: return "sigmoid";
    case Activation::relu: return "relu";
    case Activation::tanh: return "tanh";
    case Activation::softmax: return "softmax";
    case Activation::log_softmax: return "log_softmax";
    case Activation::leaky_relu: return "leaky_relu";
    case Activation::elu: return "elu";
    case Activation::selu: return "selu";
    case Activation::gelu: return "gelu";
    case Activation::gelu_tanh: return "gelu_tanh";
    case Activation::silu: return "silu";
    case Activation::softplus: return "softplus";
    case Activation::hard_sigmoid: return "hard_sigmoid";
  }
  return "unknown";
}

Network::Network(std::vector<DenseLayer> layers, InputTransform transform)
    : layers_(std::move(layers)), transform_(std::move(transform)),
      kernels_(&kernels::active_kernels()) {
  if (layers_.empty()) throw std::invalid_argument("a network needs at least one layer, got 0");
  check_input_transform(transform_, layers_.front().inputs);
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const DenseLayer& layer = layers_[i];
    if (layer.inputs == 0 || layer.outputs == 0) {
      throw std::invalid_argument(layer_error(i, "W must have at least one row and column, got " +
                                                     std::to_string(layer.inputs) + "x" +
                                                     std::to_string(layer.outputs)));
    }
    if (!fits_blas_int(layer.inputs) || !fits_blas_int(layer.outputs)) {
      throw std::invalid_argument(layer_error(i, "widths above 2^31-1 are not supported"));
    }
    if (layer.weights.size() != layer.inputs * layer.outputs) {
      throw std::invalid_argument(layer_error(i, "W holds " + std::to_string(layer.weights.size()) +
                                                     " values, expected " +
                                                     std::to_string(layer.inputs) + "x" +
                                                     std::to_string(layer.outputs)));
    }
    if (layer.bias.size() != layer.outputs) {
      throw std::invalid_argument(layer_error(i, "b has " + std::to_string(layer.bias.size()) +
                                                     " values, W has " +
                                                     std::to_string(layer.outputs) + " columns"));
    }
    if (i > 0 && layer.inputs != layers_[i - 1].outputs) {
      throw std::invalid_argument(layer_error(
          i, "W has " + std::to_string(layer.inputs) + " rows, previous layer has " +
                 std::to_string(layers_[i - 1].outputs) + " outputs"));
    }
    check_epilogue(layer, i, layers_.size());
    if (i + 1 != layers_.size()) widest_hidden_ = std::max(widest_hidden_, layer.outputs);
    widest_input_ = std::max(widest_input_, layer.inputs);
    skip_zero_inputs_.push_back(
        std::all_of(layer.weights.begin(), layer.weights.end(),
                    [](float w) { return std::isfinite(w); }) &&
        (i == 0 || zeros_likely(layers_[i - 1])));
  }
  all_inputs_.resize(widest_input_);
  std::iota(all_inputs_.begin(), all_inputs_.end(), std::uint32_t{0});
  for (const DenseLayer& layer : layers_) {
    padded_weights_.push_back(kernels::pad_columns(layer.weights, layer.inputs, layer.outputs));
  }
  double_output_ = layers_.back().activation.kind == Activation::identity;
  tiled_ = std::all_of(layers_.begin(), layers_.end(), [](const DenseLayer& layer) {
    return layer.inputs <= kMaxTileWidth && layer.outputs <= kMaxTileWidth;
  });
  if (tiled_) {
    panel_width_ = kernels_->tile_panel_width;
    for (const DenseLayer& layer : layers_) {
      const bool read_unpacked = &layer == &layers_.back() && double_output_;
      tile_panels_.push_back(read_unpacked ? CacheAlignedVector<float>{}
                                           : kernels::pack_panels(layer.weights, layer.inputs,
                                                                  layer.outputs, panel_width_));
    }
  }
  static std::once_flag configured;
  std::call_once(configured, configure_process);
}

// One call of forward(): its operands, and the steps each block of rows goes through.
// A block runs as tiles (run_tile), a half tile and the row kernels (run_rows); each
// layer's product is chosen in multiply_rows. The threads share one Pass, read-only.
class Network::Pass {
 public:
  Pass(const Network& network, const InputView& input, float input_scale, float* output)
      : net_(network), input_(input), input_scale_(input_scale),
        first_alpha_(network.transform_.present() ? 1.0f : input_scale), output_(output),
        out_width_(network.output_width()) {
    // float32 rows with unit column stride go to the GEMM as they are (lda = row
    // stride); anything else is converted block by block, never as a whole batch.
    // With an input transform every row is converted (transform_rows), and input_scale
    // is applied there, before the transform; the first layer's alpha is then 1.
    const bool aligned = reinterpret_cast<std::uintptr_t>(input.data) % alignof(float) == 0;
    row_stride_floats_ = input.row_stride_bytes / std::ptrdiff_t{sizeof(float)};
    direct_ = !network.transform_.present() && input.type == ElementType::float32 && aligned &&
              input.col_stride_bytes == std::ptrdiff_t{sizeof(float)} &&
              (input.rows == 1 ||
               (input.row_stride_bytes % std::ptrdiff_t{sizeof(float)} == 0 &&
                row_stride_floats_ >= static_cast<std::ptrdiff_t>(input.cols) &&
                fits_blas_int(static_cast<std::size_t>(row_stride_floats_))));
    direct_lda_ = input.rows == 1 ? input.cols
                                  : static_cast<std::size_t>(
                                        std::max<std::ptrdiff_t>(row_stride_floats_, 0));
  }

  // Rows first .. first + count: whole tiles while at least kMinTileRows are left, then a
  // half tile if at least kMinHalfTileRows are, then the row kernels.
  void run_block(std::size_t first, std::size_t count, Scratch& scratch) const {
    const std::size_t rows = input_.rows;
    std::size_t tiled_rows = 0;  // in full tiles (the last may be partial)
    while (net_.tiled_ && count - tiled_rows >= kMinTileRows) {
      tiled_rows += std::min(kTileRows, count - tiled_rows);
    }
    std::size_t done = tiled_rows;
    // How the block's tiles run their first layer: the first tile decides from its
    // rows' masks, and the block's other tiles follow, as a block's rows are alike (a
    // batch of digits). Making the masks for every tile cost 6-8% of the whole network
    // on AVX-512, where MNIST digits cost less as tiles (10,000 digits, 2 threads, this
    // Xeon: 3.03-3.18 -> 3.26-3.37 ms); row by row, the masks come on the way.
    FirstLayer first_layer = FirstLayer::undecided;
    // A half tile runs first, while the first tile's rows are prefetched: from memory, a
    // call's first tile waits for its input (float32, one thread, 32 rows: 13.5 us cold,
    // 10.2 from cache), and a half tile has half as much to wait for.
    if (net_.tiled_ && count - done >= kMinHalfTileRows) {
      const std::size_t part = std::min(kHalfTileRows, count - done);
      run_tile(first + done, part, kHalfTileRows, first, std::min(kTileRows, tiled_rows),
               first_layer, scratch);
      done += part;
    }
    for (std::size_t start = 0; start < tiled_rows; start += kTileRows) {
      const std::size_t part = std::min(kTileRows, tiled_rows - start);
      const std::size_t after = first + start + part;
      run_tile(first + start, part, kTileRows, after, std::min(kTileRows, rows - after),
               first_layer, scratch);
    }
    if (done < count) run_rows(first + done, count - done, scratch);
  }

 private:
  // Every layer on one tile. `lanes`: kTileRows, or 16 for a half tile of at most 16
  // rows; the `next_count` rows from `next_first` are prefetched meanwhile. The first
  // layer runs row by row where that costs less (sparse_first_layer, as the block's
  // `first_layer` says or decides), else on the loaded tile.
  void run_tile(std::size_t first, std::size_t count, std::size_t lanes, std::size_t next_first,
                std::size_t next_count, FirstLayer& first_layer, Scratch& scratch) const {
    const kernels::KernelTable& kernels = *net_.kernels_;
    kernels::RowPrefetch prefetch(input_, next_first, next_count);
    float* first_result = at_least(scratch.ping, net_.layers_.front().outputs * kTileRows);
    if (first_layer != FirstLayer::tile) {
      first_layer = sparse_first_layer(first, count, lanes, first_layer, first_result, prefetch,
                                       scratch);
    }
    const bool rows_done = first_layer == FirstLayer::rows;
    // The input's nonzero features come with the loaded tile, for the tile and for each
    // lane group (no second pass over it); a transformed tile, and every later layer's,
    // is scanned.
    std::uint32_t* nonzero =
        at_least(scratch.active_inputs, (1 + kernels::kMaxLaneGroups) * net_.widest_input_);
    kernels::ActiveInputs lane_groups[kernels::kMaxLaneGroups];
    const InputTile loaded = rows_done ? InputTile{}
                                       : load_input_tile(first, count, lanes, nonzero,
                                                         lane_groups, scratch);
    const float* activations = loaded.tile;
    std::size_t nonzero_count = loaded.nonzero_count;
    for (std::size_t i = 0; i < net_.layers_.size(); ++i) {
      const DenseLayer& layer = net_.layers_[i];
      float* result = i == 0 ? first_result
                             : at_least(i % 2 == 0 ? scratch.ping : scratch.pong,
                                        layer.outputs * kTileRows);
      if (i > 0 || !rows_done) {
        const float alpha = i == 0 ? first_alpha_ : 1.0f;
        if (i > 0 && net_.skip_zero_inputs_[i]) {
          nonzero_count = kernels.tile_nonzero_inputs(activations, layer.inputs, lanes, nonzero);
        }
        const kernels::ActiveInputs active =
            net_.skip_zero_inputs_[i]
                ? kernels::ActiveInputs{nonzero, nonzero_count, true,
                                        i == 0 ? loaded.lane_groups : nullptr}
                : kernels::ActiveInputs{net_.all_inputs_.data(), layer.inputs};
        if (i + 1 == net_.layers_.size() && net_.double_output_) {
          kernels.tile_gemm_double(active, layer.outputs, alpha, activations,
                                   layer.weights.data(), result, lanes, prefetch);
        } else {
          kernels.tile_gemm(layer.inputs, active, layer.outputs, alpha, activations,
                            net_.tile_panels_[i].data(), net_.panel_width_, result, lanes,
                            prefetch);
        }
      }
      kernels.tile_bias_activation(result, layer.outputs, lanes, epilogue_of(layer));
      activations = result;
    }
    kernels::store_tile(activations, out_width_, count, output_ + first * out_width_);
  }

  // A tile loaded from the input rows: its nonzero features, and each lane group's
  // (lane_groups, or nullptr where tile_gemm is left to scan the groups).
  struct InputTile {
    const float* tile = nullptr;
    std::size_t nonzero_count = 0;
    const kernels::ActiveInputs* lane_groups = nullptr;
  };

  // The input rows of a tile as a tile (transformed, if the network says so), with the
  // lists of nonzero features the first layer visits: in `nonzero` the tile's, and in
  // `lane_groups` each lane group's, found while loading; a transformed tile is scanned.
  InputTile load_input_tile(std::size_t first, std::size_t count, std::size_t lanes,
                            std::uint32_t* nonzero, kernels::ActiveInputs* lane_groups,
                            Scratch& scratch) const {
    const kernels::KernelTable& kernels = *net_.kernels_;
    float* tile = at_least(scratch.tile, input_.cols * kTileRows);
    if (!net_.transform_.present()) {
      return {tile, kernels.load_tile(input_, first, count, lanes, tile, nonzero, lane_groups),
              lane_groups};
    }
    if (input_.type == ElementType::float64) {  // not exact as floats: transformed as read
      transform_tile(input_, input_scale_, net_.transform_, first, count, lanes, tile);
    } else {
      // float32 and uint8 elements are exact as floats: the family's loader, then its
      // vector transform (1.1-1.5x faster overall: see kernels/input_loaders.cpp).
      kernels.load_tile(input_, first, count, lanes, tile, nonzero, lane_groups);
      kernels.transform_tile(tile, input_.cols, count, lanes, input_scale_,
                             net_.transform_.shift.data(), net_.transform_.multiplier.data());
    }
    const std::size_t nonzero_count =
        net_.skip_zero_inputs_[0] ? kernels.tile_nonzero_inputs(tile, input_.cols, lanes, nonzero)
                                  : 0;
    return {tile, nonzero_count, nullptr};
  }

  // The first layer's product on a tile's rows, row by row, each visiting only its own
  // nonzero inputs (kernels::sparse_rows_gemm), into `result`, if `choice` says so or,
  // undecided, if the rows' masks say that costs less than the tile: on digits, where a
  // lane group's rows share few of their nonzero pixels. Returns FirstLayer::rows if it
  // ran; FirstLayer::tile, having computed nothing, where it costs more or where the first
  // layer cannot skip zeros, reads a transformed input or accumulates in double. The
  // same bits either way.
  FirstLayer sparse_first_layer(std::size_t first, std::size_t count, std::size_t lanes,
                                FirstLayer choice, float* result, kernels::RowPrefetch& prefetch,
                                Scratch& scratch) const {
    const DenseLayer& layer = net_.layers_.front();
    if (!net_.skip_zero_inputs_[0] || net_.transform_.present() ||
        (net_.layers_.size() == 1 && net_.double_output_)) {
      return FirstLayer::tile;
    }
    const kernels::KernelTable& kernels = *net_.kernels_;
    const float* rows = nullptr;
    std::size_t lda = input_.cols;
    if (direct_) {
      rows = static_cast<const float*>(input_.data) +
             static_cast<std::ptrdiff_t>(first) * row_stride_floats_;
      lda = direct_lda_;
    } else {
      // Converted before the choice: where the tile path wins, load_tile reads these rows
      // again, once per block (the block's later tiles do not try).
      float* converted = at_least(scratch.input, kTileRows * input_.cols);
      kernels.gather_rows(input_, first, count, converted);
      rows = converted;
    }
    std::uint64_t* masks = at_least(scratch.masks, kTileRows * kernels::mask_words(input_.cols));
    const bool undecided = choice == FirstLayer::undecided;
    if (undecided) {
      const kernels::SparseRowsCost cost =
          kernels.row_nonzero_masks(rows, count, lda, input_.cols, layer.outputs, masks);
      if (cost.rows >= cost.tile) return FirstLayer::tile;
    }
    const std::size_t ldb = kernels::padded_columns(layer.outputs);
    kernels.sparse_rows_gemm(rows, lda, count, masks, undecided, input_.cols, layer.outputs,
                             first_alpha_, net_.padded_weights_.front().data(), ldb, result,
                             lanes, at_least(scratch.sums, kTileRows * ldb), prefetch);
    return FirstLayer::rows;
  }

  // Whether layer `layer` of a `count`-row product runs in the row kernels (else the BLAS).
  bool row_kernel_runs(const DenseLayer& layer, std::size_t count) const {
    return net_.tiled_ || count <= kSmallGemmRows || layer.outputs <= kNarrowColumns;
  }

  // Every layer on `count` rows, row-major, layer by layer.
  void run_rows(std::size_t first, std::size_t count, Scratch& scratch) const {
    const float* activations = nullptr;
    std::size_t lda = input_.cols;
    // The row kernels get float32 rows copied like any other input: one row at a time
    // streams from memory, where its 4 rows side by side did not (16 rows in 8.2-8.3 us
    // copied, 8.7-9.4 in place; 5.9 either way from cache). A first layer that runs
    // elsewhere (the BLAS, which packs them anyway, or small_gemm_double) reads them
    // in place.
    if (direct_ && !row_kernel_runs(net_.layers_.front(), count)) {
      activations = static_cast<const float*>(input_.data) +
                    static_cast<std::ptrdiff_t>(first) * row_stride_floats_;
      lda = direct_lda_;
    }
    float* hidden[2] = {at_least(scratch.ping, count * net_.widest_hidden_),
                        at_least(scratch.pong, count * net_.widest_hidden_)};
    for (std::size_t i = 0; i < net_.layers_.size(); ++i) {
      const DenseLayer& layer = net_.layers_[i];
      const bool last = i + 1 == net_.layers_.size();
      float* result = last ? output_ + first * out_width_ : hidden[i % 2];
      if (activations == nullptr && row_kernel_runs(layer, count)) {
        // Input rows are converted kGatherRows at a time, straight into the first
        // layer: a whole converted block (256 x 784 floats) would push the weights out
        // of L2, and 8 rows (25 KB) stay in L1. Converting inside the kernel or with
        // __builtin_convertvector was slower.
        float* converted = at_least(scratch.input, kGatherRows * input_.cols);
        for (std::size_t done = 0; done < count; done += kGatherRows) {
          const std::size_t part = std::min(kGatherRows, count - done);
          gather_rows(first + done, part, converted);
          multiply_rows(i, part, converted, input_.cols, result + done * layer.outputs, scratch);
        }
      } else if (activations == nullptr) {
        float* converted = at_least(scratch.input, count * input_.cols);
        gather_rows(first, count, converted);
        multiply_rows(i, count, converted, input_.cols, result, scratch);
      } else {
        multiply_rows(i, count, activations, lda, result, scratch);
      }
      net_.kernels_->bias_activation(result, count, layer.outputs, epilogue_of(layer));
      activations = result;
      lda = layer.outputs;
    }
  }

  // Input rows first .. first + rows, converted (and transformed, if the network says so).
  void gather_rows(std::size_t first, std::size_t rows, float* converted) const {
    if (net_.transform_.present()) {
      transform_rows(input_, input_scale_, net_.transform_, first, rows, converted);
    } else {
      net_.kernels_->gather_rows(input_, first, rows, converted);
    }
  }

  // c (m rows) = alpha * a x W of layer i, with the kernel this layer and row count call
  // for: double accumulation for an identity output layer, the row kernels, or the BLAS
  // (m <= kGatherRows only where the block's count already chose the row kernels).
  void multiply_rows(std::size_t i, std::size_t m, const float* a, std::size_t lda, float* c,
                     Scratch& scratch) const {
    const DenseLayer& layer = net_.layers_[i];
    const float alpha = i == 0 ? first_alpha_ : 1.0f;
    const kernels::InputSelection inputs{net_.skip_zero_inputs_[i], net_.all_inputs_.data(),
                                         at_least(scratch.active_inputs, net_.widest_input_)};
    if (i + 1 == net_.layers_.size() && net_.double_output_) {
      net_.kernels_->small_gemm_double(m, layer.outputs, layer.inputs, alpha, a, lda,
                                       net_.padded_weights_[i].data(),
                                       kernels::padded_columns(layer.outputs), c, inputs);
    } else if (row_kernel_runs(layer, m)) {
      net_.kernels_->small_gemm(m, layer.outputs, layer.inputs, alpha, a, lda,
                                net_.padded_weights_[i].data(),
                                kernels::padded_columns(layer.outputs), c, layer.outputs, inputs);
    } else {
      blas::sgemm(m, layer.outputs, layer.inputs, alpha, a, lda, layer.weights.data(),
                  layer.outputs, c, layer.outputs);
    }
  }

  const Network& net_;
  const InputView& input_;
  float input_scale_;
  float first_alpha_;  // the first layer's GEMM alpha: input_scale_, or 1 with a transform
  float* output_;
  std::size_t out_width_;
  bool direct_ = false;
  std::ptrdiff_t row_stride_floats_ = 0;
  std::size_t direct_lda_ = 0;
};

namespace {

// How a batch is cut into blocks of rows, each run by one thread.
struct BlockPlan {
  std::size_t blocks;
  std::size_t rows_per_block;
};

BlockPlan plan_blocks(std::size_t rows, unsigned threads, bool tiled) {
  std::size_t blocks = (rows + kBlockRows - 1) / kBlockRows;
  const std::size_t useful_threads = std::min<std::size_t>(threads, rows / kMinRowsPerThread);
  blocks = std::max<std::size_t>(blocks, std::max<std::size_t>(useful_threads, 1));
  std::size_t rows_per_block = (rows + blocks - 1) / blocks;
  // Large batches: blocks of whole tiles. A batch split evenly across threads is not
  // rounded: at 100 rows on 2 threads, 50 + 50 rows (a tile, a half tile and 2 rows in
  // the row kernel each) beat 64 + 36.
  if (tiled && rows_per_block >= kBlockRows / 2) {
    rows_per_block = (rows_per_block + kTileRows - 1) / kTileRows * kTileRows;
  }
  return {(rows + rows_per_block - 1) / rows_per_block, rows_per_block};
}

}  // namespace

void Network::forward(const InputView& input, float input_scale, float* output,
                      unsigned threads) const {
  if (input.cols != input_width()) {
    throw std::invalid_argument("input has " + std::to_string(input.cols) +
                                " features, the network expects " +
                                std::to_string(input_width()));
  }
  const std::size_t rows = input.rows;
  if (rows == 0) return;
  const ForwardInFlight in_flight;
  // More threads than CPUs would only take turns, and each one the pool starts stays.
  static const unsigned cpus = cpus_available();
  threads = std::min(threads == 0 ? default_threads() : threads, cpus);
  const BlockPlan plan = plan_blocks(rows, threads, tiled_);
  const Pass pass(*this, input, input_scale, output);
  ThreadPool::instance().run(plan.blocks, threads, [&](std::size_t block) {
    thread_local Scratch scratch;
    const std::size_t first = block * plan.rows_per_block;
    pass.run_block(first, std::min(plan.rows_per_block, rows - first), scratch);
  });
}

unsigned default_threads() { return default_thread_setting().load(); }

void set_default_threads(unsigned threads) {
  if (threads == 0) throw std::invalid_argument("threads must be at least 1, got 0");
  default_thread_setting().store(threads);
}

CpuInfo cpu_info() {
  const kernels::KernelTable& in_use = kernels::active_kernels();
  return {in_use.isa, in_use.fused_multiply_add, kernels::supported_isas()};
}

std::string blas_info() { return blas::describe(); }

double time_blas_sgemm(std::size_t n, unsigned threads, unsigned repeats) {
  if (n == 0 || threads == 0 || repeats == 0) {
    throw std::invalid_argument("time_blas_sgemm needs n, threads and repeats of at least 1");
  }
  return blas::time_sgemm(n, threads, repeats);
}

}  // namespace mlpinfer
