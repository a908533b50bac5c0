// The primitives of the family this translation unit is compiled for: CMake defines
// exactly one MLPINFER_FAMILY_<ISA> per kernel object library (mlpinfer_kernels_<isa>).
// Each simd_<isa>.hpp defines, in namespace mlpinfer::kernels::<isa>, the same names:
//   kLanes, kFusedMultiplyAdd, kTileVectors, kTilePanelWidth, kTileDoublePanelWidth,
//   row_vectors(rows); Vec, IntVec, DoubleVec (kLanes / 2 doubles);
//   load, store, splat, mul_add (float and double vectors), splat_double, widen_low,
//   widen_high, store_narrowed, any_nonzero, load_converted<float|double|uint8_t>,
//   transpose_store;
// and MLPINFER_FAMILY, the namespace the shared kernel sources are compiled into, so
// that each family's copies of them have their own symbols (one definition per ISA).
#pragma once

#if defined(MLPINFER_FAMILY_AVX512)
#include "simd_avx512.hpp"
#elif defined(MLPINFER_FAMILY_AVX2)
#include "simd_avx2.hpp"
#elif defined(MLPINFER_FAMILY_NEON)
#include "simd_neon.hpp"
#elif defined(MLPINFER_FAMILY_BASELINE)
#include "simd_baseline.hpp"
#else
#error "compile the kernel sources through a mlpinfer_kernels_<isa> library (CMakeLists.txt)"
#endif
