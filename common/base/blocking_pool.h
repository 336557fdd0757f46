// BlockingPool: threads for work that may block for long (a pull waiting for
// its sync round), kept off the threads that serve everything else.
#ifndef FULCRUM_COMMON_BASE_BLOCKING_POOL_H_
#define FULCRUM_COMMON_BASE_BLOCKING_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace fulcrum {

// Runs each submitted closure on a thread of its own: an idle thread if there
// is one, else a new one, up to `max_threads` (then Submit refuses). Threads
// stay for reuse. Thread-safe. The destructor waits for running closures
// (they must be able to finish: wake whatever they block on first).
class BlockingPool {
 public:
  explicit BlockingPool(int max_threads);
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // False (and `fn` not run) if every allowed thread is busy.
  bool Submit(std::function<void()> fn);

 private:
  void Loop();

  const int max_threads_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_BASE_BLOCKING_POOL_H_
