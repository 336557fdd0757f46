#include "server/shard/parameter_shard.h"

#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/base/clock.h"
#include "gtest/gtest.h"
#include "tests/wait.h"

namespace fulcrum {
namespace {

constexpr uint64_t kA = 1;
constexpr uint64_t kB = 2;
// The coordinator incarnation MakeShard's shard follows.
constexpr uint64_t kCoordinator = 77;

// Worker `id` as registered by coordinator `incarnation`.
WorkerIdentity Of(uint64_t id, uint64_t incarnation = kCoordinator) {
  return WorkerIdentity{id, incarnation};
}

// A store holding tensor "t" of 4 elements in stripes of 2, with SGD at rate 1.
std::unique_ptr<ParameterStore> MakeStore() {
  TensorSpec spec;
  spec.set_name("t");
  spec.add_shape(4);
  OptimizerConfig config;
  config.set_kind(SGD);
  config.set_learning_rate(1.0f);
  ParameterStoreOptions options;
  options.stripe_elements = 2;
  auto store = ParameterStore::Create(options, *CreateOptimizer(config), {spec});
  EXPECT_TRUE(store.ok());
  return std::move(*store);
}

// A shard with the coordinator's side of membership (as ShardGroup keeps
// it): each change makes a new version of kCoordinator's membership and
// applies it.
class TestShard : public ParameterShard {
 public:
  using ParameterShard::ParameterShard;

  void AdmitWorker(uint64_t id) {
    members_.Admit(id);
    Apply();
  }
  void ActivateWorker(uint64_t id, int64_t clock) {
    members_.Activate(id, clock);
    Apply();
  }
  void DeactivateWorker(uint64_t id) {
    members_.Deactivate(id);
    Apply();
  }
  void RemoveWorker(uint64_t id) {
    members_.Remove(id);
    Apply();
  }
  void StartJob() {
    members_.started = true;
    Apply();
  }

 private:
  void Apply() {
    members_.coordinator_incarnation = kCoordinator;
    ++members_.version;
    ApplyMembership(members_);
  }
  WorkerMembership members_;
};

// Workers A and B admitted and active at clock 0, the job started.
std::unique_ptr<TestShard> MakeShard(ConsistencyMode mode, int64_t staleness = 0) {
  auto shard = std::make_unique<TestShard>(MakeStore(), mode, staleness);
  for (uint64_t id : {kA, kB}) {
    shard->AdmitWorker(id);
    shard->ActivateWorker(id, 0);
  }
  shard->StartJob();
  return shard;
}

absl::StatusOr<ShardVersion> PushAll(ParameterShard& shard, const WorkerIdentity& worker,
                                     int64_t clock, float value, uint64_t request_id = 0) {
  static thread_local std::vector<float> grad;
  grad.assign(4, value);
  return shard.Push(worker, request_id, clock, {{{"t", 0, 4}, grad}});
}
// Worker `id` of kCoordinator.
absl::StatusOr<ShardVersion> PushAll(ParameterShard& shard, uint64_t id, int64_t clock, float value,
                                     uint64_t request_id = 0) {
  return PushAll(shard, Of(id), clock, value, request_id);
}

absl::StatusOr<std::vector<float>> PullAll(ParameterShard& shard, const WorkerIdentity& worker,
                                           int64_t clock, absl::Duration wait = absl::Seconds(5)) {
  std::vector<float> out(4);
  std::vector<absl::Span<float>> spans = {absl::MakeSpan(out)};
  absl::StatusOr<ShardVersion> v =
      shard.Pull(worker, clock, {{"t", 0, 4}}, spans, absl::Now() + wait);
  if (!v.ok()) return v.status();
  return out;
}
absl::StatusOr<std::vector<float>> PullAll(ParameterShard& shard, uint64_t id, int64_t clock,
                                           absl::Duration wait = absl::Seconds(5)) {
  return PullAll(shard, Of(id), clock, wait);
}

TEST(ParameterShardTest, Async_EachPushAppliedAndCounted) {
  auto shard = MakeShard(ASYNC);
  ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f).ok());
  absl::StatusOr<ShardVersion> v = PushAll(*shard, kB, 0, 2.0f);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->version, 2);
  EXPECT_EQ(*PullAll(*shard, kA, -1), std::vector<float>(4, -3.0f));
  EXPECT_EQ(shard->stats().pushes, 2);
}

TEST(ParameterShardTest, Sync_RoundAppliesMeanOnceEveryWorkerPushed) {
  auto shard = MakeShard(SYNC);
  ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f).ok());
  EXPECT_EQ(shard->version().round, 0);
  EXPECT_EQ(*PullAll(*shard, kA, -1), std::vector<float>(4, 0.0f));
  ASSERT_TRUE(PushAll(*shard, kB, 0, 3.0f).ok());
  EXPECT_EQ(shard->version().round, 1);
  EXPECT_EQ(*PullAll(*shard, kA, 1), std::vector<float>(4, -2.0f));
}

TEST(ParameterShardTest, Sync_PullForNextRoundWaitsForLastPusher) {
  auto shard = MakeShard(SYNC);
  ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f).ok());
  absl::Notification pulled;
  std::vector<float> seen;
  std::thread puller([&] {
    absl::StatusOr<std::vector<float>> v = PullAll(*shard, kA, 1);
    ASSERT_TRUE(v.ok()) << v.status();
    seen = *v;
    pulled.Notify();
  });
  EXPECT_FALSE(pulled.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  ASSERT_TRUE(PushAll(*shard, kB, 0, 1.0f).ok());
  puller.join();
  EXPECT_EQ(seen, std::vector<float>(4, -1.0f));
}

TEST(ParameterShardTest, Sync_PullPastDeadline_DeadlineExceeded) {
  auto shard = MakeShard(SYNC);
  ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f).ok());
  // Round 1 waits for B's push of round 0.
  EXPECT_EQ(PullAll(*shard, kA, 1, absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(ParameterShardTest, Sync_PullPastARoundThePullerHasNotPushed_ServedAtTheCurrentRound) {
  auto shard = MakeShard(SYNC);
  // A worker whose push went unanswered may ask for the round after it;
  // that round needs the worker's own push, so it gets the current one.
  ASSERT_TRUE(PushAll(*shard, kB, 0, 2.0f).ok());
  EXPECT_TRUE(shard->ReadyFor(Of(kA), /*push=*/false, 1));
  // With a push first (a push-pull), the pull waits for the round it closes.
  EXPECT_FALSE(shard->ReadyFor(Of(kA), /*push=*/true, 1));
  absl::StatusOr<ShardVersion> version;
  std::vector<float> values(4);
  std::vector<absl::Span<float>> out = {absl::MakeSpan(values)};
  version = shard->Pull(Of(kA), 1, {{"t", 0, 4}}, out, absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(version->round, 0);
  EXPECT_EQ(values, std::vector<float>(4, 0.0f));
  // It pushes that round; the round completes.
  ASSERT_TRUE(PushAll(*shard, kA, 0, 4.0f).ok());
  EXPECT_EQ(*PullAll(*shard, kA, 1), std::vector<float>(4, -3.0f));
  // B, which has pushed, still waits for the round it asks for.
  ASSERT_TRUE(PushAll(*shard, kB, 1, 1.0f).ok());
  EXPECT_EQ(PullAll(*shard, kB, 2, absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(ParameterShardTest, Sync_WrongClock_Aborted_SecondPushOfTheRound_AcknowledgedAndIgnored) {
  auto shard = MakeShard(SYNC);
  // Out of step with the shard's rounds: pull again, not an eviction.
  EXPECT_EQ(PushAll(*shard, kA, 3, 1.0f).status().code(), absl::StatusCode::kAborted);
  ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f).ok());
  // A's round again (a step redone after another shard restarted): its
  // first push stands, the round still waits for B.
  ASSERT_TRUE(PushAll(*shard, kA, 0, 5.0f).ok());
  EXPECT_EQ(shard->version().round, 0);
  EXPECT_EQ(shard->stats().duplicate_pushes, 1);
  ASSERT_TRUE(PushAll(*shard, kB, 0, 1.0f).ok());
  EXPECT_EQ(*PullAll(*shard, kA, 1), std::vector<float>(4, -1.0f));
}

TEST(ParameterShardTest, Sync_DeactivatedWorker_NoLongerAwaited) {
  auto shard = MakeShard(SYNC);
  ASSERT_TRUE(PushAll(*shard, kA, 0, 2.0f).ok());
  shard->DeactivateWorker(kB);  // completes round 0 with A alone
  EXPECT_EQ(shard->version().round, 1);
  EXPECT_EQ(*PullAll(*shard, kA, 1), std::vector<float>(4, -2.0f));
  ASSERT_TRUE(PushAll(*shard, kA, 1, 1.0f).ok());
  EXPECT_EQ(shard->version().round, 2);
  // B may still read (the final model) but not push.
  EXPECT_TRUE(PullAll(*shard, kB, -1).ok());
  EXPECT_EQ(PushAll(*shard, kB, 2, 1.0f).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ParameterShardTest, Sync_WorkerActivatedMidRound_JoinsThatRound) {
  auto shard = MakeShard(SYNC);
  constexpr uint64_t kC = 3;
  shard->AdmitWorker(kC);
  ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f).ok());
  shard->ActivateWorker(kC, 0);
  // C reads round 0's parameters (unchanged by A's pending push).
  EXPECT_EQ(*PullAll(*shard, kC, -1), std::vector<float>(4, 0.0f));
  ASSERT_TRUE(PushAll(*shard, kB, 0, 2.0f).ok());
  EXPECT_EQ(shard->version().round, 0);  // waits for C too
  ASSERT_TRUE(PushAll(*shard, kC, 0, 3.0f).ok());
  EXPECT_EQ(shard->version().round, 1);
  EXPECT_EQ(*PullAll(*shard, kA, 1), std::vector<float>(4, -2.0f));
}

TEST(ParameterShardTest, AdmittedButInactive_MayPullNotPush) {
  auto shard = MakeShard(ASYNC);
  shard->DeactivateWorker(kB);
  EXPECT_TRUE(PullAll(*shard, kB, -1).ok());
  EXPECT_EQ(PushAll(*shard, kB, 0, 1.0f).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ParameterShardTest, RemovedWorker_CanNeitherPullNorPush) {
  auto shard = MakeShard(SYNC);
  ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f).ok());
  shard->RemoveWorker(kB);  // a dead worker no longer holds the round
  EXPECT_EQ(shard->version().round, 1);
  EXPECT_EQ(PullAll(*shard, kB, -1).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(PushAll(*shard, kB, 1, 1.0f).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ParameterShardTest, Ssp_PullWaitsWhileTooFarAhead) {
  auto shard = MakeShard(SSP, /*staleness=*/2);
  shard->ActivateWorker(kA, 5);
  shard->ActivateWorker(kB, 2);
  // A at clock 5 is 3 ahead of B: it waits.
  EXPECT_EQ(PullAll(*shard, kA, 5, absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  // Clock 4 is within the bound.
  EXPECT_TRUE(PullAll(*shard, kA, 4, absl::Milliseconds(50)).ok());
  absl::Notification pulled;
  std::thread waiter([&] {
    EXPECT_TRUE(PullAll(*shard, kA, 5).ok());
    pulled.Notify();
  });
  EXPECT_FALSE(pulled.WaitForNotificationWithTimeout(absl::Milliseconds(100)));
  shard->ActivateWorker(kB, 3);  // B moves to its next partition
  waiter.join();
  EXPECT_TRUE(pulled.HasBeenNotified());
}

TEST(ParameterShardTest, Ssp_SlowWorkerLeavingReleasesWaiters) {
  auto shard = MakeShard(SSP, /*staleness=*/0);
  shard->ActivateWorker(kA, 3);
  std::thread waiter([&] { EXPECT_TRUE(PullAll(*shard, kA, 3).ok()); });
  // A at clock 3 waits for B at clock 2 (staleness 0) ...
  ASSERT_TRUE(WaitUntil([&] { return shard->stats().waiting_pulls == 1; }));
  shard->RemoveWorker(kB);  // ... until B is declared dead
  waiter.join();
  EXPECT_EQ(shard->stats().waiting_pulls, 0);
}

TEST(ParameterShardTest, Ssp_PushesApplyAtOnce) {
  auto shard = MakeShard(SSP, 1);
  ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f).ok());
  EXPECT_EQ(*PullAll(*shard, kB, 0), std::vector<float>(4, -1.0f));
  EXPECT_EQ(shard->version().version, 1);
}

TEST(ParameterShardTest, PullReportsItsWait) {
  ManualClock clock;
  TestShard shard(MakeStore(), SYNC, 0, {}, ShardRole{}, &clock);
  for (uint64_t id : {kA, kB}) {
    shard.AdmitWorker(id);
    shard.ActivateWorker(id, 0);
  }
  shard.StartJob();
  ASSERT_TRUE(PushAll(shard, kA, 0, 1.0f).ok());
  std::thread late([&] {
    ASSERT_TRUE(WaitUntil([&] { return shard.stats().waiting_pulls == 1; }));
    clock.Advance(absl::Seconds(100));
    ASSERT_TRUE(PushAll(shard, kB, 0, 1.0f).ok());  // closes round 0
  });
  std::vector<float> out(4);
  std::vector<absl::Span<float>> spans = {absl::MakeSpan(out)};
  absl::StatusOr<ShardVersion> v =
      shard.Pull(Of(kA), 1, {{"t", 0, 4}}, spans, absl::Now() + absl::Seconds(30));
  late.join();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->wait_seconds, 100.0);
  EXPECT_EQ(shard.stats().pull_wait_seconds, 100.0);
}

TEST(ParameterShardTest, UnknownWorker_FailedPrecondition) {
  auto shard = MakeShard(ASYNC);
  EXPECT_EQ(PushAll(*shard, 99, 0, 1.0f).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(PullAll(*shard, 99, -1).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ParameterShardTest, RetriedRequestId_AppliedOnce) {
  for (ConsistencyMode mode : {ASYNC, SYNC}) {
    auto shard = MakeShard(mode);
    ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f, /*request_id=*/7).ok());
    ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f, /*request_id=*/7).ok());
    if (mode == SYNC) {
      ASSERT_TRUE(PushAll(*shard, kB, 0, 1.0f, 7).ok());
    }
    EXPECT_EQ(*PullAll(*shard, kA, -1), std::vector<float>(4, -1.0f));
    EXPECT_EQ(shard->stats().duplicate_pushes, 1);
  }
}

TEST(ParameterShardTest, BadSliceInPush_NothingApplied) {
  auto shard = MakeShard(ASYNC);
  std::vector<float> good(2, 1.0f), bad(3, 1.0f);
  absl::StatusOr<ShardVersion> v =
      shard->Push(Of(kA), 0, 0, {{{"t", 0, 2}, good}, {{"t", 2, 3}, bad}});
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  v = shard->Push(Of(kA), 0, 0, {{{"t", 0, 2}, good}, {{"u", 0, 2}, good}});
  EXPECT_EQ(v.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*PullAll(*shard, kA, -1), std::vector<float>(4, 0.0f));
  EXPECT_EQ(shard->version().version, 0);
}

TEST(ParameterShardTest, BeforeStart_PullWaitsThenDeadlineExceeded) {
  TensorSpec spec;
  spec.set_name("t");
  spec.add_shape(4);
  OptimizerConfig config;
  config.set_kind(SGD);
  auto store = ParameterStore::Create({}, *CreateOptimizer(config), {spec});
  TestShard shard(std::move(*store), ASYNC);
  shard.AdmitWorker(kA);
  shard.ActivateWorker(kA, 0);
  absl::StatusOr<std::vector<float>> v = PullAll(shard, kA, -1, absl::Milliseconds(50));
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(v.status().message().find("not started"), std::string::npos);
  shard.StartJob();
  EXPECT_TRUE(PullAll(shard, kA, -1).ok());
}

TEST(ParameterShardTest, Shutdown_WakesWaitingPullWithUnavailable) {
  auto shard = MakeShard(SYNC);
  ASSERT_TRUE(PushAll(*shard, kA, 0, 1.0f).ok());  // round 1 now waits for B
  std::thread puller([&] {
    EXPECT_EQ(PullAll(*shard, kA, 1, absl::Seconds(30)).status().code(),
              absl::StatusCode::kUnavailable);
  });
  ASSERT_TRUE(WaitUntil([&] { return shard->stats().waiting_pulls == 1; }));
  shard->Shutdown();
  puller.join();
}

TEST(ParameterShardTest, Sync_ManyRoundsFromThreads_ExactResult) {
  auto shard = MakeShard(SYNC);
  constexpr int kRounds = 100;
  auto worker = [&](uint64_t id, float value) {
    for (int r = 0; r < kRounds; ++r) {
      ASSERT_TRUE(PullAll(*shard, id, r).ok());
      ASSERT_TRUE(PushAll(*shard, id, r, value).ok());
    }
  };
  std::thread a(worker, kA, 1.0f), b(worker, kB, 3.0f);
  a.join();
  b.join();
  // Each round applies the mean gradient 2 with lr 1.
  EXPECT_EQ(*PullAll(*shard, kA, kRounds), std::vector<float>(4, -2.0f * kRounds));
}

}  // namespace
}  // namespace fulcrum

namespace fulcrum {
namespace {

// Through the wire format, as a remote shard receives it.
WorkerMembership MakeMembership(uint64_t incarnation, uint64_t version,
                                std::vector<uint64_t> admitted, std::vector<uint64_t> active) {
  Membership m;
  m.set_coordinator_incarnation(incarnation);
  m.set_version(version);
  m.set_started(true);
  for (uint64_t id : admitted) m.add_admitted(id);
  for (uint64_t id : active) {
    Membership::Active* a = m.add_active();
    a->set_worker_id(id);
    a->set_clock(0);
  }
  return WorkerMembership::FromProto(m);
}

std::unique_ptr<ParameterShard> MakeRemoteShard(absl::Duration grace) {
  ShardRole role;
  role.membership_grace = grace;
  return std::make_unique<ParameterShard>(MakeStore(), SYNC, 0,
                                          std::vector<std::unique_ptr<SparseTable>>{}, role);
}

TEST(ParameterShardMembershipTest, WholeMembershipAppliedAsItsDifference_OlderVersionsIgnored) {
  std::unique_ptr<ParameterShard> shard = MakeRemoteShard(absl::ZeroDuration());
  EXPECT_EQ(shard->ApplyMembership(MakeMembership(9, 2, {kA, kB}, {kA, kB})), 2u);
  EXPECT_TRUE(shard->started());
  ASSERT_TRUE(PushAll(*shard, Of(kA, 9), 0, 1.0f).ok());
  EXPECT_EQ(shard->version().round, 0);  // waits for B
  // An older message (same coordinator) changes nothing.
  EXPECT_EQ(shard->ApplyMembership(MakeMembership(9, 1, {kA}, {kA})), 2u);
  EXPECT_EQ(shard->version().round, 0);
  // B removed: the round completes with A's push alone, and B is refused.
  EXPECT_EQ(shard->ApplyMembership(MakeMembership(9, 3, {kA}, {kA})), 3u);
  EXPECT_EQ(shard->version().round, 1);
  EXPECT_EQ(PushAll(*shard, Of(kB, 9), 1, 1.0f).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A restarted coordinator's membership replaces it, whatever its version.
  EXPECT_EQ(shard->ApplyMembership(MakeMembership(10, 1, {kB}, {})), 1u);
  EXPECT_EQ(PullAll(*shard, Of(kA, 10), -1).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(PushAll(*shard, Of(kB, 10), 1, 1.0f).status().code(),
            absl::StatusCode::kFailedPrecondition)
      << "admitted but not training";
}

TEST(ParameterShardMembershipTest, NewCoordinator_ReusedIdsStartAFreshRound) {
  std::unique_ptr<ParameterShard> shard = MakeRemoteShard(absl::ZeroDuration());
  shard->ApplyMembership(MakeMembership(9, 1, {kA, kB}, {kA, kB}));
  ASSERT_TRUE(PushAll(*shard, Of(kA, 9), 0, 1.0f, /*request_id=*/5).ok());
  EXPECT_EQ(shard->version().round, 0);
  // The coordinator restarts and hands ids A and B to new workers: the old
  // round is applied with what it had, and neither A's round nor its
  // request id 5 counts against the new A.
  shard->ApplyMembership(MakeMembership(10, 1, {kA, kB}, {kA, kB}));
  EXPECT_EQ(shard->version().round, 1);
  ASSERT_TRUE(PushAll(*shard, Of(kA, 10), 1, 1.0f, /*request_id=*/5).ok());
  ASSERT_TRUE(PushAll(*shard, Of(kB, 10), 1, 1.0f, /*request_id=*/5).ok());
  EXPECT_EQ(shard->version().round, 2);
  EXPECT_EQ(shard->stats().duplicate_pushes, 0);
}

TEST(ParameterShardMembershipTest, NewCoordinator_WorkersOfTheOldOneRefused) {
  std::unique_ptr<ParameterShard> shard = MakeRemoteShard(absl::ZeroDuration());
  shard->ApplyMembership(MakeMembership(9, 1, {kA, kB}, {kA, kB}));
  // Coordinator 10 gives id A to a new worker; the old A (of 9) goes on.
  shard->ApplyMembership(MakeMembership(10, 1, {kA, kB}, {kA, kB}));
  const int64_t round = shard->version().round;
  absl::StatusOr<ShardVersion> stale = PushAll(*shard, Of(kA, 9), round, 1.0f);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(stale.status().message().find("register again"), std::string::npos) << stale.status();
  EXPECT_EQ(PullAll(*shard, Of(kA, 9), -1).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(shard->ReadyFor(Of(kA, 9), /*push=*/true, -1));
  // Nothing of the stale push counted: the new B's push does not complete
  // the round, the new A's does, and each is applied once.
  ASSERT_TRUE(PushAll(*shard, Of(kB, 10), round, 1.0f).ok());
  EXPECT_EQ(shard->version().round, round);
  EXPECT_EQ(shard->stats().pushes, 1);
  ASSERT_TRUE(PushAll(*shard, Of(kA, 10), round, 3.0f).ok());
  EXPECT_EQ(shard->version().round, round + 1);
  EXPECT_EQ(*PullAll(*shard, Of(kA, 10), -1), std::vector<float>(4, -2.0f));
}

TEST(ParameterShardTest, WorkerOfAnotherCoordinatorIncarnation_Refused) {
  for (ConsistencyMode mode : {ASYNC, SYNC, SSP}) {
    auto shard = MakeShard(mode, /*staleness=*/1);
    const WorkerIdentity stale = Of(kA, kCoordinator + 1);
    EXPECT_EQ(PushAll(*shard, stale, 0, 1.0f).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(PullAll(*shard, stale, -1).status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(shard->version().version, 0);
    EXPECT_EQ(shard->stats().pushes, 0);
    EXPECT_EQ(*PullAll(*shard, kA, -1), std::vector<float>(4, 0.0f));
  }
}

TEST(ParameterShardMembershipTest, NoMembershipYet_UnavailableNotAnEviction) {
  // A shard the coordinator has not reached yet cannot tell a stale worker
  // from a live one: the worker retries instead of registering again.
  std::unique_ptr<ParameterShard> shard = MakeRemoteShard(absl::Milliseconds(20));
  EXPECT_EQ(PushAll(*shard, Of(kA, 1), 0, 1.0f).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(PullAll(*shard, Of(kA, 1), -1).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(shard->stats().pushes, 0);
  shard->ApplyMembership(MakeMembership(1, 1, {kA}, {kA}));
  EXPECT_TRUE(PushAll(*shard, Of(kA, 1), 0, 1.0f).ok());
  // Once it has one, a worker it does not know is refused.
  EXPECT_EQ(PullAll(*shard, Of(kB, 1), -1).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ParameterShardMembershipTest, UnknownWorkerWaitsOutTheGraceForItsMembership) {
  std::unique_ptr<ParameterShard> shard = MakeRemoteShard(absl::Seconds(30));
  absl::StatusOr<ShardVersion> pushed;
  std::thread worker([&] { pushed = PushAll(*shard, Of(kA, 1), 0, 1.0f); });
  // The push reached the shard before the membership admitting its worker.
  ASSERT_TRUE(WaitUntil([&] { return shard->stats().waiting_for_membership == 1; }));
  shard->ApplyMembership(MakeMembership(1, 1, {kA}, {kA}));
  worker.join();
  EXPECT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(shard->version().round, 1);
  EXPECT_EQ(shard->stats().waiting_for_membership, 0);
}

}  // namespace
}  // namespace fulcrum
