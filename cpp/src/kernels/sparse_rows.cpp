// The first layer of a tile computed row by row, with the output columns in vector lanes
// (as small_gemm) and each row visiting only its own nonzero inputs, for inputs that are
// mostly zeros: an MNIST digit has 151 nonzero pixels, but a lane group of 16 digits,
// which tile_gemm visits together, 398. The result lands in the tile layout, so the
// later layers run as tiles. Each output is the FMA chain over its row's nonzero inputs
// in ascending order that tile_gemm computes in that row's lane (skipping the zeros it
// visits changes no bit: see InputSelection), so the path a tile takes changes no bit.
#include <algorithm>

#include "family_api.hpp"
#include "nonzero_lanes.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {
namespace {

// Columns of a row's panel: row_vectors(1) vectors, one FMA chain each (see simd_<isa>.hpp).
constexpr std::size_t kPanelVectors = row_vectors(1);
constexpr std::size_t kWordInputs = 64;  // inputs per mask word

// What a row's accumulators do at a word of inputs: start from zero or carry on from
// `sums`; end (+ 0.0f, times alpha) or store the sums as they are.
struct WordStep {
  bool starts;
  bool ends;
};

// A row's `Vectors` vectors of sums over the inputs set in `bits`, ascending (input
// k0 + bit of the row at x, row k0 + bit of w).
template <std::size_t Vectors>
void row_word(std::uint64_t bits, const float* x, const float* w, std::size_t ldb, float* sums,
              WordStep step, float alpha, RowPrefetch& prefetch) {
  Vec acc[Vectors];
  for (std::size_t v = 0; v < Vectors; ++v) {
    acc[v] = step.starts ? splat(0.0f) : load(sums + kLanes * v);
  }
  // A line of the next tile asked for every second input, not every input: the call's
  // registers and branches cost the loop more than the lines it asks for later (a digit
  // has 151 inputs, 4,800 a tile, for 1,568 lines of float32 rows). The textbook network
  // on the 10,000 digits, predict, interleaved processes, this Xeon (Sapphire Rapids
  // class), avx2 2 threads: 3.59 -> 3.52 ms (float32), 4.31 -> 4.17 (float64), uint8
  // unchanged (3.52-3.54); one thread 6.81 -> 6.57; the baseline 7.86 -> 7.69. AVX-512
  // on scattered rows (19% nonzero, 784x50, from memory, one thread): 454-464 -> 402-410
  // ns a row. Spelled as a loop: through a lambda GCC 12 kept AVX-512's accumulators on
  // the stack.
  while (bits != 0) {
    prefetch.next_line();
    for (int input = 0; input < 2 && bits != 0; ++input) {
      const auto k = static_cast<std::size_t>(__builtin_ctzll(bits));
      bits &= bits - 1;
      const Vec value = splat(x[k]);
      const float* weights = w + k * ldb;
      for (std::size_t v = 0; v < Vectors; ++v) {
        acc[v] = mul_add(load(weights + kLanes * v), value, acc[v]);
      }
    }
  }
  const Vec scale = splat(alpha);
  for (std::size_t v = 0; v < Vectors; ++v) {  // + 0.0f: see InputSelection
    store(sums + kLanes * v, step.ends ? (acc[v] + 0.0f) * scale : acc[v]);
  }
}

template <std::size_t Vectors = kPanelVectors>
void row_word_of(std::size_t vectors, std::uint64_t bits, const float* x, const float* w,
                 std::size_t ldb, float* sums, WordStep step, float alpha,
                 RowPrefetch& prefetch) {
  if constexpr (Vectors > 1) {
    if (vectors < Vectors) {
      row_word_of<Vectors - 1>(vectors, bits, x, w, ldb, sums, step, alpha, prefetch);
      return;
    }
  }
  row_word<Vectors>(bits, x, w, ldb, sums, step, alpha, prefetch);
}

// The next row's inputs of a word, asked for during this row's: the tile's rows are in
// L2 since their masks were made, and a digit has about 12 nonzero inputs in a word, too
// few to hide the L2 latency of its 4 lines. AVX2, the MNIST test digits, 784x50, a tile
// from cache, this Xeon (Sapphire Rapids class): 281 ns a row without, 271 with (the
// kernels of kernel_bench's "scattered" lines, on the digits).
void prefetch_word(const float* row, std::size_t count) {
  for (std::size_t line = 0; line < count; line += 64 / sizeof(float)) {
    __builtin_prefetch(row + line, 0, 3);
  }
}

// Rows [0, lanes) of `sums` (row-major, leading dimension ldh) into the tile `out`
// (outputs x kTileRows): feature c of row r to out[c * kTileRows + r], kLanes x kLanes
// blocks at a time.
void sums_to_tile(const float* sums, std::size_t ldh, std::size_t outputs, std::size_t lanes,
                  float* out) {
  for (std::size_t r = 0; r < lanes; r += kLanes) {
    for (std::size_t c = 0; c < outputs; c += kLanes) {
      Vec block[kLanes];
      for (std::size_t j = 0; j < kLanes; ++j) block[j] = load(sums + (r + j) * ldh + c);
      if (c + kLanes <= outputs) {
        transpose_store(block, out + c * kTileRows + r, kTileRows);
      } else {  // the last, partial block of features: only those the tile has
        float part[kLanes * kLanes];
        transpose_store(block, part, kLanes);
        for (std::size_t f = c; f < outputs; ++f) {
          std::copy_n(part + (f - c) * kLanes, kLanes, out + f * kTileRows + r);
        }
      }
    }
  }
}

// Bit j of the result set where x[j] is nonzero (NaN included), for j < count.
std::uint64_t nonzero_bits(const float* x, std::size_t count) {
  std::uint64_t bits = 0;
  std::size_t j = 0;
  for (; j + kLanes <= count; j += kLanes) {
    bits |= std::uint64_t{nonzero_lane_mask(load(x + j))} << j;
  }
  for (; j < count; ++j) bits |= std::uint64_t{x[j] != 0.0f} << j;  // NaN != 0: NaN counts
  return bits;
}

// The inputs nonzero in some row of each group of `together` rows, summed over the groups.
std::size_t group_inputs(const std::uint64_t* masks, std::size_t rows, std::size_t words,
                         std::size_t together) {
  std::size_t visited = 0;
  for (std::size_t first = 0; first < rows; first += together) {
    for (std::size_t word = 0; word < words; ++word) {
      std::uint64_t any = 0;
      for (std::size_t r = first; r < std::min(rows, first + together); ++r) {
        any |= masks[r * words + word];
      }
      visited += static_cast<std::size_t>(__builtin_popcountll(any));
    }
  }
  return visited;
}

}  // namespace

SparseRowsCost row_nonzero_masks(const float* a, std::size_t rows, std::size_t lda,
                                 std::size_t inputs, std::size_t outputs, std::uint64_t* masks) {
  const std::size_t words = mask_words(inputs);
  std::size_t row_inputs = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t word = 0; word < words; ++word) {
      const std::size_t first = word * kWordInputs;
      const std::uint64_t bits =
          nonzero_bits(a + r * lda + first, std::min(kWordInputs, inputs - first));
      masks[r * words + word] = bits;
      row_inputs += static_cast<std::size_t>(__builtin_popcountll(bits));
    }
  }
  // A row's input costs a vector FMA per kLanes columns, each kSparseRowFmaCost of the
  // tile's; tile_gemm visits, per lane group (one vector of a half tile on AVX-512), the
  // inputs nonzero in one of its rows, with a vector FMA per column and vector of lanes.
  const std::size_t lanes = rows <= kTileRows / 2 ? kTileRows / 2 : kTileRows;
  const std::size_t group = std::min(kGroupLanes, lanes);
  const auto row_fmas = static_cast<double>(row_inputs * ((outputs + kLanes - 1) / kLanes));
  const auto tile_fmas = static_cast<double>(group_inputs(masks, rows, words, group) * outputs *
                                             (group / kLanes));
  return {kSparseRowFmaCost * row_fmas, tile_fmas};
}

void sparse_rows_gemm(const float* a, std::size_t lda, std::size_t rows, std::uint64_t* masks,
                      bool masks_made, std::size_t inputs, std::size_t outputs, float alpha,
                      const float* b, std::size_t ldb, float* out, std::size_t lanes,
                      float* sums, RowPrefetch& next_tile) {
  RowPrefetch prefetch = next_tile;  // a local copy stays in registers
  const std::size_t words = mask_words(inputs);
  const std::size_t vectors = (outputs + kLanes - 1) / kLanes;
  const std::size_t ldh = vectors * kLanes;
  // Lanes without a row: tile_gemm's (0 + 0.0f) * alpha, -0.0 for a negative alpha.
  std::fill(sums + rows * ldh, sums + lanes * ldh, 0.0f * alpha);
  // Panel by panel, word by word, row by row: a word's rows of the panel's weights (64 x
  // kPanelVectors vectors, 16 KB on AVX2) stay in L1 while every row reads them.
  for (std::size_t first = 0; first < vectors; first += kPanelVectors) {
    const std::size_t panel = std::min(kPanelVectors, vectors - first);
    for (std::size_t word = 0; word < words; ++word) {
      const WordStep step{word == 0, word + 1 == words};
      const float* w = b + word * kWordInputs * ldb + first * kLanes;
      const std::size_t word_inputs = std::min(kWordInputs, inputs - word * kWordInputs);
      for (std::size_t r = 0; r < rows; ++r) {
        const float* x = a + r * lda + word * kWordInputs;
        if (r + 1 < rows) prefetch_word(x + lda, word_inputs);
        // Unless made already, a row's bits are found as its first panel reaches them,
        // while the word is on its way to L1 for the FMAs anyway (AVX2, MNIST, 784x50,
        // 10,000 rows from memory, one thread, this Xeon: 535-542 ns a row after a
        // separate pass over the rows, 502-511 found on the way).
        std::uint64_t& row_bits = masks[r * words + word];
        if (first == 0 && !masks_made) row_bits = nonzero_bits(x, word_inputs);
        const std::uint64_t bits = row_bits;
        // A word without inputs for this row adds nothing: skipped unless it starts
        // or ends the row's sums.
        if (bits == 0 && !step.starts && !step.ends) continue;
        row_word_of(panel, bits, x, w, ldb, sums + r * ldh + first * kLanes, step, alpha,
                    prefetch);
      }
    }
  }
  sums_to_tile(sums, ldh, outputs, lanes, out);
  next_tile = prefetch;
}

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
