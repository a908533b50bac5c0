// A small pool whose workers sleep on a condition variable between jobs, after a short
// spin: a call that follows within the spin finds its workers awake (a condvar wake-up
// costs tens of microseconds, a whole 100-image batch), and nothing spins for longer,
// so an idle process uses no CPU. A process that never asks for more than one thread
// never starts one.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mlpinfer {

class ThreadPool {
 public:
  // The process-wide pool. Deliberately never destroyed: joining workers from a
  // static destructor can deadlock at interpreter exit while calls are in flight.
  static ThreadPool& instance();

  // Calls task(i) once for each i in [0, count), on the calling thread and up to
  // threads - 1 workers. Returns when all calls have returned; rethrows the first
  // exception a task threw. If another caller holds the pool, the work runs on the
  // calling thread alone rather than waiting or adding threads (no oversubscription).
  void run(std::size_t count, unsigned threads, const std::function<void(std::size_t)>& task);

 private:
  ThreadPool() = default;
  void worker_loop();
  void work_on_current_job();

  std::mutex submit_mutex_;  // one job at a time

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  const std::function<void(std::size_t)>* task_ = nullptr;
  std::size_t count_ = 0;
  std::size_t next_ = 0;
  unsigned helpers_wanted_ = 0;  // workers still to join the current job
  // Written under mutex_; also read without it by spinning threads.
  std::atomic<unsigned> helpers_busy_{0};
  std::atomic<unsigned long long> generation_{0};
  std::exception_ptr error_;
};

}  // namespace mlpinfer
