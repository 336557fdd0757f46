// Replicated parameter shards, as processes: a second ps_server started for a
// shard index becomes that shard's backup (joining a running job, it catches
// up from its primary); when the primary is SIGKILLed mid-job the backup
// takes over, workers move to it by themselves, no process is restarted by
// hand, and every update acknowledged to a worker is in the model once.
#include <csignal>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/coordinator.pb.h"
#include "tests/cluster.h"
#include "tests/wait.h"

namespace fulcrum {
namespace {

int CountOccurrences(const std::string& text, const std::string& word) {
  int n = 0;
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) ++n;
  return n;
}

struct ModeCase {
  std::string name;
  std::vector<std::string> flags;
};

// Counts the pushes: every push shard 1 acknowledged to a worker (before a
// kill of its primary or after) is in its counter, which a backup carries on
// from its primary's; and beyond those, at most one per worker (in flight at
// the kill, applied but never answered) was taken. Shard 1's counter is as
// of its last report.
void ExpectEveryAcknowledgedPushCounted(LocalCluster& c, const std::vector<int>& workers,
                                        int shard_process) {
  const int shard = 1;
  auto acknowledged = [shard](const JobStatus& s) {
    uint64_t sum = 0;
    for (const WorkerStatus& w : s.workers()) {
      if (w.pushes_acknowledged_size() == 2) sum += w.pushes_acknowledged(shard);
    }
    return sum;
  };
  absl::StatusOr<JobStatus> counted = c.WaitFor(
      [&](const JobStatus& s) {
        return s.shards_size() == 2 && uint64_t(s.shards(shard).pushes()) >= acknowledged(s);
      },
      absl::Seconds(10));
  absl::StatusOr<JobStatus> last = c.Status();
  ASSERT_TRUE(last.ok());
  const uint64_t acked = acknowledged(*last);
  const uint64_t applied = last->shards(shard).pushes();
  EXPECT_GT(acked, 1000u);
  std::string logs = c.ShardLog(shard_process);
  for (int w : workers) logs += c.WorkerLog(w);
  EXPECT_TRUE(counted.ok()) << "workers were answered for " << acked << " pushes by shard " << shard
                            << ", which counts " << applied << "\n"
                            << logs;
  EXPECT_LE(applied, acked + workers.size());
}

class FailoverTest : public ::testing::TestWithParam<ModeCase> {
 protected:
  std::vector<std::string> ServerFlags() const {
    std::vector<std::string> flags = {"--model=softmax", "--num_workers=2", "--num_shards=2",
                                      "--epochs=5", "--partitions_per_worker=4"};
    flags.insert(flags.end(), GetParam().flags.begin(), GetParam().flags.end());
    return flags;
  }
  // The final accuracy of the same job with no backup and nothing killed.
  double UndisturbedAccuracy() const {
    LocalCluster c("undisturbed_" + GetParam().name);
    EXPECT_TRUE(c.StartServer(ServerFlags()).ok());
    EXPECT_TRUE(c.StartShard(1, 2).ok());
    const int a = *c.StartWorker("a", {"--debug_step_delay_ms=2"});
    const int b = *c.StartWorker("b", {"--debug_step_delay_ms=2"});
    const JobStatus done = c.FinishJob({a, b}, absl::Minutes(2));
    EXPECT_EQ(done.state(), FINISHED) << c.ServerLog();
    return done.last_eval().test_accuracy();
  }
};

TEST_P(FailoverTest, ShardPrimaryKilledMidJob_BackupTakesOver_NoAcknowledgedUpdateLost) {
  const double undisturbed = UndisturbedAccuracy();
  LocalCluster c("failover_" + GetParam().name);
  ASSERT_TRUE(c.StartServer(ServerFlags()).ok());
  ASSERT_TRUE(c.StartShard(1, 2).ok());
  const int a = *c.StartWorker("a", {"--debug_step_delay_ms=2"});
  const int b = *c.StartWorker("b", {"--debug_step_delay_ms=2"});

  // The backup joins the running job and takes the primary's state.
  ASSERT_TRUE(
      c.WaitFor([](const JobStatus& s) { return s.round() >= 20; }, absl::Seconds(120)).ok())
      << c.ServerLog();
  // A slow backup (2 ms a batch) widens the window in which a primary that
  // answered before its backup had an update would lose it.
  absl::StatusOr<int> backup = c.StartBackup(1, 2, {"--debug_replication_delay_ms=2"});
  ASSERT_TRUE(backup.ok()) << backup.status();
  absl::StatusOr<JobStatus> paired =
      c.WaitFor([](const JobStatus& s) { return s.shards_size() == 2 && s.shards(1).backup_up(); },
                absl::Seconds(30));
  ASSERT_TRUE(paired.ok()) << paired.status() << c.ShardLog(*backup);
  for (int i = 0; i < 300 && !absl::StrContains(c.ShardLog(1), "has this shard's state"); ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(absl::StrContains(c.ShardLog(1), "has this shard's state")) << c.ShardLog(1);
  EXPECT_EQ(paired->shards(1).backup_address(), c.shard_address(*backup));

  // Mid-job, with updates replicated for a while: the primary dies.
  absl::StatusOr<JobStatus> before =
      c.WaitFor([](const JobStatus& s) { return s.epoch() >= 3; }, absl::Seconds(120));
  ASSERT_TRUE(before.ok()) << before.status() << c.ServerLog();
  const uint64_t incarnation = before->shards(1).incarnation();
  c.shard(1).Signal(SIGKILL);

  const JobStatus done = c.FinishJob({a, b}, absl::Minutes(2));
  EXPECT_EQ(done.state(), FINISHED) << c.ServerLog() << c.ShardLog(*backup);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(done), "");
  EXPECT_GE(done.last_eval().test_accuracy(), 0.8) << c.ServerLog();
  EXPECT_NEAR(done.last_eval().test_accuracy(), undisturbed, 0.01) << c.ServerLog();
  ASSERT_EQ(done.shards_size(), 2);
  EXPECT_EQ(done.shards(1).failovers(), 1u);
  EXPECT_EQ(done.shards(1).address(), c.shard_address(*backup));
  // The backup serves under the replica set's incarnation: workers saw no
  // restart.
  EXPECT_EQ(done.shards(1).incarnation(), incarnation);
  EXPECT_TRUE(absl::StrContains(c.ShardLog(*backup), "this backup took over"))
      << c.ShardLog(*backup);
  ExpectEveryAcknowledgedPushCounted(c, {a, b}, *backup);
}

// The coordinator (shard 0 and the job) is replicated too: its backup takes
// the coordinator's shard and its progress; SIGKILLed mid-job, the
// coordinator is replaced by its backup as the same coordinator incarnation
// (workers and shards find it through their --coordinator lists, or having
// learnt of it from the coordinator): workers go on under their ids and
// leases without registering again, every partition completed before the
// kill stays completed, and every push shard 0 acknowledged is in its model.
TEST_P(FailoverTest, CoordinatorKilledMidJob_BackupTakesOver_NothingAcknowledgedLost) {
  const double undisturbed = UndisturbedAccuracy();
  LocalCluster c("coordinator_failover_" + GetParam().name);
  ASSERT_TRUE(c.StartServer(ServerFlags()).ok());
  absl::StatusOr<int> backup = c.StartCoordinatorBackup(2, {"--debug_replication_delay_ms=2"});
  ASSERT_TRUE(backup.ok()) << backup.status();
  // Worker a is given both coordinator processes; worker b and shard 1 only
  // the coordinator, and learn of its backup from it.
  const std::string coordinators =
      absl::StrCat("--coordinator=", c.address(), ",", c.shard_address(*backup));
  ASSERT_TRUE(c.StartShard(1, 2).ok());
  const int a = *c.StartWorker("a", {"--debug_step_delay_ms=2", coordinators});
  const int b = *c.StartWorker("b", {"--debug_step_delay_ms=2"});
  absl::StatusOr<JobStatus> paired =
      c.WaitFor([](const JobStatus& s) { return s.shards_size() == 2 && s.shards(0).backup_up(); },
                absl::Seconds(30));
  ASSERT_TRUE(paired.ok()) << paired.status() << c.ShardLog(*backup);

  absl::StatusOr<JobStatus> before =
      c.WaitFor([](const JobStatus& s) { return s.epoch() >= 3; }, absl::Seconds(120));
  ASSERT_TRUE(before.ok()) << before.status() << c.ServerLog();
  ASSERT_TRUE(absl::StrContains(c.ServerLog(), "has this shard's state")) << c.ServerLog();
  // Pushes shard 0 acknowledged so far (workers report them per
  // registration, and register only once).
  auto acknowledged_by_shard0 = [](const JobStatus& s) {
    uint64_t sum = 0;
    for (const WorkerStatus& w : s.workers()) {
      if (w.pushes_acknowledged_size() == 2) sum += w.pushes_acknowledged(0);
    }
    return sum;
  };
  absl::StatusOr<JobStatus> last = c.Status();
  ASSERT_TRUE(last.ok());
  c.server().Signal(SIGKILL);
  const uint64_t acknowledged_before = acknowledged_by_shard0(*last);
  EXPECT_GT(acknowledged_before, 500u);
  // What the coordinator had acknowledged when it died (at least).
  const int completed_before = last->completed_size();

  // The old coordinator, started again (same port) with --coordinator_backup
  // naming its backup, finds the backup serving the job and becomes its
  // backup in turn.
  std::vector<std::string> again = ServerFlags();
  again.push_back("--coordinator_backup=" + c.shard_address(*backup));
  ASSERT_TRUE(c.RestartServer(again).ok()) << c.ServerLog();
  absl::StatusOr<JobStatus> paired_again = c.WaitFor(
      [&](const JobStatus& s) {
        return s.shards_size() == 2 && s.shards(0).address() == c.shard_address(*backup) &&
               s.shards(0).backup_address() == c.address() && s.shards(0).backup_up();
      },
      absl::Seconds(60));
  EXPECT_TRUE(paired_again.ok()) << paired_again.status() << c.ServerLog();

  const JobStatus done = c.FinishJob({a, b}, absl::Minutes(2));
  EXPECT_EQ(done.state(), FINISHED) << c.ShardLog(*backup);
  const std::string new_coordinator_log = c.ShardLog(*backup);
  EXPECT_TRUE(absl::StrContains(new_coordinator_log, "this process is the coordinator now"))
      << new_coordinator_log;
  // The same job to the workers: the coordinator's incarnation, the two
  // workers under their first ids, none declared dead (so no lease was
  // taken back), each registered once.
  EXPECT_EQ(done.incarnation(), last->incarnation());
  ASSERT_EQ(done.workers_size(), 2) << new_coordinator_log << c.WorkerLog(a) << c.WorkerLog(b);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(done.workers(i).worker_id(), last->workers(i).worker_id());
    EXPECT_EQ(done.workers(i).name(), last->workers(i).name());
  }
  EXPECT_EQ(done.dead_workers(), 0u) << new_coordinator_log;
  EXPECT_FALSE(absl::StrContains(new_coordinator_log, "declared dead")) << new_coordinator_log;
  for (int worker : {a, b}) {
    const std::string log = c.WorkerLog(worker);
    EXPECT_EQ(CountOccurrences(log, "registered as worker"), 1) << log;
  }
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(done), "");
  for (int i = 0; i < completed_before && i < done.completed_size(); ++i) {
    EXPECT_EQ(done.completed(i).epoch(), before->completed(i).epoch()) << i;
    EXPECT_EQ(done.completed(i).index(), before->completed(i).index()) << i;
  }
  EXPECT_GE(done.last_eval().test_accuracy(), 0.8) << c.ShardLog(*backup);
  EXPECT_NEAR(done.last_eval().test_accuracy(), undisturbed, 0.01) << c.ShardLog(*backup);
  ASSERT_EQ(done.shards_size(), 2);
  EXPECT_EQ(done.shards(0).address(), c.shard_address(*backup));
  // Every push the old coordinator's shard acknowledged, and every one the
  // new one did (the workers count both, under their one registration), is
  // in the new one's counter (carried on from the old one's).
  const uint64_t acknowledged_in_all = acknowledged_by_shard0(done);
  EXPECT_GT(acknowledged_in_all, acknowledged_before);
  EXPECT_GE(uint64_t(done.shards(0).pushes()), acknowledged_in_all) << c.ShardLog(*backup);
}

// A one-shard job has no other shard to ask whether its coordinator is gone
// or only cut off from the backup: the backup takes over once a majority of
// the workers have come to it, their calls to the coordinator failing. Here
// both come: worker a was given the backup's address, worker b learnt it
// from the coordinator. (The partition that must not make it take over:
// tests/network_fault_test, CoordinatorPairPartitionTest.)
TEST(OneShardFailoverTest, CoordinatorKilled_TheBackupTakesOverOnTheWorkersWord) {
  LocalCluster c("coordinator_failover_one_shard");
  ASSERT_TRUE(c.StartServer({"--model=softmax", "--mode=async", "--num_workers=2", "--num_shards=1",
                             "--epochs=5", "--partitions_per_worker=4"})
                  .ok());
  absl::StatusOr<int> backup = c.StartCoordinatorBackup(1, {});
  ASSERT_TRUE(backup.ok()) << backup.status();
  const int a = *c.StartWorker(
      "a", {"--debug_step_delay_ms=2",
            absl::StrCat("--coordinator=", c.address(), ",", c.shard_address(*backup))});
  const int b = *c.StartWorker("b", {"--debug_step_delay_ms=2"});
  absl::StatusOr<JobStatus> before =
      c.WaitFor([](const JobStatus& s) { return s.epoch() >= 2 && s.shards(0).backup_up(); },
                absl::Seconds(120));
  ASSERT_TRUE(before.ok()) << before.status() << c.ServerLog() << c.ShardLog(*backup);

  c.server().Signal(SIGKILL);
  const JobStatus done = c.FinishJob({a, b}, absl::Minutes(2));
  const std::string log = c.ShardLog(*backup);
  EXPECT_EQ(done.state(), FINISHED) << log;
  EXPECT_TRUE(absl::StrContains(log, "this process is the coordinator now")) << log;
  EXPECT_EQ(done.incarnation(), before->incarnation());
  EXPECT_EQ(done.dead_workers(), 0u) << log;
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(done), "");
  EXPECT_GE(done.last_eval().test_accuracy(), 0.8) << log;
}

// The coordinator's backup dies in a one-shard job: its port refuses
// connections, which no cut does, so the coordinator drops it at once
// rather than wait for the workers' word, and the job goes on.
TEST(OneShardFailoverTest, CoordinatorsBackupKilled_DroppedAtOnceTheJobGoesOn) {
  LocalCluster c("coordinator_backup_killed_one_shard");
  ASSERT_TRUE(c.StartServer({"--model=softmax", "--mode=async", "--num_workers=2", "--num_shards=1",
                             "--epochs=4", "--partitions_per_worker=4"})
                  .ok());
  absl::StatusOr<int> backup = c.StartCoordinatorBackup(1, {});
  ASSERT_TRUE(backup.ok()) << backup.status();
  const int a = *c.StartWorker("a", {"--debug_step_delay_ms=2"});
  const int b = *c.StartWorker("b", {"--debug_step_delay_ms=2"});
  ASSERT_TRUE(
      c.WaitFor([](const JobStatus& s) { return s.epoch() >= 1 && s.shards(0).backup_up(); },
                absl::Seconds(120))
          .ok())
      << c.ServerLog() << c.ShardLog(*backup);

  c.shard(*backup).Signal(SIGKILL);
  EXPECT_TRUE(WaitUntil([&] { return absl::StrContains(c.ServerLog(), "goes on alone"); },
                        absl::Seconds(5), absl::Milliseconds(100)))
      << c.ServerLog();
  EXPECT_FALSE(absl::StrContains(c.ServerLog(), "cannot drop the backup yet")) << c.ServerLog();
  const JobStatus done = c.FinishJob({a, b}, absl::Minutes(2));
  EXPECT_EQ(done.state(), FINISHED) << c.ServerLog();
  EXPECT_EQ(done.dead_workers(), 0u) << c.ServerLog();
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(done), "");
  EXPECT_GE(done.last_eval().test_accuracy(), 0.8) << c.ServerLog();
}

// The backup dies: the primary drops it (with the coordinator's consent) and
// answers pushes alone; a new backup joins the running job and catches up;
// then the primary dies and that backup takes over, found by workers that
// registered before it existed.
TEST(BackupLossTest, BackupKilled_PrimaryGoesOnAlone_ANewBackupJoinsAndTakesOver) {
  LocalCluster c("failover_backup_killed");
  ASSERT_TRUE(c.StartServer({"--model=softmax", "--mode=async", "--num_workers=2", "--num_shards=2",
                             "--epochs=6", "--partitions_per_worker=4"})
                  .ok());
  ASSERT_TRUE(c.StartShard(1, 2).ok());
  absl::StatusOr<int> first = c.StartBackup(1, 2);
  ASSERT_TRUE(first.ok()) << first.status();
  auto has_backup = [](const JobStatus& s) {
    return s.shards_size() == 2 && s.shards(1).backup_up();
  };
  ASSERT_TRUE(c.WaitFor(has_backup, absl::Seconds(30)).ok()) << c.ShardLog(*first);
  const int a = *c.StartWorker("a", {"--debug_step_delay_ms=2"});
  const int b = *c.StartWorker("b", {"--debug_step_delay_ms=2"});
  ASSERT_TRUE(
      c.WaitFor([](const JobStatus& s) { return s.epoch() >= 1; }, absl::Seconds(120)).ok());

  c.shard(*first).Signal(SIGKILL);
  // Dropped as soon as a push finds it gone; the shard is not down meanwhile.
  for (int i = 0; i < 100 && !absl::StrContains(c.ServerLog(), "goes on alone"); ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(absl::StrContains(c.ServerLog(), "goes on alone")) << c.ServerLog();
  absl::StatusOr<JobStatus> alone = c.WaitFor(
      [](const JobStatus& s) {
        return s.shards_size() == 2 && s.shards(1).backup_address().empty();
      },
      absl::Seconds(15));
  ASSERT_TRUE(alone.ok()) << alone.status();
  const int64_t pushes_alone = alone->shards(1).pushes();
  ASSERT_TRUE(c.WaitFor(
                   [&](const JobStatus& s) {
                     return s.shards_size() == 2 && s.shards(1).pushes() > pushes_alone + 100;
                   },
                   absl::Seconds(30))
                  .ok())
      << "shard 1 took no pushes without its backup\n"
      << c.ShardLog(1);

  // A new backup (in the dead one's slot) joins and takes the state.
  absl::StatusOr<int> second = c.StartBackup(1, 2);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(c.WaitFor(has_backup, absl::Seconds(30)).ok()) << c.ShardLog(*second);
  for (int i = 0; i < 100 && !absl::StrContains(c.ShardLog(*second), "took the primary's state");
       ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(absl::StrContains(c.ShardLog(*second), "took the primary's state"))
      << c.ShardLog(*second);
  // Workers hear of it with their heartbeats; then the primary dies.
  absl::SleepFor(absl::Seconds(2));
  c.shard(1).Signal(SIGKILL);

  const JobStatus done = c.FinishJob({a, b}, absl::Minutes(2));
  EXPECT_EQ(done.state(), FINISHED) << c.ServerLog() << c.ShardLog(*second);
  EXPECT_EQ(CheckEachPartitionOncePerEpoch(done), "");
  ASSERT_EQ(done.shards_size(), 2);
  EXPECT_EQ(done.shards(1).failovers(), 1u);
  EXPECT_EQ(done.shards(1).address(), c.shard_address(*second));
  ExpectEveryAcknowledgedPushCounted(c, {a, b}, *second);
}

INSTANTIATE_TEST_SUITE_P(Modes, FailoverTest,
                         ::testing::Values(ModeCase{"sync", {"--mode=sync"}},
                                           ModeCase{"async", {"--mode=async"}},
                                           ModeCase{"ssp", {"--mode=ssp:2"}}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace fulcrum
