// Network faults, not only crashes: ps_server and workers on hosts of their
// own (network namespaces, tests/netlab.h), with real TCP between them, and
// the network between them cut, partitioned, made half-open, slow and lossy.
// Skipped, with the reason, where the machine cannot make namespaces.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/status_macros.h"
#include "common/rpc/channel.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"
#include "tests/netlab.h"
#include "tests/wait.h"

namespace fulcrum {
namespace {

constexpr absl::Duration kJobTimeout = absl::Minutes(4);

// Two epochs of 8 partitions for 2 workers, liveness within seconds; a short
// per-step delay stretches an epoch to a few seconds, leaving time to act.
std::vector<std::string> ServerFlags(const std::string& mode) {
  return {"--model=softmax",
          "--mode=" + mode,
          "--epochs=2",
          "--num_workers=2",
          "--partitions_per_worker=4",
          "--heartbeat_interval=0.2",
          "--worker_timeout=2"};
}

const std::vector<std::string> kSteady = {"--debug_step_delay_ms=3"};

// The lab, or a skip with the machine's reason.
#define MAKE_LAB_OR_SKIP(lab, ...)                                                         \
  absl::StatusOr<std::unique_ptr<Netlab>> lab##_or = Netlab::Create(__VA_ARGS__);          \
  if (absl::IsUnavailable(lab##_or.status())) GTEST_SKIP() << lab##_or.status().message(); \
  ASSERT_TRUE(lab##_or.ok()) << lab##_or.status();                                         \
  Netlab& lab = **lab##_or

Placement On(const Netlab& lab, const std::string& host) {
  return Placement{lab.Launcher(host), lab.Address(host)};
}

// True once worker `name` is live and has trained some steps.
bool Training(const JobStatus& s, const std::string& name) {
  const WorkerStatus* w = FindWorker(s, name, /*live_only=*/true);
  return w != nullptr && w->steps() > 5;
}

bool IsDead(const JobStatus& s, const std::string& name) {
  const WorkerStatus* w = FindWorker(s, name);
  return w != nullptr && w->state() == DEAD;
}

// Polls the status for `period`: both workers must stay live throughout.
// Returns the last status.
JobStatus ExpectBothLiveFor(const LocalCluster& c, absl::Duration period) {
  const absl::Time end = absl::Now() + period;
  JobStatus last;
  while (absl::Now() < end) {
    absl::StatusOr<JobStatus> s = c.Status();
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) break;
    last = *s;
    for (const char* name : {"w0", "w1"}) {
      EXPECT_FALSE(IsDead(last, name)) << name << " declared dead: " << last.ShortDebugString();
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  return last;
}

// Shard `index` as the coordinator last heard of it.
ShardStatus Shard(const JobStatus& s, uint32_t index) {
  for (const ShardStatus& shard : s.shards()) {
    if (shard.index() == index) return shard;
  }
  return ShardStatus();
}

// A replicated coordinator's job on the lab's hosts: the coordinator on
// ps0, its backup on ps0b, shard 1 on ps1 when `shards` is 2, workers w0 and
// w1 — returned once both train and the backup follows.
struct PairJob {
  int backup = 0;  // for ShardLog
  int w0 = 0;
  int w1 = 0;
};

absl::StatusOr<PairJob> StartPairJob(LocalCluster& c, const Netlab& lab, int shards) {
  std::vector<std::string> flags = ServerFlags("async");
  flags.push_back(absl::StrCat("--num_shards=", shards));
  FULCRUM_RETURN_IF_ERROR(c.StartServer(flags, On(lab, "ps0")));
  PairJob job;
  FULCRUM_ASSIGN_OR_RETURN(job.backup, c.StartCoordinatorBackup(shards, {}, On(lab, "ps0b")));
  if (shards > 1) FULCRUM_RETURN_IF_ERROR(c.StartShard(1, shards, {}, On(lab, "ps1")).status());
  FULCRUM_ASSIGN_OR_RETURN(job.w0, c.StartWorker("w0", kSteady, On(lab, "w0")));
  FULCRUM_ASSIGN_OR_RETURN(job.w1, c.StartWorker("w1", kSteady, On(lab, "w1")));
  const absl::StatusOr<JobStatus> ready = c.WaitFor(
      [](const JobStatus& s) {
        return Training(s, "w0") && Training(s, "w1") && Shard(s, 0).backup_up();
      },
      absl::Seconds(60));
  if (!ready.ok()) {
    return absl::Status(ready.status().code(), absl::StrCat(ready.status().message(), "\nbackup:\n",
                                                            c.ShardLog(job.backup)));
  }
  return job;
}

// The job finishes: each partition trained once per epoch, at the accuracy
// of an undisturbed run.
void ExpectFinishesWhole(LocalCluster& c, const PairJob& job) {
  // Status() asks the coordinator while it answers, then the backup.
  const JobStatus status = c.FinishJob({job.w0, job.w1}, kJobTimeout);
  EXPECT_EQ(status.state(), FINISHED);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  EXPECT_GT(status.last_eval().test_accuracy(), 0.78);
}

// The coordinator found its backup serving the job and exited 3, without
// ever going on alone.
void ExpectCoordinatorYielded(LocalCluster& c) {
  absl::StatusOr<int> exited = c.server().Wait(absl::Seconds(30));
  ASSERT_TRUE(exited.ok()) << exited.status() << c.ServerLog();
  EXPECT_EQ(*exited, 3) << c.ServerLog();
  EXPECT_TRUE(absl::StrContains(c.ServerLog(), "serves the job as the coordinator now"))
      << c.ServerLog();
  EXPECT_FALSE(absl::StrContains(c.ServerLog(), "it goes on alone")) << c.ServerLog();
}

TEST(NetworkFaultTest, WorkerCutOffPastTheTimeout_DeclaredDeadRejoinsAndNoPartitionTrainedTwice) {
  MAKE_LAB_OR_SKIP(lab, {"ps", "w0", "w1"});
  LocalCluster c("net_cut");
  ASSERT_TRUE(c.StartServer(ServerFlags("async"), On(lab, "ps")).ok());
  const int w0 = *c.StartWorker("w0", kSteady, On(lab, "w0"));
  const int w1 = *c.StartWorker("w1", kSteady, On(lab, "w1"));
  ASSERT_TRUE(
      c.WaitFor([](const JobStatus& s) { return Training(s, "w1"); }, absl::Seconds(60)).ok())
      << c.ServerLog();

  ASSERT_TRUE(lab.Cut("w1").ok());
  absl::StatusOr<JobStatus> dead =
      c.WaitFor([](const JobStatus& s) { return IsDead(s, "w1"); }, absl::Seconds(20));
  ASSERT_TRUE(dead.ok()) << dead.status();
  absl::SleepFor(absl::Seconds(2));  // cut off well past the 2 s timeout
  ASSERT_TRUE(lab.Reconnect("w1").ok());

  absl::StatusOr<JobStatus> back = c.WaitFor(
      [](const JobStatus& s) { return FindWorker(s, "w1", true) != nullptr; }, absl::Seconds(60));
  // The job may have finished without it; otherwise it must have come back.
  if (!back.ok()) {
    absl::StatusOr<JobStatus> now = c.Status();
    ASSERT_TRUE(now.ok() && now->state() == FINISHED) << back.status() << "\n" << c.WorkerLog(w1);
  }
  JobStatus status = c.FinishJob({w0, w1}, kJobTimeout);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  EXPECT_TRUE(absl::StrContains(c.WorkerLog(w1), "registering again")) << c.WorkerLog(w1);
  EXPECT_GT(status.last_eval().test_accuracy(), 0.78);
}

// A worker whose packets vanish (a half-open connection: no FIN, no RST)
// must learn it from gRPC keepalives, long before its 300 s deadline, and
// come back once the path does.
TEST(NetworkFaultTest, HalfOpenConnection_DetectedByKeepaliveWellBeforeTheDeadline) {
  MAKE_LAB_OR_SKIP(lab, {"ps", "w0", "w1"});
  LocalCluster c("net_halfopen");
  ASSERT_TRUE(c.StartServer(ServerFlags("async"), On(lab, "ps")).ok());
  std::vector<std::string> flags = kSteady;
  flags.push_back("--rpc_timeout=300");
  const int w0 = *c.StartWorker("w0", flags, On(lab, "w0"));
  const int w1 = *c.StartWorker("w1", flags, On(lab, "w1"));
  ASSERT_TRUE(
      c.WaitFor([](const JobStatus& s) { return Training(s, "w0"); }, absl::Seconds(60)).ok());

  ASSERT_TRUE(lab.Block("ps", "w0").ok());
  const absl::Time blocked = absl::Now();
  // Heartbeats keep data in flight: the keepalive timeout (5 s, README)
  // ends the connection. Twice the keepalive time + timeout leaves room for
  // a loaded machine and is still far from the 300 s deadline.
  const absl::Duration bound = 2 * (kKeepaliveTime + kKeepaliveTimeout);
  while (!absl::StrContains(c.WorkerLog(w0), "heartbeat failed") && absl::Now() - blocked < bound) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  const absl::Duration detected = absl::Now() - blocked;
  EXPECT_LT(detected, bound) << c.WorkerLog(w0);
  std::printf("half-open connection noticed by the worker after %.1f s\n",
              absl::ToDoubleSeconds(detected));
  ASSERT_TRUE(lab.Unblock("ps", "w0").ok());

  JobStatus status = c.FinishJob({w0, w1}, kJobTimeout);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  EXPECT_GT(status.last_eval().test_accuracy(), 0.78);
}

// Two shards, the coordinator's (ps0) and ps1, and workers w0 and w1, each on
// its own host; returns once both workers train.
void StartTwoShards(const Netlab& lab, const std::string& mode, LocalCluster* c, int* w0, int* w1) {
  std::vector<std::string> flags = ServerFlags(mode);
  flags.push_back("--num_shards=2");
  ASSERT_TRUE(c->StartServer(flags, On(lab, "ps0")).ok());
  ASSERT_TRUE(c->StartShard(1, 2, {}, On(lab, "ps1")).ok());
  *w0 = *c->StartWorker("w0", kSteady, On(lab, "w0"));
  *w1 = *c->StartWorker("w1", kSteady, On(lab, "w1"));
  ASSERT_TRUE(c->WaitFor([](const JobStatus& s) { return Training(s, "w0") && Training(s, "w1"); },
                         absl::Seconds(60))
                  .ok());
}

class ShardPartitionTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ShardPartitionTest, ShardUnreachableFromTheWorkersOnly_JobFinishesNobodyDeclaredDead) {
  const std::string mode = GetParam();
  MAKE_LAB_OR_SKIP(lab, {"ps0", "ps1", "w0", "w1"});
  LocalCluster c("net_shard_workers_" + mode);
  int w0, w1;
  ASSERT_NO_FATAL_FAILURE(StartTwoShards(lab, mode, &c, &w0, &w1));

  ASSERT_TRUE(lab.Block("ps1", "w0").ok());
  ASSERT_TRUE(lab.Block("ps1", "w1").ok());
  // The workers still reach the coordinator: nobody is dead, they wait, and
  // (once what was in flight has landed) no push reaches ps1.
  const int64_t pushes = Shard(ExpectBothLiveFor(c, absl::Seconds(2.5)), 1).pushes();
  EXPECT_GT(pushes, 0);  // it was training before
  EXPECT_EQ(Shard(ExpectBothLiveFor(c, absl::Seconds(3.5)), 1).pushes(), pushes);
  ASSERT_TRUE(lab.Unblock("ps1", "w0").ok());
  ASSERT_TRUE(lab.Unblock("ps1", "w1").ok());

  JobStatus status = c.FinishJob({w0, w1}, kJobTimeout);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  EXPECT_GT(status.last_eval().test_accuracy(), 0.78);
}

TEST_P(ShardPartitionTest, ShardUnreachableFromTheCoordinatorOnly_JobFinishes) {
  const std::string mode = GetParam();
  MAKE_LAB_OR_SKIP(lab, {"ps0", "ps1", "w0", "w1"});
  LocalCluster c("net_shard_coord_" + mode);
  int w0, w1;
  ASSERT_NO_FATAL_FAILURE(StartTwoShards(lab, mode, &c, &w0, &w1));

  ASSERT_TRUE(lab.Block("ps0", "ps1").ok());
  // The coordinator sees ps1 go quiet; the workers, which reach both, are
  // not declared dead.
  EXPECT_FALSE(Shard(ExpectBothLiveFor(c, absl::Seconds(6)), 1).up());
  ASSERT_TRUE(lab.Unblock("ps0", "ps1").ok());
  absl::StatusOr<JobStatus> back =
      c.WaitFor([](const JobStatus& s) { return s.state() == FINISHED || Shard(s, 1).up(); },
                absl::Seconds(30));
  EXPECT_TRUE(back.ok()) << back.status();

  JobStatus status = c.FinishJob({w0, w1}, kJobTimeout);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
  EXPECT_GT(status.last_eval().test_accuracy(), 0.78);
}

INSTANTIATE_TEST_SUITE_P(Modes, ShardPartitionTest, ::testing::Values("sync", "async"));

// The coordinator and its backup cut off from each other: the backup hears
// nothing from the coordinator, asks the other shard whether it still
// reaches it (it does; cut off from that shard too, no majority of shard
// processes answers) — or, in a one-shard job, finds that the workers have
// not come to it (they still reach the coordinator) — and does not take
// over (two coordinators would each take workers). The coordinator goes on
// without it on the same witnesses; the job finishes under it, and the
// backup pairs with it again once the links are back.
struct PairPartition {
  const char* name;
  int shards;
  bool backup_cut_off_from_shard1;
};

class CoordinatorPairPartitionTest : public ::testing::TestWithParam<PairPartition> {};

TEST_P(CoordinatorPairPartitionTest, CoordinatorAndItsBackupPartitioned_TheBackupDoesNotTakeOver) {
  MAKE_LAB_OR_SKIP(lab, {"ps0", "ps0b", "ps1", "w0", "w1"});
  LocalCluster c(absl::StrCat("net_coordinator_pair_", GetParam().name));
  absl::StatusOr<PairJob> job = StartPairJob(c, lab, GetParam().shards);
  ASSERT_TRUE(job.ok()) << job.status();
  const int backup = job->backup;

  ASSERT_TRUE(lab.Block("ps0", "ps0b").ok());
  if (GetParam().backup_cut_off_from_shard1) {
    ASSERT_TRUE(lab.Block("ps1", "ps0b").ok());
  }
  // Many times the backup's silence limit (500 ms): the workers train on
  // with the coordinator, which nobody replaces.
  const int64_t steps_before = FindWorker(*c.Status(), "w0")->steps();
  const JobStatus during = ExpectBothLiveFor(c, absl::Seconds(4));
  EXPECT_GT(FindWorker(during, "w0")->steps(), steps_before);
  const std::string backup_log = c.ShardLog(backup);
  EXPECT_TRUE(absl::StrContains(backup_log, "not taking over")) << backup_log;
  EXPECT_FALSE(absl::StrContains(backup_log, "this process is the coordinator now")) << backup_log;
  ASSERT_TRUE(lab.Unblock("ps0", "ps0b").ok());
  if (GetParam().backup_cut_off_from_shard1) {
    ASSERT_TRUE(lab.Unblock("ps1", "ps0b").ok());
  }

  ExpectFinishesWhole(c, *job);
  EXPECT_FALSE(absl::StrContains(c.ShardLog(backup), "this process is the coordinator now"))
      << c.ShardLog(backup);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CoordinatorPairPartitionTest,
    ::testing::Values(PairPartition{"one_shard", 1, false}, PairPartition{"two_shards", 2, false},
                      PairPartition{"backup_cut_off_from_every_shard", 2, true}),
    [](const ::testing::TestParamInfo<PairPartition>& info) { return info.param.name; });

// A cut that puts the coordinator's backup with every worker and the
// coordinator with every other shard: each side has witnesses of a kind
// (the workers could not reach the coordinator; shard 1 still does), and
// were each to count its own, both would serve the job. The shards decide
// when there are any (server/replication/witnesses.h): a majority of the other shards'
// processes must not reach the coordinator for the backup to take over,
// and must reach it for the coordinator to go on without the backup. The
// coordinator goes on alone (its workers, cut off, are declared dead); the
// backup never takes over; mended, the workers register again and the job
// finishes with each partition trained once per epoch.
TEST(CoordinatorSplitTest, BackupWithTheWorkersCoordinatorWithTheShards_OnlyTheCoordinatorServes) {
  MAKE_LAB_OR_SKIP(lab, {"ps0", "ps0b", "ps1", "w0", "w1"});
  LocalCluster c("net_split_shards");
  absl::StatusOr<PairJob> job = StartPairJob(c, lab, 2);
  ASSERT_TRUE(job.ok()) << job.status();
  const int backup = job->backup;

  const std::vector<std::pair<std::string, std::string>> cut = {
      {"ps0", "ps0b"}, {"ps0", "w0"}, {"ps0", "w1"}, {"ps1", "ps0b"}, {"ps1", "w0"}, {"ps1", "w1"}};
  for (const auto& [a, b] : cut) ASSERT_TRUE(lab.Block(a, b).ok()) << a << " " << b;
  // Both workers come to the backup (their calls to the coordinator fail)
  // and are declared dead by the coordinator (2 s).
  absl::StatusOr<JobStatus> dead = c.WaitFor(
      [](const JobStatus& s) { return IsDead(s, "w0") && IsDead(s, "w1"); }, absl::Seconds(30));
  ASSERT_TRUE(dead.ok()) << dead.status() << c.ServerLog();
  // Past the workers' keepalive (their calls to the coordinator fail within
  // about 5 s, and they come to the backup).
  absl::SleepFor(absl::Seconds(6));
  const std::string backup_log = c.ShardLog(backup);
  EXPECT_TRUE(absl::StrContains(backup_log, "not taking over")) << backup_log;
  EXPECT_FALSE(absl::StrContains(backup_log, "this process is the coordinator now")) << backup_log;
  EXPECT_TRUE(absl::StrContains(c.ServerLog(), "it goes on alone")) << c.ServerLog();
  for (const auto& [a, b] : cut) ASSERT_TRUE(lab.Unblock(a, b).ok()) << a << " " << b;

  ExpectFinishesWhole(c, *job);
  EXPECT_FALSE(absl::StrContains(c.ShardLog(backup), "this process is the coordinator now"))
      << c.ShardLog(backup);
}

// The same cut in a one-shard job: no shard to ask, the workers decide.
// Both came to the backup, which takes over; the coordinator, which none of
// them calls any more, must not go on alone (it would be a second
// coordinator): it answers no push, and once the cut is mended it finds the
// backup serving, stops and exits (status 3). The job finishes under the
// backup, each partition trained once per epoch.
TEST(CoordinatorSplitTest, OneShardBackupWithTheWorkers_TheCoordinatorYieldsToIt) {
  MAKE_LAB_OR_SKIP(lab, {"ps0", "ps0b", "w0", "w1"});
  LocalCluster c("net_split_one_shard");
  absl::StatusOr<PairJob> job = StartPairJob(c, lab, 1);
  ASSERT_TRUE(job.ok()) << job.status();
  const int backup = job->backup;

  const std::vector<std::pair<std::string, std::string>> cut = {
      {"ps0", "ps0b"}, {"ps0", "w0"}, {"ps0", "w1"}};
  for (const auto& [a, b] : cut) ASSERT_TRUE(lab.Block(a, b).ok()) << a << " " << b;
  ASSERT_TRUE(WaitUntil(
      [&] { return absl::StrContains(c.ShardLog(backup), "this process is the coordinator now"); },
      absl::Seconds(30), absl::Milliseconds(100)))
      << c.ShardLog(backup);
  absl::SleepFor(absl::Seconds(3));  // the coordinator's workers declared dead meanwhile
  EXPECT_FALSE(absl::StrContains(c.ServerLog(), "it goes on alone")) << c.ServerLog();
  EXPECT_TRUE(absl::StrContains(c.ServerLog(), "cannot drop the backup yet")) << c.ServerLog();
  for (const auto& [a, b] : cut) ASSERT_TRUE(lab.Unblock(a, b).ok()) << a << " " << b;

  ExpectFinishesWhole(c, *job);
  ExpectCoordinatorYielded(c);
}

// The coordinator cut off from everything: its backup takes over on shard
// 1's word (it does not reach the coordinator either). A shard gives its
// word once: when the coordinator is back in reach of shard 1 and the
// workers but still not of its backup — so it cannot see that the backup
// serves — shard 1, which reports to the backup now, does not vouch for it,
// and it must not go on alone. Once it reaches the backup it yields (exits
// 3) and the job finishes under the backup.
TEST(CoordinatorSplitTest, CoordinatorCutOffFromAll_AShardThatFollowsTheBackupDoesNotVouchForIt) {
  MAKE_LAB_OR_SKIP(lab, {"ps0", "ps0b", "ps1", "w0", "w1"});
  LocalCluster c("net_split_vouch");
  absl::StatusOr<PairJob> job = StartPairJob(c, lab, 2);
  ASSERT_TRUE(job.ok()) << job.status();
  const int backup = job->backup;

  ASSERT_TRUE(lab.Cut("ps0").ok());
  ASSERT_TRUE(WaitUntil(
      [&] { return absl::StrContains(c.ShardLog(backup), "this process is the coordinator now"); },
      absl::Seconds(30), absl::Milliseconds(100)))
      << c.ShardLog(backup);
  absl::SleepFor(absl::Seconds(1));  // shard 1 reports to the backup meanwhile
  ASSERT_TRUE(lab.Block("ps0", "ps0b").ok());
  ASSERT_TRUE(lab.Reconnect("ps0").ok());
  absl::SleepFor(absl::Seconds(4));
  EXPECT_FALSE(absl::StrContains(c.ServerLog(), "it goes on alone")) << c.ServerLog();
  EXPECT_TRUE(absl::StrContains(c.ServerLog(), "cannot drop the backup yet")) << c.ServerLog();
  ASSERT_TRUE(lab.Unblock("ps0", "ps0b").ok());

  ExpectFinishesWhole(c, *job);
  ExpectCoordinatorYielded(c);
}

// Every link at 100 ms each way and 5% loss: the same job as on a clean
// network finishes with the same accuracy (sync: the rounds make the
// arithmetic the same whatever the timing).
TEST(NetworkFaultTest, SlowLossyLinks_JobFinishesWithTheUndisturbedAccuracy) {
  MAKE_LAB_OR_SKIP(lab, {"ps", "w0", "w1"});
  // One partition each and one epoch (no evaluation mid-job): each round
  // sums the same two batches whatever the timing, so the runs compute the
  // same model. 15 rounds of 2,000 examples.
  std::vector<std::string> flags = {
      "--model=softmax",           "--mode=sync",        "--epochs=1",
      "--num_workers=2",           "--batch_size=2000",  "--learning_rate=0.2",
      "--partitions_per_worker=1", "--worker_timeout=10"};
  auto run = [&](const std::string& name) -> std::pair<double, double> {
    LocalCluster c(name);
    const absl::Time start = absl::Now();
    EXPECT_TRUE(c.StartServer(flags, On(lab, "ps")).ok());
    const int w0 = *c.StartWorker("w0", {}, On(lab, "w0"));
    const int w1 = *c.StartWorker("w1", {}, On(lab, "w1"));
    JobStatus status = c.FinishJob({w0, w1}, absl::Minutes(6));
    EXPECT_EQ(CheckEachPartitionOncePerEpoch(status), "");
    return {status.last_eval().test_accuracy(), absl::ToDoubleSeconds(absl::Now() - start)};
  };
  const auto [clean_accuracy, clean_seconds] = run("net_clean");
  ASSERT_TRUE(lab.Impair(absl::Milliseconds(100), 0.05, RunfilePath("tests/netem_relay")).ok());
  const auto [slow_accuracy, slow_seconds] = run("net_slow");
  std::printf("clean network: accuracy %.4f in %.1f s; 100 ms + 5%% loss: %.4f in %.1f s\n",
              clean_accuracy, clean_seconds, slow_accuracy, slow_seconds);
  EXPECT_GT(clean_accuracy, 0.70);
  // 15 sync rounds at >= 200 ms each: the links really were slow.
  EXPECT_GT(slow_seconds, clean_seconds + 3);
  EXPECT_NEAR(slow_accuracy, clean_accuracy, 0.01);
}

}  // namespace
}  // namespace fulcrum
