#include "thread_pool.hpp"

#include <algorithm>
#include <utility>

namespace mlpinfer {

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
    ++generation_;
  }
  wake_.notify_all();
  work_on_current_job();
  std::unique_lock<std::mutex> lock(mutex_);
  // Workers that never woke must not pick this job up later: it is finished.
  done_.wait(lock, [this] { return next_ >= count_ && helpers_busy_ == 0; });
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
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return generation_ != seen && helpers_wanted_ > 0; });
    seen = generation_;
    --helpers_wanted_;
    ++helpers_busy_;
    lock.unlock();
    work_on_current_job();
    lock.lock();
    --helpers_busy_;
    if (helpers_busy_ == 0) done_.notify_all();
  }
}

}  // namespace mlpinfer
