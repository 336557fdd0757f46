#include "common/base/blocking_pool.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace fulcrum {
namespace {

// Submits, retrying while a finishing thread has not yet become idle.
bool SubmitEventually(BlockingPool& pool, std::function<void()> fn) {
  for (int attempt = 0; attempt < 2000; ++attempt) {
    if (pool.Submit(fn)) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

TEST(BlockingPoolTest, BlockedClosuresDoNotHoldUpOthersUpToTheCap) {
  BlockingPool pool(3);
  absl::Notification release;
  std::atomic<int> started{0};
  // Two closures block; a third still runs at once on a thread of its own.
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(pool.Submit([&] {
      ++started;
      release.WaitForNotification();
    }));
  }
  absl::Notification third;
  ASSERT_TRUE(pool.Submit([&] { third.Notify(); }));
  EXPECT_TRUE(third.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // The third thread is idle again and reused; a fourth thread is refused
  // while three are busy.
  absl::Notification fourth_started;
  ASSERT_TRUE(SubmitEventually(pool, [&] {
    fourth_started.Notify();
    release.WaitForNotification();
  }));
  EXPECT_TRUE(fourth_started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  while (started.load() < 2) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_FALSE(pool.Submit([] {}));
  release.Notify();
  // Once they are done, work is accepted again.
  absl::Notification after;
  ASSERT_TRUE(SubmitEventually(pool, [&] { after.Notify(); }));
  EXPECT_TRUE(after.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(BlockingPoolTest, DestructorWaitsForRunningClosures) {
  std::atomic<bool> finished{false};
  {
    BlockingPool pool(1);
    ASSERT_TRUE(pool.Submit([&] {
      absl::SleepFor(absl::Milliseconds(50));
      finished = true;
    }));
  }
  EXPECT_TRUE(finished.load());
}

}  // namespace
}  // namespace fulcrum
