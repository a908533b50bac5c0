// Tile kernels: the batch in vector lanes (a tile is kTileRows rows, feature-major). One
// accumulator per (output column, kLanes rows) stays in a register for a block of up to
// kBlockInputs inputs (stored and reloaded between blocks, which changes no bit); each
// step loads the lane group's input vectors and broadcasts one weight per column.
// Columns are never padded, so 50 outputs cost 50 columns of FMAs, not 64. A lane group
// is kTileVectors vectors: 32 rows on AVX-512 (12-column panels), 16 on AVX2 (6-column
// panels), 8 on the baseline; each family's register count in simd_<isa>.hpp.
#include <algorithm>
#include <vector>

#include "family_api.hpp"
#include "nonzero_lanes.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {
namespace {

// Part of a panel's list of inputs, [begin, end), and whether it starts the sums (from
// zero) or ends them (+ 0.0f, times alpha). A sum carried from one part to the next is
// stored and reloaded as the float it is: the same FMAs in the same order, the same bits.
struct InputStretch {
  const std::uint32_t* begin;
  const std::uint32_t* end;
  bool starts;
  bool ends;
};

template <std::size_t Width, std::size_t Vectors>
void tile_panel(const InputStretch& inputs, float alpha, const float* in, const float* panel,
                float* out, RowPrefetch& prefetch) {
  Vec acc[Width][Vectors];
  for (std::size_t c = 0; c < Width; ++c) {
    for (std::size_t v = 0; v < Vectors; ++v) {
      acc[c][v] = inputs.starts ? splat(0.0f) : load(out + c * kTileRows + kLanes * v);
    }
  }
  for (const std::uint32_t* input = inputs.begin; input != inputs.end; ++input) {
    const std::size_t k = *input;
    prefetch.next_line();
    // One address per k step and constant offsets from it: from the index alone, GCC 12
    // computed each vector's address anew (3 instructions a vector).
    const float* lanes = in + k * kTileRows;
    const float* weights = panel + k * Width;
    Vec x[Vectors];
    for (std::size_t v = 0; v < Vectors; ++v) x[v] = load(lanes + kLanes * v);
    for (std::size_t c = 0; c < Width; ++c) {
      const Vec w = splat(weights[c]);
      for (std::size_t v = 0; v < Vectors; ++v) acc[c][v] = mul_add(x[v], w, acc[c][v]);
    }
  }
  const Vec scale = splat(alpha);
  for (std::size_t c = 0; c < Width; ++c) {
    for (std::size_t v = 0; v < Vectors; ++v) {  // + 0.0f: see InputSelection
      store(out + c * kTileRows + kLanes * v,
            inputs.ends ? (acc[c][v] + 0.0f) * scale : acc[c][v]);
    }
  }
}

template <std::size_t Vectors, std::size_t Width = kTilePanelWidth>
void tile_panel_of(std::size_t width, const InputStretch& inputs, float alpha, const float* in,
                   const float* panel, float* out, RowPrefetch& prefetch) {
  if constexpr (Width > 1) {
    if (width < Width) {
      tile_panel_of<Vectors, Width - 1>(width, inputs, alpha, in, panel, out, prefetch);
      return;
    }
  }
  tile_panel<Width, Vectors>(inputs, alpha, in, panel, out, prefetch);
}

// tile_panel in double, reading W (k x n, row-major) from column `w`: each float vector
// of lanes is two vectors of doubles.
template <std::size_t Width, std::size_t Vectors>
void tile_panel_double(const ActiveInputs& active, std::size_t n, float alpha, const float* in,
                       const float* w, float* out, RowPrefetch& prefetch) {
  DoubleVec acc[Width][2 * Vectors];
  for (std::size_t c = 0; c < Width; ++c) {
    for (std::size_t v = 0; v < 2 * Vectors; ++v) acc[c][v] = splat_double(0.0);
  }
  for (std::size_t i = 0; i < active.count; ++i) {
    const std::size_t k = active.index[i];
    prefetch.next_line();
    DoubleVec x[2 * Vectors];
    for (std::size_t v = 0; v < Vectors; ++v) {
      const Vec lanes = load(in + k * kTileRows + kLanes * v);
      x[2 * v] = widen_low(lanes);
      x[2 * v + 1] = widen_high(lanes);
    }
    for (std::size_t c = 0; c < Width; ++c) {
      const DoubleVec weight = splat_double(w[k * n + c]);
      for (std::size_t v = 0; v < 2 * Vectors; ++v) acc[c][v] = mul_add(x[v], weight, acc[c][v]);
    }
  }
  const DoubleVec scale = splat_double(alpha);
  for (std::size_t c = 0; c < Width; ++c) {
    for (std::size_t v = 0; v < 2 * Vectors; ++v) {
      store_narrowed(out + c * kTileRows + kLanes / 2 * v, acc[c][v] * scale);
    }
  }
}

template <std::size_t Vectors, std::size_t Width = kTileDoublePanelWidth>
void tile_panel_double_of(std::size_t width, const ActiveInputs& active, std::size_t n,
                          float alpha, const float* in, const float* w, float* out,
                          RowPrefetch& prefetch) {
  if constexpr (Width > 1) {
    if (width < Width) {
      tile_panel_double_of<Vectors, Width - 1>(width, active, n, alpha, in, w, out, prefetch);
      return;
    }
  }
  tile_panel_double<Width, Vectors>(active, n, alpha, in, w, out, prefetch);
}

// Inputs per block of tile_gemm: 128 of them are 16 KB of a tile (128 bytes a feature),
// which stay in the 48 KB L1 of this Intel Xeon (Sapphire Rapids class) beside a panel's
// weights for the block (3 KB at 6 columns), where a whole lane group (784 inputs of
// 64 bytes, 50 KB) did not.
constexpr std::size_t kBlockInputs = 128;

// For each of the `Groups` lane groups g, the inputs of `active` that are nonzero in
// some lane of [g * kGroupLanes, (g + 1) * kGroupLanes), written from kept + g * active.count;
// count[g] of them. A lane group of 16 digits has 398 nonzero pixels where the tile's 32
// have 437, 8 digits 354 (MNIST test set), and skipping zeros changes no bit (see
// InputSelection). One pass for all groups, each index read once.
template <std::size_t Groups>
void group_nonzero_inputs(const ActiveInputs& active, const float* in, std::uint32_t* kept,
                          std::size_t (&count)[Groups]) {
  for (std::size_t& c : count) c = 0;
  for (std::size_t i = 0; i < active.count; ++i) {
    const std::uint32_t k = active.index[i];
    for (std::size_t g = 0; g < Groups; ++g) {
      kept[g * active.count + count[g]] = k;
      count[g] += any_nonzero_lane<kTileVectors>(in + k * kTileRows + g * kGroupLanes);
    }
  }
}

// group_nonzero_inputs for the `groups` lane groups of a tile or a half tile.
template <std::size_t Groups>
void lane_group_inputs(std::size_t groups, const ActiveInputs& active, const float* in,
                       std::uint32_t* kept, ActiveInputs* group_active) {
  if constexpr (Groups > 1) {
    if (groups < Groups) {
      lane_group_inputs<Groups / 2>(groups, active, in, kept, group_active);
      return;
    }
    std::size_t count[Groups];
    group_nonzero_inputs(active, in, kept, count);
    for (std::size_t g = 0; g < Groups; ++g) {
      group_active[g] = {kept + g * active.count, count[g], true};
    }
  }
}

}  // namespace

void tile_gemm(std::size_t inputs, const ActiveInputs& active, std::size_t outputs, float alpha,
               const float* in, const float* panels, std::size_t max_width, float* out,
               std::size_t lanes, RowPrefetch& next_tile) {
  RowPrefetch prefetch = next_tile;  // a local copy stays in registers
  // Where a tile is several lane groups, each gets its own list of nonzero inputs.
  constexpr std::size_t kGroups = kTileRows / kGroupLanes;
  ActiveInputs group_active[kGroups];
  const std::size_t groups = lanes / kGroupLanes;
  if (groups > 1 && active.lane_groups != nullptr) {
    for (std::size_t g = 0; g < groups; ++g) group_active[g] = active.lane_groups[g];
  } else if (groups > 1 && active.zeros_skippable) {
    thread_local std::vector<std::uint32_t> kept;
    if (kept.size() < groups * active.count) kept.resize(groups * active.count);
    lane_group_inputs<kGroups>(groups, active, in, kept.data(), group_active);
  } else {
    for (ActiveInputs& group : group_active) group = active;
  }
  // The inputs in blocks of at most kBlockInputs, each block through every panel before
  // the next: the block's part of the tile stays in L1 while the panels read it.
  std::size_t longest = active.count;
  for (std::size_t g = 0; g < groups; ++g) longest = std::max(longest, group_active[g].count);
  const std::size_t blocks = std::max<std::size_t>(1, (longest + kBlockInputs - 1) / kBlockInputs);
  const std::size_t block = (longest + blocks - 1) / blocks;
  const PanelLayout layout(outputs, max_width);
  for (std::size_t b = 0; b < blocks; ++b) {
    for (std::size_t p = 0; p < layout.count; ++p) {
      const std::size_t first = layout.first_column(p);
      const float* panel = panels + first * inputs;
      for (std::size_t lane = 0; lane < lanes; lane += kGroupLanes) {
        float* panel_out = out + first * kTileRows + lane;
        const bool whole_group = lanes - lane >= kGroupLanes;
        const ActiveInputs& list = whole_group ? group_active[lane / kGroupLanes] : active;
        const InputStretch stretch{list.index + std::min(list.count, b * block),
                                   list.index + std::min(list.count, (b + 1) * block), b == 0,
                                   b + 1 == blocks};
        if (whole_group) {
          tile_panel_of<kTileVectors>(layout.width(p), stretch, alpha, in + lane, panel,
                                      panel_out, prefetch);
        } else {
          tile_panel_of<1>(layout.width(p), stretch, alpha, in + lane, panel, panel_out,
                           prefetch);
        }
      }
    }
  }
  next_tile = prefetch;
}

void tile_gemm_double(const ActiveInputs& active, std::size_t outputs, float alpha,
                      const float* in, const float* weights, float* out, std::size_t lanes,
                      RowPrefetch& next_tile) {
  RowPrefetch prefetch = next_tile;
  for (std::size_t first = 0; first < outputs; first += kTileDoublePanelWidth) {
    const std::size_t width = std::min(kTileDoublePanelWidth, outputs - first);
    for (std::size_t lane = 0; lane < lanes; lane += kGroupLanes) {
      float* panel_out = out + first * kTileRows + lane;
      if (lanes - lane >= kGroupLanes) {
        tile_panel_double_of<kTileVectors>(width, active, outputs, alpha, in + lane,
                                           weights + first, panel_out, prefetch);
      } else {
        tile_panel_double_of<1>(width, active, outputs, alpha, in + lane, weights + first,
                                panel_out, prefetch);
      }
    }
  }
  next_tile = prefetch;
}

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
