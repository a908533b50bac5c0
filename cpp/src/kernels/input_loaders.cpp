// Input loaders: rows of the caller's array (float32, float64 or uint8, any strides)
// converted to float, row-major for the row kernels (gather_rows) or feature-major for a
// tile (load_tile).
#include <cstring>

#include "family_api.hpp"
#include "nonzero_lanes.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {
namespace {

const unsigned char* row_address(const InputView& src, std::size_t row) {
  return static_cast<const unsigned char*>(src.data) +
         static_cast<std::ptrdiff_t>(row) * src.row_stride_bytes;
}

template <typename T>
float load_as_float(const unsigned char* address) {
  T value;
  std::memcpy(&value, address, sizeof value);  // the view may be unaligned
  return static_cast<float>(value);
}

template <typename T>
bool contiguous_rows(const InputView& src) {
  return src.col_stride_bytes == static_cast<std::ptrdiff_t>(sizeof(T));
}

template <typename T>
void gather(const InputView& src, std::size_t first_row, std::size_t rows, float* dst) {
  for (std::size_t r = 0; r < rows; ++r) {
    const unsigned char* row = row_address(src, first_row + r);
    float* out = dst + r * src.cols;
    if (contiguous_rows<T>(src)) {
      for (std::size_t c = 0; c < src.cols; ++c) out[c] = load_as_float<T>(row + c * sizeof(T));
    } else {
      for (std::size_t c = 0; c < src.cols; ++c) {
        out[c] = load_as_float<T>(row + static_cast<std::ptrdiff_t>(c) * src.col_stride_bytes);
      }
    }
  }
}

// Features [first_feature, cols) one element at a time: what is left after the whole
// kLanes-feature blocks, or every feature of a strided view. Appends the nonzero ones to
// `nonzero` from position `count`; returns the new count.
template <typename T>
std::size_t load_tile_features(const InputView& src, std::size_t first_row, std::size_t rows,
                               std::size_t lanes, std::size_t first_feature, float* tile,
                               std::uint32_t* nonzero, std::size_t count) {
  for (std::size_t f = first_feature; f < src.cols; ++f) {
    const std::ptrdiff_t offset = static_cast<std::ptrdiff_t>(f) * src.col_stride_bytes;
    bool any = false;
    for (std::size_t r = 0; r < lanes; ++r) {
      const float value =
          r < rows ? load_as_float<T>(row_address(src, first_row + r) + offset) : 0.0f;
      tile[f * kTileRows + r] = value;
      any |= value != 0.0f;  // NaN != 0: NaN counts
    }
    nonzero[count] = static_cast<std::uint32_t>(f);
    count += any;
  }
  return count;
}

// Each row is read kLanes elements at a time, 32 rows side by side: too many streams for
// the hardware prefetcher, so each row asks for its line 256 bytes ahead, once per line
// (measured with 16-float steps on the EPYC, the first float32 tile of a call, from
// memory, one thread: 16.0-16.6 us without, 12.7-13.1 with; 128 and 512 bytes ahead did
// worse). uint8 rows ask 128 bytes ahead: 13.1-14.4 us without, 10.7 with.
template <typename T>
constexpr std::size_t kLoadAhead = sizeof(T) == 1 ? 128 : 256;

// Converting while transposing, kLanes rows x kLanes features at a time; the features
// nonzero in some row are found on the way, from the rows' bits ORed while they are in
// registers (as any_nonzero_lane), instead of a second pass over the tile
// (tile_nonzero_inputs). kernel_bench, float32 tile from cache, ns a row on this Xeon
// (Sapphire Rapids class, 2 busy vCPUs): load then scan 104-122 (AVX-512), 131-155
// (AVX2); loading with the list 81-100 and 91-101. The whole network, MNIST, batch
// 10,000, 2 threads: AVX-512 3.14-3.19 -> 3.19-3.51 M img/s, AVX2 2.14-2.16 -> 2.37-2.41.
// The ORs come after the loads, not between them: GCC 12 then kept all 16 AVX-512 rows
// in memory.
template <typename T>
std::size_t load_tile_as(const InputView& src, std::size_t first_row, std::size_t rows,
                         std::size_t lanes, float* tile, std::uint32_t* nonzero) {
  constexpr std::size_t kStepBytes = kLanes * sizeof(T);
  std::size_t count = 0;
  std::size_t f = 0;
  for (; contiguous_rows<T>(src) && f + kLanes <= src.cols; f += kLanes) {
    const std::size_t offset = f * sizeof(T);
    const bool ahead = offset % 64 < kStepBytes && offset + kLoadAhead<T> < src.cols * sizeof(T);
    IntVec seen = to_bits(splat(0.0f));
    for (std::size_t group = 0; group < lanes; group += kLanes) {
      Vec block[kLanes];
      for (std::size_t r = 0; r < kLanes; ++r) {
        if (group + r < rows) {
          const unsigned char* row = row_address(src, first_row + group + r);
          if (ahead) __builtin_prefetch(row + offset + kLoadAhead<T>, 0, 3);
          block[r] = load_converted<T>(row + offset);
        } else {
          block[r] = splat(0.0f);
        }
      }
      for (const Vec& row : block) seen |= to_bits(row);
      transpose_store(block, tile + f * kTileRows + group, kTileRows);
    }
    count += append_lanes(nonzero_lane_mask(from_bits(seen)), static_cast<std::uint32_t>(f),
                          nonzero + count);
  }
  return load_tile_features<T>(src, first_row, rows, lanes, f, tile, nonzero, count);
}

}  // namespace

void gather_rows(const InputView& src, std::size_t first_row, std::size_t rows, float* dst) {
  switch (src.type) {
    case ElementType::float32: gather<float>(src, first_row, rows, dst); break;
    case ElementType::float64: gather<double>(src, first_row, rows, dst); break;
    case ElementType::uint8: gather<std::uint8_t>(src, first_row, rows, dst); break;
  }
}

std::size_t load_tile(const InputView& src, std::size_t first_row, std::size_t rows,
                      std::size_t lanes, float* tile, std::uint32_t* nonzero) {
  switch (src.type) {
    case ElementType::float32:
      return load_tile_as<float>(src, first_row, rows, lanes, tile, nonzero);
    case ElementType::float64:
      return load_tile_as<double>(src, first_row, rows, lanes, tile, nonzero);
    case ElementType::uint8:
      return load_tile_as<std::uint8_t>(src, first_row, rows, lanes, tile, nonzero);
  }
  return 0;
}

// Each lane's float widened to double, transformed with the double operations of
// input_transform.cpp in the same order (no contraction: the kernel sources are built
// with -ffp-contract=off), and narrowed once: the bits of the scalar transform, a
// vector of kLanes / 2 doubles at a time. The textbook network with a transform, the
// 10,000 MNIST images, one thread, this Xeon (Sapphire Rapids class, busy): the scalar
// transform (input_transform.cpp) 14.4 ms float32 / 14.2 uint8 (AVX-512), 18.6 / 17.4
// (AVX2), 38.2 / 37.7 (baseline); load_tile and this 10.5 / 9.7, 16.1 / 14.7,
// 36.5 / 35.3. kernel_bench, a tile from cache: 215-233 ns a row (AVX-512) against
// 645-700 for the scalar transform. Without a transform: 6 ms (AVX-512); most of the
// rest is the first layer, whose transformed inputs have no zeros to skip.
void transform_tile(float* tile, std::size_t width, std::size_t rows, std::size_t lanes,
                    double scale, const double* shift, const double* multiplier) {
  const DoubleVec factor = splat_double(scale);
  for (std::size_t f = 0; f < width; ++f) {
    const DoubleVec offset = splat_double(shift[f]);
    const DoubleVec gain = splat_double(multiplier[f]);
    float* feature = tile + f * kTileRows;
    for (std::size_t lane = 0; lane < lanes; lane += kLanes) {
      const Vec x = load(feature + lane);
      store_narrowed(feature + lane, (widen_low(x) * factor - offset) * gain);
      store_narrowed(feature + lane + kLanes / 2, (widen_high(x) * factor - offset) * gain);
    }
    for (std::size_t r = rows; r < lanes; ++r) feature[r] = 0.0f;
  }
}

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
