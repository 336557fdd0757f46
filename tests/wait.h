// WaitUntil: for tests that must act only once another thread has reached
// a state they can observe (a pull waiting, a number of steps taken) —
// instead of sleeping and hoping.
#ifndef FULCRUM_TESTS_WAIT_H_
#define FULCRUM_TESTS_WAIT_H_

#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace fulcrum {

// Polls `condition` every `every` until it holds (true) or `timeout`
// passes (false: the test should fail, not hang). A dear condition (reading
// a process's log) is polled less often.
inline bool WaitUntil(const std::function<bool()>& condition,
                      absl::Duration timeout = absl::Seconds(30),
                      absl::Duration every = absl::Milliseconds(1)) {
  const absl::Time give_up = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= give_up) return false;
    absl::SleepFor(every);
  }
  return true;
}

}  // namespace fulcrum

#endif  // FULCRUM_TESTS_WAIT_H_
