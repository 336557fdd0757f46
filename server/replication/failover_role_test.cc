#include "server/replication/failover_role.h"

#include <vector>

#include "common/base/clock.h"
#include "gtest/gtest.h"

namespace fulcrum {
namespace {

using State = FailoverRole::State;

// Answers from a script, and counts the asks.
class ScriptedAuthority final : public TakeOverAuthority {
 public:
  absl::Status MayTakeOver(absl::Time silent_since, absl::Duration* ask_again_after) override {
    ++asks;
    last_silent_since = silent_since;
    if (ask_again != absl::ZeroDuration()) *ask_again_after = ask_again;
    return answer;
  }
  absl::Status answer = absl::OkStatus();
  absl::Duration ask_again = absl::ZeroDuration();
  int asks = 0;
  absl::Time last_silent_since;
};

class FailoverRoleTest : public ::testing::Test {
 protected:
  FailoverRoleOptions Options() {
    FailoverRoleOptions options;
    options.name = "shard 1";
    options.failover_after = absl::Milliseconds(500);
    options.clock = &clock_;
    return options;
  }
  ManualClock clock_;
  ScriptedAuthority authority_;
};

TEST_F(FailoverRoleTest, Backup_TakesOverOnlyOnceThePrimaryIsSilentLongEnough) {
  FailoverRole role(Options(), State::kBackup, &authority_);
  const absl::Time contact = clock_.Now();
  clock_.Advance(absl::Milliseconds(499));
  EXPECT_FALSE(role.ShouldTakeOver(contact));
  EXPECT_EQ(authority_.asks, 0);  // nobody is asked before the silence is long enough
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(role.ShouldTakeOver(contact));
  EXPECT_EQ(authority_.asks, 1);
  EXPECT_EQ(authority_.last_silent_since, contact);
  EXPECT_EQ(role.state(), State::kTakingOver);
  EXPECT_TRUE(role.is_backup());  // not serving until the takeover is done
  EXPECT_FALSE(role.ShouldTakeOver(contact));
  role.TookOver();
  EXPECT_EQ(role.state(), State::kPrimary);
  EXPECT_FALSE(role.is_backup());
}

TEST_F(FailoverRoleTest, Refused_AskedAgainOnlyAfterFailoverAfterOrWhatTheAuthoritySays) {
  FailoverRole role(Options(), State::kBackup, &authority_);
  const absl::Time contact = clock_.Now();
  clock_.Advance(absl::Seconds(1));
  authority_.answer = absl::FailedPreconditionError("the coordinator still hears the primary");
  EXPECT_FALSE(role.ShouldTakeOver(contact));
  EXPECT_EQ(role.state(), State::kBackup);
  clock_.Advance(absl::Milliseconds(499));
  EXPECT_FALSE(role.ShouldTakeOver(contact));
  EXPECT_EQ(authority_.asks, 1);  // the refusal stands
  clock_.Advance(absl::Milliseconds(1));
  authority_.ask_again = absl::Milliseconds(100);  // e.g. only workers to ask: soon
  EXPECT_FALSE(role.ShouldTakeOver(contact));
  EXPECT_EQ(authority_.asks, 2);
  clock_.Advance(absl::Milliseconds(100));
  authority_.answer = absl::OkStatus();
  EXPECT_TRUE(role.ShouldTakeOver(contact));
  EXPECT_EQ(authority_.asks, 3);
}

TEST_F(FailoverRoleTest, PrimaryAndSuperseded_NeverTakeOver) {
  FailoverRole role(Options(), State::kPrimary, &authority_);
  clock_.Advance(absl::Hours(1));
  EXPECT_FALSE(role.ShouldTakeOver(absl::InfinitePast()));
  EXPECT_TRUE(role.Superseded());
  EXPECT_EQ(role.state(), State::kSuperseded);
  EXPECT_TRUE(role.is_backup());
  EXPECT_FALSE(role.Superseded());  // once
  EXPECT_FALSE(role.ShouldTakeOver(absl::InfinitePast()));
  EXPECT_EQ(authority_.asks, 0);
  role.BecameBackup();
  EXPECT_EQ(role.state(), State::kBackup);
  EXPECT_TRUE(role.ShouldTakeOver(absl::InfinitePast()));
}

TEST_F(FailoverRoleTest, BecomingBackupAgain_ForgetsAStandingRefusal) {
  FailoverRole role(Options(), State::kBackup, &authority_);
  const absl::Time contact = clock_.Now();
  clock_.Advance(absl::Seconds(1));
  authority_.answer = absl::FailedPreconditionError("no");
  EXPECT_FALSE(role.ShouldTakeOver(contact));
  role.BecameBackup();
  authority_.answer = absl::OkStatus();
  EXPECT_TRUE(role.ShouldTakeOver(contact));
}

}  // namespace
}  // namespace fulcrum
