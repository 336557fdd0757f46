// Elastic membership with real processes: workers killed, frozen, joining
// late and straggling, in every consistency mode. The coordinator's records
// must show every partition trained exactly once per epoch.
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"

namespace fulcrum {
namespace {

constexpr absl::Duration kJobTimeout = absl::Minutes(3);

// Two epochs of 12 partitions for 3 workers; fast liveness so deaths are
// noticed within seconds. A short per-step delay stretches an epoch to about a
// second, leaving time to act mid-epoch.
std::vector<std::string> ServerFlags(const std::string& mode, int num_workers = 3) {
  return {"--model=softmax",
          "--mode=" + mode,
          "--epochs=2",
          absl::StrCat("--num_workers=", num_workers),
          "--partitions_per_worker=4",
          "--heartbeat_interval=0.2",
          "--worker_timeout=2"};
}

const std::vector<std::string> kSteady = {"--debug_step_delay_ms=2"};

double UndisturbedAccuracy(const std::string& mode) {
  LocalCluster c("baseline_" + mode.substr(0, 4));
  EXPECT_TRUE(c.StartServer(ServerFlags(mode)).ok());
  std::vector<int> workers;
  for (const char* name : {"a", "b", "c"}) workers.push_back(*c.StartWorker(name, kSteady));
  JobStatus status = c.FinishJob(workers, kJobTimeout);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  return status.last_eval().test_accuracy();
}

class KillTest : public ::testing::TestWithParam<std::string> {};

TEST_P(KillTest, WorkerKilledMidEpoch_JobFinishesEachPartitionOnce) {
  const std::string mode = GetParam();
  const double baseline = UndisturbedAccuracy(mode);

  LocalCluster c("kill_" + mode.substr(0, 4));
  ASSERT_TRUE(c.StartServer(ServerFlags(mode)).ok());
  const int a = *c.StartWorker("a", kSteady);
  const int b = *c.StartWorker("b", kSteady);
  const int victim = *c.StartWorker("victim", kSteady);
  // Mid-epoch: the victim has trained a partition and is inside another.
  absl::StatusOr<JobStatus> before = c.WaitFor(
      [](const JobStatus& s) {
        const WorkerStatus* v = FindWorker(s, "victim");
        return v != nullptr && v->partitions_completed() >= 1 && v->state() == ACTIVE &&
               s.epoch() == 0;
      },
      absl::Seconds(60));
  ASSERT_TRUE(before.ok()) << before.status();
  c.worker(victim).Signal(SIGKILL);
  ASSERT_EQ(*c.WaitWorker(victim, absl::Seconds(10)), 128 + SIGKILL);

  // The coordinator notices, and the lease goes back to the pool.
  absl::StatusOr<JobStatus> noticed =
      c.WaitFor([](const JobStatus& s) { return FindWorker(s, "victim")->state() == DEAD; },
                absl::Seconds(20));
  ASSERT_TRUE(noticed.ok()) << noticed.status();

  JobStatus status = c.FinishJob({a, b}, kJobTimeout);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  EXPECT_EQ(FindWorker(status, "victim")->state(), DEAD);
  EXPECT_GE(status.dead_workers(), 1u);
  EXPECT_NEAR(status.last_eval().test_accuracy(), baseline, 0.01) << "undisturbed " << baseline;
  EXPECT_TRUE(status.last_eval().final());
}

INSTANTIATE_TEST_SUITE_P(Modes, KillTest, ::testing::Values("sync", "async", "ssp:2"),
                         [](const auto& info) {
                           return info.param == "ssp:2" ? std::string("ssp2") : info.param;
                         });

TEST(MembershipTest, WorkerJoiningMidJob_GetsPartitionsAndJobFinishes) {
  LocalCluster c("join");
  ASSERT_TRUE(c.StartServer(ServerFlags("sync", /*num_workers=*/2)).ok());
  const int a = *c.StartWorker("a", kSteady);
  const int b = *c.StartWorker("b", kSteady);
  ASSERT_TRUE(
      c.WaitFor([](const JobStatus& s) { return s.examples_seen() > 0; }, absl::Seconds(60)).ok());
  const int late = *c.StartWorker("late", kSteady);
  JobStatus status = c.FinishJob({a, b, late}, kJobTimeout);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  const WorkerStatus* joiner = FindWorker(status, "late");
  ASSERT_NE(joiner, nullptr);
  EXPECT_GE(joiner->partitions_completed(), 1u) << status.ShortDebugString();
}

class StragglerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StragglerTest, TenTimesSlowerWorker_TakesFewerPartitionsOrJobCompletes) {
  const std::string mode = GetParam();
  LocalCluster c("straggler_" + mode.substr(0, 4));
  ASSERT_TRUE(c.StartServer(ServerFlags(mode)).ok());
  const int a = *c.StartWorker("fast1", {"--debug_step_delay_ms=1"});
  const int b = *c.StartWorker("fast2", {"--debug_step_delay_ms=1"});
  const int s = *c.StartWorker("slow", {"--debug_step_delay_ms=10"});
  JobStatus status = c.FinishJob({a, b, s}, kJobTimeout);
  EXPECT_EQ(status.state(), FINISHED);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  const uint32_t slow = FindWorker(status, "slow")->partitions_completed();
  const uint32_t fast1 = FindWorker(status, "fast1")->partitions_completed();
  const uint32_t fast2 = FindWorker(status, "fast2")->partitions_completed();
  EXPECT_EQ(slow + fast1 + fast2, 24u);
  if (mode != "sync") {
    // The others keep going: the straggler trains less than either of them.
    EXPECT_LT(slow, fast1) << status.ShortDebugString();
    EXPECT_LT(slow, fast2) << status.ShortDebugString();
  }
  if (mode != "async") {
    EXPECT_GT(status.wait_seconds(), 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, StragglerTest, ::testing::Values("sync", "async", "ssp:2"),
                         [](const auto& info) {
                           return info.param == "ssp:2" ? std::string("ssp2") : info.param;
                         });

TEST(MembershipTest, FrozenWorkerDeclaredDead_RegistersAgainAfterThaw) {
  LocalCluster c("freeze");
  ASSERT_TRUE(c.StartServer(ServerFlags("async", 2)).ok());
  const int a = *c.StartWorker("a", kSteady);
  const int frozen = *c.StartWorker("frozen", kSteady);
  ASSERT_TRUE(c.WaitFor(
                   [](const JobStatus& s) {
                     const WorkerStatus* w = FindWorker(s, "frozen");
                     return w != nullptr && w->state() == ACTIVE;
                   },
                   absl::Seconds(60))
                  .ok());
  c.worker(frozen).Signal(SIGSTOP);
  // Silent past the timeout: dead, and its partition goes to the other.
  ASSERT_TRUE(c.WaitFor([](const JobStatus& s) { return FindWorker(s, "frozen")->state() == DEAD; },
                        absl::Seconds(20))
                  .ok());
  c.worker(frozen).Signal(SIGCONT);
  // Its next heartbeat or call gets FAILED_PRECONDITION: it registers again
  // under the same name and works on.
  absl::StatusOr<JobStatus> back =
      c.WaitFor([](const JobStatus& s) { return FindWorker(s, "frozen", true) != nullptr; },
                absl::Seconds(30));
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << c.WorkerLog(frozen);
  JobStatus status = c.FinishJob({a, frozen}, kJobTimeout);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  EXPECT_NE(c.WorkerLog(frozen).find("registering again"), std::string::npos)
      << c.WorkerLog(frozen);
}

TEST(MembershipTest, PsctlStop_WorkersExitZeroAndJobStopped) {
  LocalCluster c("stop");
  std::vector<std::string> flags = ServerFlags("sync", 2);
  flags.push_back("--epochs=1000");
  ASSERT_TRUE(c.StartServer(flags).ok());
  const int a = *c.StartWorker("a", kSteady);
  const int b = *c.StartWorker("b", kSteady);
  ASSERT_TRUE(
      c.WaitFor([](const JobStatus& s) { return s.examples_seen() > 0; }, absl::Seconds(60)).ok());
  Subprocess psctl;
  ASSERT_TRUE(psctl
                  .Start({RunfilePath("tools/psctl"), "stop", "--coordinator=" + c.address()},
                         c.dir() + "/stop.out", c.dir() + "/stop.err")
                  .ok());
  ASSERT_EQ(*psctl.Wait(absl::Seconds(30)), 0) << ReadFileOrEmpty(c.dir() + "/stop.err");
  for (int i : {a, b}) {
    absl::StatusOr<int> code = c.WaitWorker(i, absl::Seconds(60));
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << c.WorkerLog(i);
  }
  EXPECT_EQ(c.Status()->state(), STOPPED);
}

}  // namespace
}  // namespace fulcrum
