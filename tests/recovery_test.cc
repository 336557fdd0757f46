// Parameter-server recovery with real processes: the ps_server is SIGKILLed
// mid-job (and mid-checkpoint-write) and restarted on the same port and
// checkpoint folder; the workers reconnect by themselves and the job
// finishes as if nothing happened, losing at most one checkpoint interval.
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/file_system.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"

namespace fulcrum {
namespace {

constexpr absl::Duration kJobTimeout = absl::Minutes(3);

std::vector<std::string> JobFlags(const std::string& mode) {
  return {"--model=softmax", "--mode=" + mode,           "--epochs=3",
          "--num_workers=2", "--heartbeat_interval=0.2", "--worker_timeout=2"};
}

const std::vector<std::string> kWorkerFlags = {"--debug_step_delay_ms=2", "--max_backoff=0.5",
                                               "--max_retries=40"};

class KillServerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(KillServerTest, KilledAndRestarted_WorkersReconnectAndJobFinishes) {
  const std::string mode = GetParam();
  double baseline;
  {
    LocalCluster c("undisturbed_" + mode);
    ASSERT_TRUE(c.StartServer(JobFlags(mode)).ok());
    const int a = *c.StartWorker("a", kWorkerFlags);
    const int b = *c.StartWorker("b", kWorkerFlags);
    baseline = c.FinishJob({a, b}, kJobTimeout).last_eval().test_accuracy();
  }

  LocalCluster c("killed_" + mode);
  std::vector<std::string> flags = JobFlags(mode);
  flags.push_back("--checkpoint_dir=" + c.dir() + "/ckpt");
  flags.push_back("--checkpoint_every=300ms");
  ASSERT_TRUE(c.StartServer(flags).ok());
  const int a = *c.StartWorker("a", kWorkerFlags);
  const int b = *c.StartWorker("b", kWorkerFlags);
  // Mid-job: into the second epoch, with a checkpoint taken since then.
  absl::StatusOr<JobStatus> second_epoch =
      c.WaitFor([](const JobStatus& s) { return s.epoch() >= 1; }, absl::Seconds(60));
  ASSERT_TRUE(second_epoch.ok()) << second_epoch.status();
  const int64_t boundary = second_epoch->round();
  absl::StatusOr<JobStatus> before = c.WaitFor(
      [boundary](const JobStatus& s) {
        return s.last_checkpoint().round() >= boundary && s.state() == RUNNING;
      },
      absl::Seconds(60));
  ASSERT_TRUE(before.ok()) << before.status();
  const int64_t checkpointed = before->last_checkpoint().round();
  ASSERT_TRUE(c.RestartServer(flags).ok());

  absl::StatusOr<JobStatus> restarted = c.Status();
  ASSERT_TRUE(restarted.ok());
  ASSERT_TRUE(restarted->has_restored_from()) << c.ServerLog();
  // It resumed from the newest checkpoint, at least the one seen before the
  // kill: at most one interval of training is lost.
  EXPECT_GE(restarted->restored_from().round(), checkpointed);
  EXPECT_GE(restarted->epoch(), 1u);  // not back at epoch 0

  JobStatus status = c.FinishJob({a, b}, kJobTimeout);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  EXPECT_TRUE(status.has_restored_from());
  EXPECT_NEAR(status.last_eval().test_accuracy(), baseline, 0.01) << "undisturbed " << baseline;
}

INSTANTIATE_TEST_SUITE_P(Modes, KillServerTest, ::testing::Values("sync", "async"));

// The hang of issue 13: the ps_server is killed while the job waits for its
// third worker (no checkpoint yet) and restarted; the new process numbers
// workers from 1 again. Worker a is frozen across the restart so that b
// registers first and is given id 1, the id a still holds. A must be refused
// and register again; taken for b, the job would wait for a third worker
// forever.
TEST(RecoveryTest, KilledBeforeTheJobStarted_WorkersOfTheDeadProcessRegisterAgain) {
  LocalCluster c("reused_ids");
  const std::vector<std::string> flags = {"--model=softmax",
                                          "--mode=sync",
                                          "--epochs=1",
                                          "--num_workers=3",
                                          "--heartbeat_interval=0.2",
                                          "--worker_timeout=2",
                                          "--checkpoint_dir=" + c.dir() + "/ckpt",
                                          "--checkpoint_every=1s"};
  ASSERT_TRUE(c.StartServer(flags).ok());
  const int a = *c.StartWorker("a", kWorkerFlags);
  ASSERT_TRUE(
      c.WaitFor([](const JobStatus& s) { return s.live_workers() == 1; }, absl::Seconds(30)).ok());
  const int b = *c.StartWorker("b", kWorkerFlags);
  absl::StatusOr<JobStatus> waiting =
      c.WaitFor([](const JobStatus& s) { return s.live_workers() == 2; }, absl::Seconds(30));
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  ASSERT_EQ(waiting->state(), WAITING_FOR_WORKERS);
  ASSERT_EQ(FindWorker(*waiting, "a")->worker_id(), 1u);

  c.worker(a).Signal(SIGSTOP);
  ASSERT_TRUE(c.RestartServer(flags).ok());
  absl::StatusOr<JobStatus> b_back = c.WaitFor(
      [](const JobStatus& s) {
        const WorkerStatus* w = FindWorker(s, "b");
        return w != nullptr && w->worker_id() == 1;
      },
      absl::Seconds(30));
  ASSERT_TRUE(b_back.ok()) << b_back.status() << "\n" << c.ServerLog();
  EXPECT_FALSE(b_back->has_restored_from());
  c.worker(a).Signal(SIGCONT);  // still holding id 1 of the dead process

  const int third = *c.StartWorker("c", kWorkerFlags);
  JobStatus status = c.FinishJob({a, b, third}, kJobTimeout);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  for (const char* name : {"a", "b", "c"}) {
    const WorkerStatus* w = FindWorker(status, name);
    ASSERT_NE(w, nullptr) << name;
    EXPECT_GE(w->partitions_completed(), 1u) << name;
  }
  EXPECT_NE(c.WorkerLog(a).find("registering again"), std::string::npos) << c.WorkerLog(a);
}

TEST(RecoveryTest, KilledDuringCheckpointWrite_PreviousCheckpointLoaded) {
  LocalCluster c("kill_mid_write");
  const std::string dir = c.dir() + "/ckpt";
  std::vector<std::string> flags = JobFlags("async");
  flags.push_back("--epochs=100");
  flags.push_back("--checkpoint_dir=" + dir);
  flags.push_back("--checkpoint_every=100ms");
  std::vector<std::string> slow = flags;
  slow.push_back("--debug_checkpoint_delay_ms=2000");  // each write takes 2 s
  ASSERT_TRUE(c.StartServer(slow).ok());
  const int a = *c.StartWorker("a", kWorkerFlags);
  ASSERT_TRUE(c.StartWorker("b", kWorkerFlags).ok());
  absl::StatusOr<JobStatus> first =
      c.WaitFor([](const JobStatus& s) { return s.has_last_checkpoint(); }, absl::Seconds(60));
  ASSERT_TRUE(first.ok()) << first.status();
  const uint64_t complete = first->last_checkpoint().sequence();
  // Wait until the next checkpoint's folder exists, half written.
  const std::string next = absl::StrCat(dir, "/ckpt-", std::string(8, '0'), complete + 1);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!PosixFileSystem()->Exists(next) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(PosixFileSystem()->Exists(next)) << next;
  ASSERT_FALSE(PosixFileSystem()->Exists(next + "/MANIFEST"));

  ASSERT_TRUE(c.RestartServer(flags).ok());
  JobStatus status = *c.Status();
  ASSERT_TRUE(status.has_restored_from()) << c.ServerLog();
  EXPECT_EQ(status.restored_from().sequence(), complete);
  // Training carries on from there.
  const uint64_t examples = status.examples_seen();
  EXPECT_TRUE(c.WaitFor(
                   [examples](const JobStatus& s) {
                     return s.state() == RUNNING && s.examples_seen() > examples + 1000;
                   },
                   absl::Seconds(60))
                  .ok());
  EXPECT_EQ(c.WaitWorker(a, absl::Milliseconds(1)).status().code(),
            absl::StatusCode::kDeadlineExceeded);  // still working
}

TEST(RecoveryTest, PsctlCheckpoint_WritesOneNowOrSaysWhyNot) {
  LocalCluster c("on_demand");
  std::vector<std::string> flags = JobFlags("sync");
  flags.push_back("--checkpoint_dir=" + c.dir() + "/ckpt");
  ASSERT_TRUE(c.StartServer(flags).ok());
  Subprocess psctl;
  ASSERT_TRUE(psctl
                  .Start({RunfilePath("tools/psctl"), "checkpoint", "--coordinator=" + c.address()},
                         c.dir() + "/out", c.dir() + "/err")
                  .ok());
  ASSERT_EQ(*psctl.Wait(absl::Seconds(30)), 0) << ReadFileOrEmpty(c.dir() + "/err");
  EXPECT_NE(ReadFileOrEmpty(c.dir() + "/out").find("ckpt-000000001"), std::string::npos);
  EXPECT_EQ(c.Status()->last_checkpoint().sequence(), 1u);

  LocalCluster none("no_dir");
  ASSERT_TRUE(none.StartServer(JobFlags("sync")).ok());
  ASSERT_TRUE(
      psctl
          .Start({RunfilePath("tools/psctl"), "checkpoint", "--coordinator=" + none.address()},
                 none.dir() + "/out", none.dir() + "/err")
          .ok());
  EXPECT_EQ(*psctl.Wait(absl::Seconds(30)), 1);
  EXPECT_NE(ReadFileOrEmpty(none.dir() + "/err").find("FAILED_PRECONDITION"), std::string::npos);
}

TEST(RecoveryTest, RestoreOfAnotherJob_ServerRefusesToStart) {
  LocalCluster c("other_job");
  std::vector<std::string> flags = JobFlags("sync");
  flags.push_back("--checkpoint_dir=" + c.dir() + "/ckpt");
  ASSERT_TRUE(c.StartServer(flags).ok());
  Subprocess psctl;
  ASSERT_TRUE(psctl
                  .Start({RunfilePath("tools/psctl"), "checkpoint", "--coordinator=" + c.address()},
                         c.dir() + "/out", c.dir() + "/err")
                  .ok());
  ASSERT_EQ(*psctl.Wait(absl::Seconds(30)), 0);
  c.server().Signal(SIGTERM);
  ASSERT_TRUE(c.server().Wait(absl::Seconds(30)).ok());
  Subprocess other;
  ASSERT_TRUE(other
                  .Start({RunfilePath("server/ps_server"), "--port=0", "--model=mlp",
                          "--checkpoint_dir=" + c.dir() + "/ckpt"},
                         c.dir() + "/other.out", c.dir() + "/other.err")
                  .ok());
  EXPECT_EQ(*other.Wait(absl::Seconds(30)), 2);
  EXPECT_NE(ReadFileOrEmpty(c.dir() + "/other.err").find("--restore=none"), std::string::npos)
      << ReadFileOrEmpty(c.dir() + "/other.err");
}

}  // namespace
}  // namespace fulcrum
