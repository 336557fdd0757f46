// Bounded retries with exponential backoff and jitter, for RPCs that fail
// with a transient status.
#ifndef FULCRUM_COMMON_BASE_RETRY_H_
#define FULCRUM_COMMON_BASE_RETRY_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace fulcrum {

struct RetryOptions {
  // Attempts in all, the first included.
  int max_attempts = 8;
  // Backoff before the second attempt; doubles each time up to max_backoff.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // Each sleep is scaled by a random factor in [1 - jitter, 1 + jitter].
  double jitter = 0.2;
};

// Calls `attempt` until it returns OK, a status `retryable` rejects, or the
// attempts run out; returns the last status. Thread-safe.
absl::Status RetryWithBackoff(const RetryOptions& options,
                              const std::function<bool(const absl::Status&)>& retryable,
                              const std::function<absl::Status()>& attempt);

// UNAVAILABLE: the server is down, restarting or unreachable; or CANCELLED,
// which Fulcrum's clients never do to their own calls, so it is a server
// cancelling the calls in flight as it shuts down (a restart is coming).
bool IsUnavailable(const absl::Status& status);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_BASE_RETRY_H_
