#include "common/base/blocking_pool.h"

#include <utility>

namespace fulcrum {

BlockingPool::BlockingPool(int max_threads) : max_threads_(max_threads) {}

BlockingPool::~BlockingPool() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
}

bool BlockingPool::Submit(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  // Every queued closure needs an idle thread of its own.
  if (static_cast<int>(queue_.size()) >= idle_) {
    if (static_cast<int>(threads_.size()) >= max_threads_) return false;
    threads_.emplace_back([this] { Loop(); });
    ++idle_;
  }
  queue_.push_back(std::move(fn));
  return true;
}

void BlockingPool::Loop() {
  while (true) {
    std::function<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&has_work));
      if (queue_.empty()) return;  // stopping, nothing left
      fn = std::move(queue_.front());
      queue_.pop_front();
      --idle_;
    }
    fn();
    absl::MutexLock lock(&mu_);
    ++idle_;
  }
}

}  // namespace fulcrum
