// What the kernels share, whatever the instruction set: the layouts and contracts of
// their operands. The kernels themselves are reached through kernels/kernel_table.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mlpinfer/cache_aligned.hpp"
#include "mlpinfer/network.hpp"

namespace mlpinfer::kernels {

// The row kernels read B's columns in whole vectors (up to 16 floats); B's leading
// dimension must be a multiple of kPadColumns with zeros beyond column n.
constexpr std::size_t kPadColumns = 16;

constexpr std::size_t padded_columns(std::size_t n) {
  return (n + kPadColumns - 1) / kPadColumns * kPadColumns;
}

// W (inputs x outputs, row-major) with each row padded with zeros to
// padded_columns(outputs): the B the row kernels read.
CacheAlignedVector<float> pad_columns(const std::vector<float>& weights, std::size_t inputs,
                                      std::size_t outputs);

// What follows a layer's product, on each row: + bias, then the activation, with the
// LayerNorm (if any) before it or after it as the layer says. Every path runs the same
// arithmetic on a row (kernels/epilogues.cpp), whatever the batch or its lane.
struct Epilogue {
  const float* bias;
  ActivationSpec activation;
  const LayerNormSpec* norm = nullptr;  // nullptr or !present(): none
};

// --- Zero inputs --------------------------------------------------------------------
// The products below visit only the inputs k (rows of W) that are nonzero in some row
// they compute. Skipping x = 0 changes no bit of any result: it would add x * w = +-0
// to the accumulator, which changes nothing but the sign of a zero accumulator (with
// FMA, a product that underflows can make it -0.0, and adding +0.0 then makes it
// +0.0), and the kernels end every sum with + 0.0f, so that a zero result is +0.0
// whichever zeros were visited. This needs w finite (0 * inf is NaN), which the caller
// checks once per layer. Digits are mostly background: an MNIST image has 151 of its
// 784 pixels nonzero, 4 images 298, a tile of 32 images 437.
struct InputSelection {
  bool skip_zeros;                // false: visit every input
  const std::uint32_t* all;       // 0, 1, 2, ... at least k entries
  std::uint32_t* scratch;         // k entries, for the nonzero inputs of a group of rows
};

// The inputs one product visits: index[0..count), ascending. `zeros_skippable`: the list
// comes from a zero scan (InputSelection::skip_zeros), so that a kernel may also drop the
// inputs that are zero in every lane it computes at once.
struct ActiveInputs {
  const std::uint32_t* index;
  std::size_t count;
  bool zeros_skippable = false;
  // For a tile: if not null, the inputs of each of its lane groups (the lanes the
  // family's tile_gemm computes at once) that are nonzero in some lane of the group, as
  // load_tile lists them; else a tile kernel that computes groups apart scans them.
  const ActiveInputs* lane_groups = nullptr;
};

// --- Sparse rows: a tile's first layer row by row ---------------------------------
// A row's nonzero inputs as bits: bit k % 64 of word k / 64 set where input k is
// nonzero (NaN included, +-0 not). An MNIST digit has 151 of 784 (13 words).
constexpr std::size_t mask_words(std::size_t inputs) { return (inputs + 63) / 64; }

// What a tile's first layer costs on either path, from its rows' masks, in the time of
// one of tile_gemm's vector FMAs: sparse_rows_gemm visits each row's own nonzero inputs,
// tile_gemm those nonzero in some row of a lane group.
struct SparseRowsCost {
  double rows;
  double tile;
};

// --- Tiles: kTileRows rows with the batch in vector lanes --------------------------
// A tile holds its rows feature-major, tile[f * kTileRows + r] being feature f of row r,
// so every row of the tile is one lane and gets exactly the arithmetic a lone row gets
// from small_gemm and bias_activation (same FMA order over k, same functions after):
// a row's result does not depend on the path, the tile, or the lane it lands in.
// The functions below work on the first `lanes` lanes, 16 (a half tile) or kTileRows,
// and leave the others as they are.
constexpr std::size_t kTileRows = 32;
// The most lane groups in a tile, in any family (the baseline's groups of 8 lanes).
constexpr std::size_t kMaxLaneGroups = 4;

// A layer's output columns cut into `count` panels of nearly equal width, none wider
// than max_width; panel p starts at first_column(p).
struct PanelLayout {
  PanelLayout(std::size_t outputs, std::size_t max_width);
  std::size_t first_column(std::size_t panel) const;
  std::size_t width(std::size_t panel) const;
  std::size_t count;
  std::size_t base_width;
  std::size_t wider;  // the first `wider` panels are base_width + 1 wide
};

// W (inputs x outputs, row-major) regrouped panel by panel: panel p occupies
// inputs x width(p) floats, row-major, from offset first_column(p) * inputs.
CacheAlignedVector<float> pack_panels(const std::vector<float>& weights, std::size_t inputs,
                                      std::size_t outputs, std::size_t max_width);

// The next tile's rows, asked for one cache line per step of the current tile's k loop:
// reading a float32 tile straight from memory cost 630 ns a row against 440 from cache,
// and prefetching the whole next tile at once stalled on the full miss queue instead.
// Rows with a column stride other than the element size are not prefetched.
class RowPrefetch {
 public:
  RowPrefetch(const InputView& src, std::size_t first_row, std::size_t rows);
  void next_line() {
    if (rows_left_ == 0) return;
    // Offsets, not a moving pointer: a pointer one row past the last (or before the
    // first, with a negative stride) would be undefined even if never dereferenced.
    __builtin_prefetch(data_ + row_offset_ + static_cast<std::ptrdiff_t>(offset_), 0, 2);
    offset_ += 64;
    if (offset_ >= row_bytes_) {
      offset_ = 0;
      row_offset_ += row_stride_;
      --rows_left_;
    }
  }

 private:
  const char* data_ = nullptr;
  std::ptrdiff_t row_offset_ = 0;
  std::ptrdiff_t row_stride_ = 0;
  std::size_t row_bytes_ = 0;
  std::size_t rows_left_ = 0;
  std::size_t offset_ = 0;
};

// The first `rows` lanes of a tile of `width` features, back to row-major out (rows x width).
void store_tile(const float* tile, std::size_t width, std::size_t rows, float* out);

}  // namespace mlpinfer::kernels
