#include "common/base/retry.h"

#include <algorithm>
#include <random>

#include "absl/time/clock.h"

namespace fulcrum {

absl::Status RetryWithBackoff(const RetryOptions& options,
                              const std::function<bool(const absl::Status&)>& retryable,
                              const std::function<absl::Status()>& attempt) {
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_real_distribution<double> jitter(1.0 - options.jitter, 1.0 + options.jitter);
  absl::Duration backoff = options.initial_backoff;
  absl::Status status;
  for (int i = 0; i < std::max(1, options.max_attempts); ++i) {
    if (i > 0) {
      absl::SleepFor(backoff * jitter(rng));
      backoff = std::min(backoff * 2, options.max_backoff);
    }
    status = attempt();
    if (status.ok() || !retryable(status)) return status;
  }
  return status;
}

bool IsUnavailable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kCancelled;
}

}  // namespace fulcrum
