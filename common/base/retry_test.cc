#include "common/base/retry.h"

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

RetryOptions Fast(int attempts) {
  RetryOptions o;
  o.max_attempts = attempts;
  o.initial_backoff = absl::Milliseconds(1);
  o.max_backoff = absl::Milliseconds(2);
  return o;
}

TEST(RetryTest, TransientFailures_RetriedUntilSuccess) {
  int calls = 0;
  absl::Status s = RetryWithBackoff(Fast(5), IsUnavailable, [&] {
    return ++calls < 3 ? absl::UnavailableError("down") : absl::OkStatus();
  });
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(calls, 3);
}

TEST(RetryTest, NonRetryableError_ReturnedAtOnce) {
  int calls = 0;
  absl::Status s = RetryWithBackoff(Fast(5), IsUnavailable, [&] {
    ++calls;
    return absl::InvalidArgumentError("bad");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calls, 1);
}

TEST(RetryTest, CancelledByAServerShuttingDown_Retried) {
  int calls = 0;
  absl::Status s = RetryWithBackoff(Fast(5), IsUnavailable, [&] {
    return ++calls < 3 ? absl::CancelledError("server shutting down") : absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(fulcrum::IsUnavailable(absl::DeadlineExceededError("slow")));
}

TEST(RetryTest, AttemptsExhausted_LastErrorReturned) {
  int calls = 0;
  absl::Status s = RetryWithBackoff(Fast(4), IsUnavailable, [&] {
    ++calls;
    return absl::UnavailableError("still down");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls, 4);
}

}  // namespace
}  // namespace fulcrum
