// The KernelTable of the family this object library is compiled for (see simd.hpp).
#include "family_api.hpp"
#include "kernel_table.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {

#define MLPINFER_STRINGIFY_(name) #name
#define MLPINFER_STRINGIFY(name) MLPINFER_STRINGIFY_(name)

const KernelTable& table() {
  static const KernelTable kernels{
      MLPINFER_STRINGIFY(MLPINFER_FAMILY),
      kFusedMultiplyAdd,
      kTilePanelWidth,
      &bias_activation,
      &tile_bias_activation,
      &small_gemm,
      &small_gemm_double,
      &tile_gemm,
      &tile_gemm_double,
      &nonzero_inputs,
      &tile_nonzero_inputs,
      &gather_rows,
      &load_tile,
      &transform_tile,
      &row_nonzero_masks,
      &sparse_rows_gemm,
  };
  return kernels;
}

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
