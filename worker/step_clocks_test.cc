#include "worker/step_clocks.h"

#include <vector>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

using Clocks = std::vector<int64_t>;

TEST(StepClocksTest, Sync_PushesTheRoundAndPullsTheNext_NewPartitionWaitsPastItsLastPush) {
  StepClocks clocks;
  clocks.Reset(SYNC, 2);
  clocks.StartPartition(0);
  EXPECT_EQ(clocks.Pull(), (Clocks{-1, -1}));  // nothing pushed yet: the current round
  clocks.Pulled({4, 7});                       // shards count rounds apart
  EXPECT_EQ(clocks.Push(), (Clocks{4, 7}));
  EXPECT_EQ(clocks.NextPull(), (Clocks{5, 8}));
  clocks.StepDone();
  EXPECT_EQ(clocks.Push(), (Clocks{5, 8}));
  clocks.StepDone();
  // The next partition waits for the round after its last push (6, 9).
  clocks.StartPartition(0);
  EXPECT_EQ(clocks.Pull(), (Clocks{6, 9}));
  EXPECT_FALSE(clocks.MayOverlap());
}

// The step is redone at every shard's current round, waiting for nothing:
// waiting on shard 0 for the round after this step's push could wait on a
// worker that itself waits for this worker's push to the restarted shard 1
// (the Swarm test's hang of 2026-11-28).
TEST(StepClocksTest, Sync_RestartedShard_StepRedoneAtEveryShardsCurrentRound) {
  StepClocks clocks;
  clocks.Reset(SYNC, 2);
  clocks.StartPartition(0);
  clocks.Pulled({4, 7});
  clocks.Restarted({1}, /*pushed=*/true);
  EXPECT_EQ(clocks.Pull(), (Clocks{-1, -1}));
  clocks.Pulled({4, 2});  // shard 0 still collects 4 (pushed once already)
  EXPECT_EQ(clocks.Push(), (Clocks{4, 2}));
  // A later partition waits on shard 0 after the round pushed there.
  clocks.StepDone();
  clocks.StartPartition(0);
  EXPECT_EQ(clocks.Pull(), (Clocks{5, 3}));
}

// An evaluation between partitions is the first to see a shard restart: the
// next partition must not wait for a round after the old last push there
// (the restarted shard counts from its checkpoint's, far below: it would
// wait forever).
TEST(StepClocksTest, Sync_RestartSeenBetweenPartitions_NextPartitionStartsAtTheCurrentRound) {
  StepClocks clocks;
  clocks.Reset(SYNC, 2);
  clocks.StartPartition(0);
  clocks.Pulled({960, 960});
  clocks.StepDone();  // pushed round 960 on both
  clocks.Restarted({1}, /*pushed=*/false);
  clocks.StartPartition(0);
  EXPECT_EQ(clocks.Pull(), (Clocks{961, -1}));
}

TEST(StepClocksTest, Ssp_TheLeaseClockForEveryCall_Async_NoWaiting) {
  StepClocks ssp;
  ssp.Reset(SSP, 2);
  ssp.StartPartition(3);
  ssp.Pulled({10, 11});
  EXPECT_EQ(ssp.Pull(), (Clocks{3, 3}));
  EXPECT_EQ(ssp.Push(), (Clocks{3, 3}));
  EXPECT_EQ(ssp.NextPull(), (Clocks{3, 3}));
  ssp.StepDone();
  EXPECT_EQ(ssp.Push(), (Clocks{3, 3}));

  StepClocks async;
  async.Reset(ASYNC, 1);
  async.StartPartition(3);
  EXPECT_EQ(async.Pull(), (Clocks{-1}));
  EXPECT_EQ(async.NextPull(), (Clocks{-1}));
  EXPECT_TRUE(async.MayOverlap());
}

}  // namespace
}  // namespace fulcrum
