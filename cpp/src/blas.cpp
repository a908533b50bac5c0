#include "blas.hpp"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <vector>

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

namespace {

void set_threads(int threads) {
#if defined(MLPINFER_SCIPY_OPENBLAS)
  scipy_openblas_set_num_threads(threads);
#else
  // Only in the library that provides our cblas_sgemm: a process-wide lookup could
  // find, and pin, the OpenBLAS that NumPy loaded. MKL has no such entry point here;
  // with MKL, set MKL_NUM_THREADS=1 (see README).
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&cblas_sgemm), &info) == 0 || info.dli_fname == nullptr) {
    return;
  }
  void* library = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (library == nullptr) return;
  using set_threads_function = void (*)(int);
  for (const char* symbol : {"openblas_set_num_threads", "bli_thread_set_num_threads"}) {
    if (auto* set = reinterpret_cast<set_threads_function>(dlsym(library, symbol))) {
      set(threads);
    }
  }
  dlclose(library);
#endif
}

}  // namespace

void make_single_threaded() { set_threads(1); }

double time_sgemm(std::size_t n, unsigned threads, unsigned repeats) {
  const std::vector<float> a(n * n, 0.5f);
  const std::vector<float> b(n * n, 0.25f);
  std::vector<float> c(n * n);
  set_threads(static_cast<int>(threads));
  double best = 0.0;
  for (unsigned run = 0; run <= repeats; ++run) {  // run 0 warms up
    const auto start = std::chrono::steady_clock::now();
    sgemm(n, n, n, 1.0f, a.data(), n, b.data(), n, c.data(), n);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (run == 1 || (run > 1 && seconds < best)) best = seconds;
  }
  make_single_threaded();
  return best;
}

std::string describe() {
#if defined(MLPINFER_SCIPY_OPENBLAS)
  return std::string("scipy-openblas32 ") + scipy_openblas_get_config() + " (kernel " +
         scipy_openblas_get_corename() + ")";
#else
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&cblas_sgemm), &info) != 0 && info.dli_fname != nullptr) {
    return std::string("system BLAS ") + info.dli_fname;
  }
  return "system BLAS";
#endif
}

}  // namespace mlpinfer::blas
