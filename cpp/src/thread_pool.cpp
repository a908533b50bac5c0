#include "thread_pool.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

namespace mlpinfer {
namespace {

// Long enough to bridge the Python between two calls of a batch loop (a few
// microseconds), short enough that an idle second costs well under 1% of a core.
constexpr std::chrono::microseconds kSpin{100};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls after every pause: a pause takes about 24 ns on the EPYC, and polling every 64
// pauses (1.5 us) left a worker that many microseconds late to a 100-image batch, and
// the caller as late to notice it finish. The clock is read less often than that.
template <typename Done>
void spin_until(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (unsigned polls = 1; !done(); ++polls) {
    cpu_relax();
    if (polls % 32 == 0 && std::chrono::steady_clock::now() > deadline) return;
  }
}

}  // namespace

ThreadPool& ThreadPool::instance() {
  static ThreadPool* pool = new ThreadPool();  // never deleted, see the header
  return *pool;
}

void ThreadPool::run(std::size_t count, unsigned threads,
                     const std::function<void(std::size_t)>& task) {
  std::unique_lock<std::mutex> submit(submit_mutex_, std::try_to_lock);
  const unsigned helpers =
      submit.owns_lock() && threads > 1 && count > 1
          ? static_cast<unsigned>(std::min<std::size_t>(threads - 1, count - 1))
          : 0;
  if (helpers == 0) {
    for (std::size_t i = 0; i < count; ++i) task(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    while (workers_.size() < helpers) workers_.emplace_back([this] { worker_loop(); });
    task_ = &task;
    count_ = count;
    next_ = 0;
    helpers_wanted_ = helpers;
    error_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  work_on_current_job();
  spin_until([this] { return helpers_busy_.load(std::memory_order_acquire) == 0; });
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return helpers_busy_.load() == 0; });
  // Our own loop ended with every index claimed; workers that have not joined yet
  // must not join a finished job.
  helpers_wanted_ = 0;
  task_ = nullptr;
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void ThreadPool::work_on_current_job() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (next_ < count_) {
    const std::size_t index = next_++;
    lock.unlock();
    try {
      (*task_)(index);
    } catch (...) {
      lock.lock();
      if (!error_) error_ = std::current_exception();
      next_ = count_;  // abandon the rest of the job
      continue;
    }
    lock.lock();
  }
}

void ThreadPool::worker_loop() {
  unsigned long long seen = 0;
  for (;;) {
    spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait(lock, [&] { return generation_.load() != seen; });
    seen = generation_.load();
    if (helpers_wanted_ == 0) continue;  // the job is staffed or already finished
    --helpers_wanted_;
    helpers_busy_.fetch_add(1);
    lock.unlock();
    work_on_current_job();
    lock.lock();
    if (helpers_busy_.fetch_sub(1) == 1) done_.notify_all();
  }
}

}  // namespace mlpinfer
