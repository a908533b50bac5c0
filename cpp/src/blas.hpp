// The one place that knows which BLAS we link and how its symbols are named.
#pragma once

#include <cstddef>
#include <string>

namespace mlpinfer::blas {

// C (m x n, leading dimension ldc) = alpha * A (m x k, lda) * B (k x n, ldb); row-major, beta 0.
void sgemm(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
           std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc);

// Our parallelism is over row blocks; a BLAS with its own thread pool would spin a
// second set of threads beside ours (and beside NumPy's), so it is pinned to one.
void make_single_threaded();

std::string describe();

// Best wall time of an n x n x n sgemm over `repeats` runs on `threads` BLAS threads;
// the BLAS is pinned back to one thread afterwards. For benchmarks: the ceiling that
// the engine's FLOP rate is compared with. Not to be called during a forward().
double time_sgemm(std::size_t n, unsigned threads, unsigned repeats);

}  // namespace mlpinfer::blas
