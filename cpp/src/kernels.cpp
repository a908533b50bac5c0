#include "kernels.hpp"

#include <algorithm>

namespace mlpinfer::kernels {

PanelLayout::PanelLayout(std::size_t outputs, std::size_t max_width)
    : count((outputs + max_width - 1) / max_width),
      base_width(outputs / count),
      wider(outputs % count) {}

std::size_t PanelLayout::first_column(std::size_t panel) const {
  return panel * base_width + std::min(panel, wider);
}

std::size_t PanelLayout::width(std::size_t panel) const {
  return base_width + (panel < wider ? 1 : 0);
}

CacheAlignedVector<float> pack_panels(const std::vector<float>& weights, std::size_t inputs,
                                      std::size_t outputs, std::size_t max_width) {
  CacheAlignedVector<float> packed(inputs * outputs);
  const PanelLayout layout(outputs, max_width);
  for (std::size_t p = 0; p < layout.count; ++p) {
    const std::size_t first = layout.first_column(p);
    const std::size_t width = layout.width(p);
    for (std::size_t i = 0; i < inputs; ++i) {
      std::copy_n(weights.begin() + static_cast<std::ptrdiff_t>(i * outputs + first), width,
                  packed.begin() + static_cast<std::ptrdiff_t>(first * inputs + i * width));
    }
  }
  return packed;
}

CacheAlignedVector<float> pad_columns(const std::vector<float>& weights, std::size_t inputs,
                                      std::size_t outputs) {
  const std::size_t stride = padded_columns(outputs);
  CacheAlignedVector<float> padded(inputs * stride, 0.0f);
  for (std::size_t r = 0; r < inputs; ++r) {
    std::copy_n(weights.begin() + static_cast<std::ptrdiff_t>(r * outputs), outputs,
                padded.begin() + static_cast<std::ptrdiff_t>(r * stride));
  }
  return padded;
}

RowPrefetch::RowPrefetch(const InputView& src, std::size_t first_row, std::size_t rows) {
  const std::size_t element = src.type == ElementType::uint8     ? 1
                              : src.type == ElementType::float32 ? 4
                                                                 : 8;
  if (src.col_stride_bytes != static_cast<std::ptrdiff_t>(element)) return;
  data_ = static_cast<const char*>(src.data);
  row_offset_ = static_cast<std::ptrdiff_t>(first_row) * src.row_stride_bytes;
  row_stride_ = src.row_stride_bytes;
  row_bytes_ = src.cols * element;
  rows_left_ = rows;
}

void store_tile(const float* tile, std::size_t width, std::size_t rows, float* out) {
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t f = 0; f < width; ++f) out[r * width + f] = tile[f * kTileRows + r];
  }
}

}  // namespace mlpinfer::kernels
