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

// The lists load_tile writes: the tile's nonzero features, and those of each of its
// `groups` whole lane groups of kGroupLanes lanes (when there are several).
struct NonzeroLists {
  std::uint32_t* tile;
  std::size_t tile_count;
  std::size_t groups;
  std::uint32_t* group[kMaxLaneGroups];
  std::size_t group_count[kMaxLaneGroups];
};

// Features [first_feature, cols) one element at a time: what is left after the whole
// kLanes-feature blocks, or every feature of a strided view.
template <typename T>
void load_tile_features(const InputView& src, std::size_t first_row, std::size_t rows,
                        std::size_t lanes, std::size_t first_feature, float* tile,
                        NonzeroLists& lists) {
  for (std::size_t f = first_feature; f < src.cols; ++f) {
    const std::ptrdiff_t offset = static_cast<std::ptrdiff_t>(f) * src.col_stride_bytes;
    unsigned groups_nonzero = 0;  // bit g: nonzero in some lane of lane group g
    for (std::size_t r = 0; r < lanes; ++r) {
      const float value =
          r < rows ? load_as_float<T>(row_address(src, first_row + r) + offset) : 0.0f;
      tile[f * kTileRows + r] = value;
      groups_nonzero |= static_cast<unsigned>(value != 0.0f) << (r / kGroupLanes);  // NaN counts
    }
    lists.tile[lists.tile_count] = static_cast<std::uint32_t>(f);
    lists.tile_count += groups_nonzero != 0;
    for (std::size_t g = 0; g < lists.groups; ++g) {
      lists.group[g][lists.group_count[g]] = static_cast<std::uint32_t>(f);
      lists.group_count[g] += (groups_nonzero >> g) & 1u;
    }
  }
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
// in memory. Where a tile is several lane groups (AVX2, NEON, baseline), each group's
// list is written too, which tile_gemm would otherwise scan for (kernel_bench, layer 1
// on digit-like rows, load_tile + tile_gemm, AVX2: 431-454 ns a row against 462-474
// with the groups scanned; the baseline 1,230-1,300 against 1,275-1,297: its loader
// costs more by as much as its scans cost less).
template <typename T>
void load_tile_as(const InputView& src, std::size_t first_row, std::size_t rows,
                  std::size_t lanes, float* tile, NonzeroLists& lists) {
  constexpr std::size_t kStepBytes = kLanes * sizeof(T);
  constexpr std::size_t kGroups = kTileRows / kGroupLanes;
  std::size_t f = 0;
  for (; contiguous_rows<T>(src) && f + kLanes <= src.cols; f += kLanes) {
    const std::size_t offset = f * sizeof(T);
    const bool ahead = offset % 64 < kStepBytes && offset + kLoadAhead<T> < src.cols * sizeof(T);
    IntVec seen[kGroups];  // per lane group
    for (IntVec& bits : seen) bits = to_bits(splat(0.0f));
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
      IntVec bits = to_bits(block[0]);
      for (std::size_t r = 1; r < kLanes; ++r) bits |= to_bits(block[r]);
      seen[group / kGroupLanes] |= bits;
      transpose_store(block, tile + f * kTileRows + group, kTileRows);
    }
    const auto first = static_cast<std::uint32_t>(f);
    IntVec any = seen[0];
    for (std::size_t g = 1; g < kGroups; ++g) any |= seen[g];
    lists.tile_count +=
        append_lanes(nonzero_lane_mask(from_bits(any)), first, lists.tile + lists.tile_count);
    for (std::size_t g = 0; g < lists.groups; ++g) {
      lists.group_count[g] += append_lanes(nonzero_lane_mask(from_bits(seen[g])), first,
                                           lists.group[g] + lists.group_count[g]);
    }
  }
  load_tile_features<T>(src, first_row, rows, lanes, f, tile, lists);
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
                      std::size_t lanes, float* tile, std::uint32_t* nonzero,
                      ActiveInputs* lane_groups) {
  // A lone group's list is the tile's: it is written once.
  const std::size_t whole_groups = lanes / kGroupLanes;
  NonzeroLists lists{nonzero, 0, whole_groups > 1 ? whole_groups : 0, {}, {}};
  for (std::size_t g = 0; g < lists.groups; ++g) lists.group[g] = nonzero + (1 + g) * src.cols;
  switch (src.type) {
    case ElementType::float32: load_tile_as<float>(src, first_row, rows, lanes, tile, lists); break;
    case ElementType::float64: load_tile_as<double>(src, first_row, rows, lanes, tile, lists); break;
    case ElementType::uint8:
      load_tile_as<std::uint8_t>(src, first_row, rows, lanes, tile, lists);
      break;
  }
  for (std::size_t g = 0; g < whole_groups; ++g) {
    lane_groups[g] = lists.groups == 0 ? ActiveInputs{lists.tile, lists.tile_count, true}
                                       : ActiveInputs{lists.group[g], lists.group_count[g], true};
  }
  return lists.tile_count;
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
