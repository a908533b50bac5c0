// Nanoseconds per row of each kernel of each family this CPU runs, on the textbook's
// 784-50-100-10 layer shapes: the figures the kernels' comments quote. Not a test (no
// pass/fail); build with `cmake --build BUILD --target kernel_bench` and run
// `kernel_bench [repeats]`. Inputs have no zeros unless a line says "digit-like" (60%
// of the inputs zero, in the same places for every row, as a digit's background: an
// upper bound on what zero skipping saves).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "input_transform.hpp"
#include "kernels.hpp"
#include "kernels/kernel_table.hpp"

namespace {

using mlpinfer::kernels::ActiveInputs;
using mlpinfer::kernels::InputSelection;
using mlpinfer::kernels::KernelTable;
using mlpinfer::kernels::kTileRows;
using mlpinfer::kernels::RowPrefetch;

// Best of `repeats` timings of `calls` calls, in ns per call.
double best_ns(const std::function<void()>& call, int calls, int repeats) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) call();
    const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count() / calls);
  }
  return best;
}

std::vector<float> random_floats(std::size_t count, std::mt19937& rng, double zero_fraction) {
  std::uniform_real_distribution<float> value(0.01f, 1.0f);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::vector<float> out(count);
  for (float& v : out) v = value(rng);
  if (zero_fraction > 0) {
    // The same inputs (columns) zero in every row.
    const std::size_t width = 784;
    std::vector<bool> zero(width);
    for (std::size_t k = 0; k < width; ++k) zero[k] = coin(rng) < zero_fraction;
    for (std::size_t i = 0; i < count; ++i) {
      if (zero[i % width]) out[i] = 0.0f;
    }
  }
  return out;
}

void bench_family(const KernelTable& kernels, int repeats) {
  std::mt19937 rng(7);
  const std::size_t in = 784;
  const std::size_t hidden = 50;
  const std::size_t width = kernels.tile_panel_width;
  std::vector<std::uint32_t> all(in);
  std::iota(all.begin(), all.end(), 0u);
  std::vector<std::uint32_t> scratch(in);
  const std::vector<float> w1 = random_floats(in * hidden, rng, 0.0);
  const std::vector<float> w2 = random_floats(hidden * 100, rng, 0.0);
  const std::vector<float> w3 = random_floats(100 * 10, rng, 0.0);
  const auto p1 = mlpinfer::kernels::pack_panels(w1, in, hidden, width);
  const auto p2 = mlpinfer::kernels::pack_panels(w2, hidden, 100, width);
  std::vector<float> b1(100, 0.1f);
  std::vector<float> out(kTileRows * 100);
  const mlpinfer::InputView none{};
  RowPrefetch prefetch(none, 0, 0);
  const auto line = [&](const char* what, double ns_per_call, double rows) {
    std::printf("%-9s %-52s %9.1f ns/row\n", kernels.isa, what, ns_per_call / rows);
  };
  for (double zeros : {0.0, 0.6}) {
    const std::vector<float> tile = random_floats(in * kTileRows, rng, 0.0);
    std::vector<float> tile_in = tile;
    // Tile layout: feature-major, so zero whole features.
    if (zeros > 0) {
      for (std::size_t k = 0; k < in; ++k) {
        if (k % 5 < 3) std::fill_n(tile_in.begin() + static_cast<std::ptrdiff_t>(k * kTileRows), kTileRows, 0.0f);
      }
    }
    const std::size_t count = kernels.tile_nonzero_inputs(tile_in.data(), in, kTileRows, scratch.data());
    const ActiveInputs active{scratch.data(), count};
    const std::string suffix = zeros > 0 ? ", digit-like" : "";
    line(("tile_gemm 784x50, 32 rows" + suffix).c_str(),
         best_ns([&] { kernels.tile_gemm(in, active, hidden, 1.0f, tile_in.data(), p1.data(), width,
                                         out.data(), kTileRows, prefetch); }, 200, repeats), 32);
    // As Network runs a layer after the first (or a transformed input): the tile's zero
    // scan, then tile_gemm told that zeros may be skipped, which scans each lane group
    // again where a tile is several (AVX2, baseline). The first layer's list comes from
    // load_tile, without the first scan.
    line(("tile_gemm 784x50, 32 rows + zero scans" + suffix).c_str(),
         best_ns([&] {
           const ActiveInputs scanned{scratch.data(), kernels.tile_nonzero_inputs(
                                                          tile_in.data(), in, kTileRows,
                                                          scratch.data()),
                                      true};
           kernels.tile_gemm(in, scanned, hidden, 1.0f, tile_in.data(), p1.data(), width,
                             out.data(), kTileRows, prefetch);
         }, 200, repeats), 32);
  }
  const std::vector<float> tile = random_floats(in * kTileRows, rng, 0.0);
  const ActiveInputs all_in{all.data(), in};
  line("tile_gemm 784x50, 16 rows (half tile)",
       best_ns([&] { kernels.tile_gemm(in, all_in, hidden, 1.0f, tile.data(), p1.data(), width,
                                       out.data(), 16, prefetch); }, 200, repeats), 16);
  const ActiveInputs all_hidden{all.data(), hidden};
  line("tile_gemm 50x100, 32 rows",
       best_ns([&] { kernels.tile_gemm(hidden, all_hidden, 100, 1.0f, tile.data(), p2.data(),
                                       width, out.data(), kTileRows, prefetch); }, 1000, repeats), 32);
  const ActiveInputs all_100{all.data(), 100};
  line("tile_gemm_double 100x10, 32 rows",
       best_ns([&] { kernels.tile_gemm_double(all_100, 10, 1.0f, tile.data(), w3.data(),
                                              out.data(), kTileRows, prefetch); }, 2000, repeats), 32);
  line("tile_nonzero_inputs 784, 32 rows",
       best_ns([&] { kernels.tile_nonzero_inputs(tile.data(), in, kTileRows, scratch.data()); },
               2000, repeats), 32);
  std::vector<float> act(hidden * kTileRows, 0.5f);
  line("tile_bias_activation sigmoid 50, 32 rows",
       best_ns([&] { kernels.tile_bias_activation(act.data(), hidden, kTileRows,
                                                  {b1.data(), {mlpinfer::Activation::sigmoid}}); }, 5000, repeats), 32);
  // Newer activations and LayerNorm, in place on the same tile (b1 > 0 keeps every value
  // positive and normal, call after call).
  const mlpinfer::LayerNormSpec norm{std::vector<float>(100, 1.0f), std::vector<float>(100, 0.0f),
                                     1e-5f, false};
  for (const auto activation : {mlpinfer::Activation::gelu, mlpinfer::Activation::silu,
                                mlpinfer::Activation::softplus}) {
    line(("tile_bias_activation " + std::string(mlpinfer::activation_name(activation)) +
          " 50, 32 rows").c_str(),
         best_ns([&] { kernels.tile_bias_activation(act.data(), hidden, kTileRows,
                                                    {b1.data(), {activation}}); }, 5000, repeats), 32);
  }
  line("tile_bias_activation relu + LayerNorm 50, 32 rows",
       best_ns([&] { kernels.tile_bias_activation(act.data(), hidden, kTileRows,
                                                  {b1.data(), {mlpinfer::Activation::relu}, &norm}); },
               5000, repeats), 32);
  // Rows: the row kernel on padded W.
  const std::size_t ldb = mlpinfer::kernels::padded_columns(hidden);
  const auto padded = mlpinfer::kernels::pad_columns(w1, in, hidden);
  const std::vector<float> rows = random_floats(in * 4, rng, 0.0);
  const InputSelection every{false, all.data(), scratch.data()};
  for (std::size_t m : {1, 4}) {
    line(("small_gemm 784x50, " + std::to_string(m) + " row(s)").c_str(),
         best_ns([&] { kernels.small_gemm(m, hidden, in, 1.0f, rows.data(), in, padded.data(), ldb,
                                          out.data(), hidden, every); }, 500, repeats),
         static_cast<double>(m));
  }
  // One image through the row path, layer by layer (as Network::forward runs it).
  const std::vector<float> digit = random_floats(in, rng, 0.8);
  const InputSelection skipping{true, all.data(), scratch.data()};
  line("nonzero_inputs 784, 1 row",
       best_ns([&] { kernels.nonzero_inputs(digit.data(), 1, in, in, scratch.data()); }, 5000,
               repeats), 1);
  line("small_gemm 784x50, 1 row, 20% nonzero (scan included)",
       best_ns([&] { kernels.small_gemm(1, hidden, in, 1.0f, digit.data(), in, padded.data(), ldb,
                                        out.data(), hidden, skipping); }, 2000, repeats), 1);
  const std::size_t ldb2 = mlpinfer::kernels::padded_columns(100);
  const auto padded2 = mlpinfer::kernels::pad_columns(w2, hidden, 100);
  const std::vector<float> h1 = random_floats(100, rng, 0.0);
  line("small_gemm 50x100, 1 row",
       best_ns([&] { kernels.small_gemm(1, 100, hidden, 1.0f, h1.data(), hidden, padded2.data(),
                                        ldb2, out.data(), 100, every); }, 5000, repeats), 1);
  const std::size_t ldb3 = mlpinfer::kernels::padded_columns(10);
  const auto padded3 = mlpinfer::kernels::pad_columns(w3, 100, 10);
  line("small_gemm_double 100x10, 1 row",
       best_ns([&] { kernels.small_gemm_double(1, 10, 100, 1.0f, h1.data(), 100, padded3.data(),
                                               ldb3, out.data(), every); }, 5000, repeats), 1);
  std::vector<float> row_out(100, 0.5f);
  line("bias_activation sigmoid 100, 1 row",
       best_ns([&] { kernels.bias_activation(row_out.data(), 1, 100,
                                             {b1.data(), {mlpinfer::Activation::sigmoid}}); }, 5000, repeats), 1);
  line("bias_activation softmax 10, 1 row",
       best_ns([&] { kernels.bias_activation(row_out.data(), 1, 10,
                                             {b1.data(), {mlpinfer::Activation::softmax}}); }, 5000, repeats), 1);
  line("bias_activation relu + LayerNorm 100, 1 row",
       best_ns([&] { kernels.bias_activation(row_out.data(), 1, 100,
                                             {b1.data(), {mlpinfer::Activation::relu}, &norm}); },
               5000, repeats), 1);
  const std::vector<float> pixels_f = random_floats(in * kTileRows, rng, 0.0);
  std::vector<unsigned char> pixels_u8(in * kTileRows);
  for (std::size_t i = 0; i < pixels_u8.size(); ++i) pixels_u8[i] = static_cast<unsigned char>(i * 37);
  const mlpinfer::InputView view_f{pixels_f.data(), mlpinfer::ElementType::float32, kTileRows, in,
                                   static_cast<std::ptrdiff_t>(in * 4), 4};
  const mlpinfer::InputView view_u8{pixels_u8.data(), mlpinfer::ElementType::uint8, kTileRows, in,
                                    static_cast<std::ptrdiff_t>(in), 1};
  std::vector<float> loaded(in * kTileRows);
  std::vector<std::uint32_t> loaded_nonzero((1 + mlpinfer::kernels::kMaxLaneGroups) * in);
  ActiveInputs lane_groups[mlpinfer::kernels::kMaxLaneGroups];
  // load_tile also lists the tile's nonzero features (what tile_nonzero_inputs finds).
  line("load_tile float32 784, 32 rows (from cache)",
       best_ns([&] { kernels.load_tile(view_f, 0, kTileRows, kTileRows, loaded.data(),
                                       loaded_nonzero.data(), lane_groups); }, 2000, repeats), 32);
  line("load_tile uint8 784, 32 rows (from cache)",
       best_ns([&] { kernels.load_tile(view_u8, 0, kTileRows, kTileRows, loaded.data(),
                                       loaded_nonzero.data(), lane_groups); }, 2000, repeats), 32);
  // Layer 1 as Network runs it, on digit-like rows: load_tile and its lists, then
  // tile_gemm given the lane groups' lists, or scanning the groups itself (where a tile
  // is several lane groups: AVX2, NEON, baseline).
  const std::vector<float> digit_rows = random_floats(in * kTileRows, rng, 0.6);
  const mlpinfer::InputView view_digits{digit_rows.data(), mlpinfer::ElementType::float32,
                                        kTileRows, in, static_cast<std::ptrdiff_t>(in * 4), 4};
  for (const bool groups_listed : {true, false}) {
    line(groups_listed ? "load_tile + tile_gemm 784x50, 32 rows, digit-like"
                       : "load_tile + tile_gemm 784x50, 32 rows, digit-like, groups scanned",
         best_ns([&] {
           const std::size_t count = kernels.load_tile(view_digits, 0, kTileRows, kTileRows,
                                                       loaded.data(), loaded_nonzero.data(),
                                                       lane_groups);
           const ActiveInputs listed{loaded_nonzero.data(), count, true,
                                     groups_listed ? lane_groups : nullptr};
           kernels.tile_gemm(in, listed, hidden, 1.0f, loaded.data(), p1.data(), width,
                             out.data(), kTileRows, prefetch);
         }, 200, repeats), 32);
  }
  // Layer 1 on rows whose nonzero inputs lie in places of their own (19% of each row, as
  // many as an MNIST digit has, but scattered, so that a lane group shares fewer): the
  // tile against row by row (sparse_rows_gemm, the masks included), as Network chooses
  // between them per tile.
  std::vector<float> scattered = random_floats(in * kTileRows, rng, 0.0);
  {
    std::uniform_real_distribution<double> coin(0.0, 1.0);
    for (float& v : scattered) v = coin(rng) < 0.19 ? v : 0.0f;
  }
  const mlpinfer::InputView view_scattered{scattered.data(), mlpinfer::ElementType::float32,
                                           kTileRows, in, static_cast<std::ptrdiff_t>(in * 4), 4};
  line("load_tile + tile_gemm 784x50, 32 rows, 19% scattered",
       best_ns([&] {
         const std::size_t count = kernels.load_tile(view_scattered, 0, kTileRows, kTileRows,
                                                     loaded.data(), loaded_nonzero.data(),
                                                     lane_groups);
         kernels.tile_gemm(in, {loaded_nonzero.data(), count, true, lane_groups}, hidden, 1.0f,
                           loaded.data(), p1.data(), width, out.data(), kTileRows, prefetch);
       }, 200, repeats), 32);
  std::vector<std::uint64_t> masks(kTileRows * mlpinfer::kernels::mask_words(in));
  std::vector<float> sums(kTileRows * ldb);
  line("row_nonzero_masks 784, 32 rows",
       best_ns([&] { kernels.row_nonzero_masks(scattered.data(), kTileRows, in, in, hidden,
                                               masks.data()); }, 2000, repeats), 32);
  line("masks + sparse_rows_gemm 784x50, 32 rows, 19% scattered",
       best_ns([&] {
         kernels.row_nonzero_masks(scattered.data(), kTileRows, in, in, hidden, masks.data());
         kernels.sparse_rows_gemm(scattered.data(), in, kTileRows, masks.data(), true, in, hidden,
                                  1.0f, padded.data(), ldb, out.data(), kTileRows, sums.data(),
                                  prefetch);
       }, 200, repeats), 32);
  // As a block's later tiles run: the masks found on the way, no pass of their own.
  line("sparse_rows_gemm 784x50, 32 rows, 19% scattered, masks on the way",
       best_ns([&] {
         kernels.sparse_rows_gemm(scattered.data(), in, kTileRows, masks.data(), false, in,
                                  hidden, 1.0f, padded.data(), ldb, out.data(), kTileRows,
                                  sums.data(), prefetch);
       }, 200, repeats), 32);
  // An input transform on the tile (float32 input): the family's loader and vector
  // transform, as Network runs it, against the scalar transform of input_transform.cpp
  // (the same bits; the only path for float64 input).
  std::vector<double> shift(in, 0.25);
  std::vector<double> multiplier(in, 3.0);
  line("load_tile + transform_tile float32 784, 32 rows (from cache)",
       best_ns([&] {
         kernels.load_tile(view_f, 0, kTileRows, kTileRows, loaded.data(), loaded_nonzero.data(),
                           lane_groups);
         kernels.transform_tile(loaded.data(), in, kTileRows, kTileRows, 1.0, shift.data(),
                                multiplier.data());
       }, 2000, repeats), 32);
  if (&kernels == mlpinfer::kernels::find_kernels("baseline")) {
    const mlpinfer::InputTransform transform{shift, multiplier};
    std::printf("%-9s %-52s %9.1f ns/row\n", "scalar", "transform_tile float32 784, 32 rows (from cache)",
                best_ns([&] { mlpinfer::transform_tile(view_f, 1.0f, transform, 0, kTileRows,
                                                        kTileRows, loaded.data()); }, 2000,
                        repeats) / 32);
  }
  // From memory: tile after tile through 10,016 float32 rows (31 MB, more than the
  // caches), as a large batch reads its input.
  const std::size_t batch = 313 * kTileRows;
  const std::vector<float> images = random_floats(in * batch, rng, 0.6);
  const mlpinfer::InputView view_batch{images.data(), mlpinfer::ElementType::float32, batch, in,
                                       static_cast<std::ptrdiff_t>(in * 4), 4};
  line("load_tile float32 784, 32 rows (from memory)",
       best_ns([&] {
         for (std::size_t first = 0; first < batch; first += kTileRows) {
           kernels.load_tile(view_batch, first, kTileRows, kTileRows, loaded.data(),
                             loaded_nonzero.data(), lane_groups);
         }
       }, 1, repeats), static_cast<double>(batch));
  // Layers 1 and 2 on each tile of the same batch, the next tile's rows prefetched meanwhile
  // (RowPrefetch, as Network runs a block), against the same tile again and again.
  std::vector<float> second(100 * kTileRows);
  const auto layers12 = [&](const mlpinfer::InputView& view, std::size_t first,
                          RowPrefetch& next) {
    const std::size_t count = kernels.load_tile(view, first, kTileRows, kTileRows, loaded.data(),
                                                loaded_nonzero.data(), lane_groups);
    const ActiveInputs listed{loaded_nonzero.data(), count, true, lane_groups};
    kernels.tile_gemm(in, listed, hidden, 1.0f, loaded.data(), p1.data(), width, out.data(),
                      kTileRows, next);
    kernels.tile_gemm(hidden, all_hidden, 100, 1.0f, out.data(), p2.data(), width,
                      second.data(), kTileRows, next);
  };
  line("load_tile + tile_gemm 784x50 + 50x100, 32 rows, digit-like (from memory)",
       best_ns([&] {
         for (std::size_t first = 0; first < batch; first += kTileRows) {
           const std::size_t after = first + kTileRows;
           RowPrefetch next(view_batch, after, after < batch ? kTileRows : 0);
           layers12(view_batch, first, next);
         }
       }, 1, repeats), static_cast<double>(batch));
  line("load_tile + tile_gemm 784x50 + 50x100, 32 rows, digit-like (from cache)",
       best_ns([&] {
         for (std::size_t first = 0; first < batch; first += kTileRows) {
           RowPrefetch next(view_batch, 0, kTileRows);
           layers12(view_batch, 0, next);
         }
       }, 1, repeats), static_cast<double>(batch));
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  std::printf("kernel families this CPU runs:");
  for (const std::string& isa : mlpinfer::kernels::supported_isas()) std::printf(" %s", isa.c_str());
  std::printf("\n");
  for (const std::string& isa : mlpinfer::kernels::supported_isas()) {
    bench_family(*mlpinfer::kernels::find_kernels(isa), repeats);
  }
  return 0;
}
