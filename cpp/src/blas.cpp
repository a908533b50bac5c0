#include "blas.hpp"

#include <cblas.h>

#if !defined(MLPINFER_SCIPY_OPENBLAS)
#include <dlfcn.h>
#endif

namespace mlpinfer::blas {

#if defined(MLPINFER_SCIPY_OPENBLAS)
// scipy-openblas32 prefixes every symbol with scipy_, so our private copy never
// collides with the OpenBLAS that NumPy or SciPy load into the same process.
#define MLPINFER_CBLAS(name) scipy_cblas_##name
#else
#define MLPINFER_CBLAS(name) cblas_##name
#endif

void sgemm(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
           std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc) {
  // Network and forward() keep every size and leading dimension below INT_MAX.
  MLPINFER_CBLAS(sgemm)(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(m),
                        static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
                        static_cast<blasint>(lda), b, static_cast<blasint>(ldb), 0.0f, c,
                        static_cast<blasint>(ldc));
}

void make_single_threaded() {
#if defined(MLPINFER_SCIPY_OPENBLAS)
  scipy_openblas_set_num_threads(1);
#else
  // A system BLAS may be OpenBLAS, BLIS or a reference BLAS; only the first two
  // have threads to pin, and neither declares it in cblas.h.
  using set_threads = void (*)(int);
  for (const char* symbol : {"openblas_set_num_threads", "bli_thread_set_num_threads"}) {
    if (auto* set = reinterpret_cast<set_threads>(dlsym(RTLD_DEFAULT, symbol))) set(1);
  }
#endif
}

std::string describe() {
#if defined(MLPINFER_SCIPY_OPENBLAS)
  return std::string("scipy-openblas32 ") + scipy_openblas_get_config() + " (kernel " +
         scipy_openblas_get_corename() + ")";
#else
  using get_text = char* (*)();
  if (auto* config = reinterpret_cast<get_text>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    return std::string("system OpenBLAS ") + config();
  }
  return "system BLAS";
#endif
}

}  // namespace mlpinfer::blas
