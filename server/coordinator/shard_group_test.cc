#include "server/coordinator/shard_group.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "server/checkpoint/job_checkpointer.h"
#include "server/store/optimizer.h"

namespace fulcrum {
namespace {

// A shard process that records what the coordinator tells it.
class FakeShard : public RemoteShard {
 public:
  absl::StatusOr<uint64_t> SetMembership(const WorkerMembership& membership,
                                         absl::Duration) override {
    if (down) return absl::UnavailableError("connection refused");
    absl::MutexLock lock(&mu_);
    received_.push_back(membership);
    return membership.version;
  }
  absl::StatusOr<CheckpointManifest::ShardFile> WriteCheckpoint(uint64_t sequence, uint64_t,
                                                                absl::Duration) override {
    if (fail_writes) return absl::DataLossError("disk on fire");
    CheckpointManifest::ShardFile file;
    file.set_shard_index(1);
    file.set_file(absl::StrCat("part-", sequence));
    return file;
  }
  std::vector<WorkerMembership> received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  bool fail_writes = false;
  std::atomic<bool> down{false};  // the process is dead: calls fail

 private:
  absl::Mutex mu_;
  std::vector<WorkerMembership> received_;
};

// A primary that answers until it is sent a membership admitting `worker`:
// it takes that one and dies before answering, and every later call fails.
// Restart() lets that call return, acknowledged, and puts a new process
// behind the same connection (a restart at the same address), which takes
// and records what it is sent.
class DyingShard : public RemoteShard {
 public:
  explicit DyingShard(WorkerIdentity worker) : worker_(worker) {}
  absl::StatusOr<uint64_t> SetMembership(const WorkerMembership& membership,
                                         absl::Duration) override {
    absl::MutexLock lock(&mu_);
    if (restarted_) {
      received_after_restart_.push_back(membership);
      return membership.version;
    }
    if (dead_) return absl::UnavailableError("connection refused");
    if (!membership.Admits(worker_)) return membership.version;
    dead_ = true;
    mu_.Await(absl::Condition(&restarted_));
    return membership.version;  // the old process's acknowledgement
  }
  absl::StatusOr<CheckpointManifest::ShardFile> WriteCheckpoint(uint64_t, uint64_t,
                                                                absl::Duration) override {
    return absl::UnavailableError("connection refused");
  }
  bool dead() {
    absl::MutexLock lock(&mu_);
    return dead_;
  }
  void Restart() {
    absl::MutexLock lock(&mu_);
    restarted_ = true;
  }
  std::vector<WorkerMembership> received_after_restart() {
    absl::MutexLock lock(&mu_);
    return received_after_restart_;
  }

 private:
  const WorkerIdentity worker_;
  absl::Mutex mu_;
  bool dead_ = false;
  bool restarted_ = false;
  std::vector<WorkerMembership> received_after_restart_;
};

class ShardGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TensorSpec t;
    t.set_name("t");
    t.add_shape(4);
    OptimizerConfig sgd;
    sgd.set_kind(SGD);
    auto store = ParameterStore::Create({}, *CreateOptimizer(sgd), {t});
    ASSERT_TRUE(store.ok());
    local_ = std::make_unique<ParameterShard>(std::move(*store), ASYNC);
    ShardGroupOptions options;
    options.num_shards = 2;
    options.incarnation = 7;
    options.connect = [this](const std::string& address) -> std::shared_ptr<RemoteShard> {
      dialled_.push_back(address);
      if (auto it = by_address_.find(address); it != by_address_.end()) return it->second;
      return fake_;
    };
    options.coordinator_backup = [this](const std::string& address, uint64_t process) {
      coordinator_backups_.push_back({address, process});
    };
    group_ = std::make_unique<ShardGroup>(options, local_.get());
  }

  absl::Status Register(uint64_t incarnation, bool ready = true) {
    return Report(incarnation, ready, /*backup=*/false, "shard1:50051").status();
  }

  // A shard process's registration (ready false) or report, as process
  // `process`; a promoted backup serves under `serving` (0: its own).
  absl::StatusOr<RegisterShardResponse> Report(uint64_t process, bool ready, bool backup,
                                               const std::string& address, uint64_t serving = 0,
                                               uint32_t index = 1) {
    RegisterShardRequest request;
    request.set_shard_index(index);
    request.set_num_shards(2);
    request.set_address(address);
    request.set_incarnation(serving != 0 ? serving : process);
    request.set_process_incarnation(process);
    request.set_ready(ready);
    request.set_backup(backup);
    return group_->RegisterShard(request);
  }

  absl::Status Promote(uint64_t process, const std::string& address) {
    PromoteBackupRequest request;
    request.set_shard_index(1);
    request.set_process_incarnation(process);
    request.set_address(address);
    return group_->PromoteBackup(request);
  }

  absl::Status Drop(uint64_t primary, uint64_t backup) {
    DropBackupRequest request;
    request.set_shard_index(1);
    request.set_process_incarnation(primary);
    request.set_backup_process_incarnation(backup);
    return group_->DropBackup(request);
  }

  // Admits worker 5, whose membership `primary` dies answering.
  void AdmitWorkerKilling(DyingShard* primary) {
    group_->AdmitWorker(5);
    for (int i = 0; i < 500 && !primary->dead(); ++i) absl::SleepFor(absl::Milliseconds(10));
    ASSERT_TRUE(primary->dead());
  }

  // A second process for shard 0: the coordinator's backup.
  absl::StatusOr<RegisterShardResponse> CoordinatorBackup(uint64_t process, bool ready,
                                                          const std::string& address) {
    return Report(process, ready, /*backup=*/ready, address, 0, /*index=*/0);
  }

  std::shared_ptr<FakeShard> fake_ = std::make_shared<FakeShard>();
  // Connections to these addresses get these shards instead of fake_.
  std::map<std::string, std::shared_ptr<RemoteShard>> by_address_;
  std::vector<std::string> dialled_;
  std::vector<std::pair<std::string, uint64_t>> coordinator_backups_;
  std::unique_ptr<ParameterShard> local_;
  std::unique_ptr<ShardGroup> group_;
};

TEST_F(ShardGroupTest, MembershipReachesTheRemoteShardAndIsAcknowledged) {
  EXPECT_EQ(group_->CheckAllReady().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(Register(100).ok());
  EXPECT_TRUE(group_->CheckAllReady().ok());
  EXPECT_EQ(dialled_, std::vector<std::string>{"shard1:50051"});
  group_->AdmitWorker(5);
  group_->ActivateWorker(5, 3);
  ASSERT_TRUE(group_->AwaitAcknowledged(absl::Seconds(30)).ok());
  const std::vector<WorkerMembership> received = fake_->received();
  ASSERT_FALSE(received.empty());
  const WorkerMembership& last = received.back();
  EXPECT_EQ(last.coordinator_incarnation, 7u);
  EXPECT_TRUE(last.Admits(WorkerIdentity{5, 7}));
  EXPECT_EQ(last.active.at(5), 3);
  EXPECT_EQ(group_->SlowestActiveClock(), 3);
  // The local shard has the same membership: once the job starts it takes
  // pushes from worker 5 of this coordinator, and no other.
  EXPECT_FALSE(local_->ReadyFor(WorkerIdentity{5, 7}, /*push=*/true, -1));
  group_->Start();
  EXPECT_TRUE(local_->ReadyFor(WorkerIdentity{5, 7}, /*push=*/true, -1));
  EXPECT_FALSE(local_->ReadyFor(WorkerIdentity{5, 6}, /*push=*/true, -1));
  EXPECT_FALSE(local_->ReadyFor(WorkerIdentity{4, 7}, /*push=*/false, -1));
}

TEST_F(ShardGroupTest, RestartedShard_GetsTheMembershipAgain) {
  ASSERT_TRUE(Register(100).ok());
  group_->AdmitWorker(5);
  ASSERT_TRUE(group_->AwaitAcknowledged(absl::Seconds(30)).ok());
  const size_t before = fake_->received().size();
  // A new process at the same address, the old one dead: it is the primary.
  fake_->down = true;
  absl::StatusOr<RegisterShardResponse> joined = Report(101, /*ready=*/false, false, "");
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->role(), PRIMARY);
  fake_->down = false;
  ASSERT_TRUE(Register(101).ok());
  ASSERT_TRUE(group_->AwaitAcknowledged(absl::Seconds(30)).ok());
  EXPECT_GT(fake_->received().size(), before);
}

// The flaky hang in tests/sharding_test: a restarted shard's first
// registration (before it serves, with no address) listed the shard at "",
// which workers take for the coordinator's address; back at its address
// they had forgotten its incarnation and never heard it restarted.
TEST_F(ShardGroupTest, RestartedShard_RegisteringWithoutAnAddress_KeepsItsAddressListed) {
  ASSERT_TRUE(Register(100).ok());
  EXPECT_EQ(group_->WorkerAddresses(), (std::vector<std::string>{"", "shard1:50051"}));
  fake_->down = true;  // the old process died
  absl::StatusOr<RegisterShardResponse> joined = Report(101, /*ready=*/false, false, "");
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->role(), PRIMARY);
  EXPECT_EQ(group_->WorkerAddresses(), (std::vector<std::string>{"", "shard1:50051"}));
  EXPECT_EQ(group_->Status()[1].address(), "shard1:50051");
}

TEST_F(ShardGroupTest,
       CoordinatorBackup_RegistersAndIsFollowed_AThirdIsRefused_ADroppedOneJoinsAgain) {
  ASSERT_TRUE(Register(100).ok());
  group_->NameCoordinator("coordinator:50051", /*now=*/false);
  // Not replicated yet: workers use the address they registered at.
  EXPECT_EQ(group_->WorkerAddresses(), (std::vector<std::string>{"", "shard1:50051"}));

  // Its first registration (before it serves) has no address to follow.
  absl::StatusOr<RegisterShardResponse> joined = CoordinatorBackup(500, false, "");
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->role(), BACKUP);
  EXPECT_TRUE(coordinator_backups_.empty());
  ASSERT_TRUE(CoordinatorBackup(500, true, "backup0:50051").ok());
  ASSERT_EQ(coordinator_backups_.size(), 1u);
  EXPECT_EQ(coordinator_backups_[0], std::make_pair(std::string("backup0:50051"), uint64_t{500}));
  // Replicated: workers are told both of the coordinator's processes, and
  // the other shards where the coordinator's processes are.
  EXPECT_EQ(group_->WorkerAddresses(),
            (std::vector<std::string>{"coordinator:50051", "shard1:50051"}));
  EXPECT_EQ(group_->BackupAddresses(), (std::vector<std::string>{"backup0:50051", ""}));
  absl::StatusOr<RegisterShardResponse> shard = Report(100, true, false, "shard1:50051");
  ASSERT_TRUE(shard.ok());
  EXPECT_EQ(std::vector<std::string>(shard->coordinator_addresses().begin(),
                                     shard->coordinator_addresses().end()),
            (std::vector<std::string>{"coordinator:50051", "backup0:50051"}));
  EXPECT_EQ(group_->Status()[0].backup_address(), "backup0:50051");
  EXPECT_TRUE(group_->Status()[0].backup_up());

  // One backup at a time.
  EXPECT_EQ(CoordinatorBackup(600, false, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  // The coordinator's replicator cannot reach it: dropped (always agreed).
  DropBackupRequest drop;
  drop.set_shard_index(0);
  drop.set_backup_process_incarnation(500);
  ASSERT_TRUE(group_->DropBackup(drop).ok());
  EXPECT_EQ(coordinator_backups_.back(), std::make_pair(std::string(""), uint64_t{0}));
  EXPECT_EQ(group_->BackupAddresses(), (std::vector<std::string>{"", ""}));
  // Its next report is refused (its state is stale); it registers again.
  EXPECT_EQ(CoordinatorBackup(500, true, "backup0:50051").status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(CoordinatorBackup(500, false, "").ok());
  ASSERT_TRUE(CoordinatorBackup(500, true, "backup0:50051").ok());
  EXPECT_EQ(coordinator_backups_.back(),
            std::make_pair(std::string("backup0:50051"), uint64_t{500}));
}

TEST_F(ShardGroupTest, SecondProcessOfALiveShard_IsItsBackup_AThirdIsRefused) {
  ASSERT_TRUE(Register(100).ok());
  absl::StatusOr<RegisterShardResponse> joined = Report(200, /*ready=*/false, false, "");
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->role(), BACKUP);
  ASSERT_TRUE(Report(200, /*ready=*/true, /*backup=*/true, "backup1:50051").ok());
  // The primary hears where its backup is; workers where both are.
  absl::StatusOr<RegisterShardResponse> primary = Report(100, true, false, "shard1:50051");
  ASSERT_TRUE(primary.ok());
  EXPECT_EQ(primary->backup_address(), "backup1:50051");
  EXPECT_EQ(primary->backup_process_incarnation(), 200u);
  EXPECT_EQ(group_->WorkerAddresses(), (std::vector<std::string>{"", "shard1:50051"}));
  EXPECT_EQ(group_->BackupAddresses(), (std::vector<std::string>{"", "backup1:50051"}));
  EXPECT_TRUE(group_->Status()[1].backup_up());
  absl::StatusOr<RegisterShardResponse> third = Report(300, false, false, "");
  EXPECT_EQ(third.status().code(), absl::StatusCode::kFailedPrecondition) << third.status();
  // A replaced primary can only come back as a backup: no live primary, none.
  fake_->down = true;
  third = Report(300, false, /*backup=*/true, "");
  EXPECT_EQ(third.status().code(), absl::StatusCode::kUnavailable) << third.status();
}

// The coordinator's backup takes over knowing the shards' pairs: shard 1's
// backup reporting to it goes on as the backup (unknown, it would be
// refused and join again, unreplicated until its primary sent it a
// snapshot), and the primary hears of it.
TEST_F(ShardGroupTest, PairsTakenOver_TheShardsBackupGoesOnAsTheBackup) {
  ASSERT_TRUE(Register(100).ok());
  ASSERT_TRUE(Report(200, /*ready=*/false, false, "").ok());
  ASSERT_TRUE(Report(200, /*ready=*/true, /*backup=*/true, "backup1:50051").ok());
  const std::vector<ShardPair> pairs = group_->Pairs();
  ASSERT_EQ(pairs.size(), 1u);
  EXPECT_EQ(pairs[0].index(), 1u);
  EXPECT_EQ(pairs[0].primary_address(), "shard1:50051");
  EXPECT_EQ(pairs[0].primary_process_incarnation(), 100u);
  EXPECT_EQ(pairs[0].backup_address(), "backup1:50051");
  EXPECT_EQ(pairs[0].backup_process_incarnation(), 200u);

  ShardGroupOptions options;
  options.num_shards = 2;
  options.incarnation = 7;
  options.connect = [this](const std::string&) -> std::shared_ptr<RemoteShard> { return fake_; };
  // A coordinator that did not take the pairs over refuses the backup once
  // the primary has reported.
  group_ = std::make_unique<ShardGroup>(options, local_.get());
  ASSERT_TRUE(Report(100, true, false, "shard1:50051").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(
      Report(200, /*ready=*/true, /*backup=*/true, "backup1:50051").status()));
  group_ = std::make_unique<ShardGroup>(options, local_.get());
  group_->TakeOverPairs(pairs);
  EXPECT_EQ(group_->OtherShardAddresses(),
            (std::vector<std::string>{"shard1:50051", "backup1:50051"}));
  ASSERT_TRUE(Report(200, /*ready=*/true, /*backup=*/true, "backup1:50051").ok());
  absl::StatusOr<RegisterShardResponse> primary = Report(100, true, false, "shard1:50051");
  ASSERT_TRUE(primary.ok()) << primary.status();
  EXPECT_EQ(primary->backup_address(), "backup1:50051");
  EXPECT_EQ(primary->backup_process_incarnation(), 200u);
  // Another process claiming to be the primary is not.
  EXPECT_TRUE(absl::IsFailedPrecondition(Report(300, true, false, "other:50051").status()));
}

TEST_F(ShardGroupTest, Promotion_OnlyOfTheBackupOfADeadPrimary_ThenTheOldPrimaryIsRefused) {
  ASSERT_TRUE(Register(100).ok());
  ASSERT_TRUE(Report(200, false, false, "").ok());
  ASSERT_TRUE(Report(200, true, true, "backup1:50051").ok());
  // The primary answers: it stays; and only the backup may ask.
  EXPECT_EQ(Promote(200, "backup1:50051").code(), absl::StatusCode::kFailedPrecondition);
  fake_->down = true;
  EXPECT_EQ(Promote(999, "backup1:50051").code(), absl::StatusCode::kFailedPrecondition);
  // A new process for the shard meanwhile waits for the takeover.
  EXPECT_EQ(Report(300, false, false, "").status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(Promote(200, "backup1:50051").ok());
  // The new primary does not answer yet (a new connection, operations still
  // applied): a process starting now waits instead of taking its place
  // with an older checkpoint (the Compose test's restart policy did).
  absl::StatusOr<RegisterShardResponse> early = Report(300, false, false, "");
  EXPECT_EQ(early.status().code(), absl::StatusCode::kUnavailable) << early.status();
  fake_->down = false;
  const std::vector<ShardStatus> status = group_->Status();
  EXPECT_EQ(status[1].address(), "backup1:50051");
  EXPECT_EQ(status[1].failovers(), 1u);
  EXPECT_EQ(status[1].backup_address(), "");
  EXPECT_EQ(group_->WorkerAddresses(), (std::vector<std::string>{"", "backup1:50051"}));
  EXPECT_EQ(dialled_.back(), "backup1:50051");  // membership goes to the new primary
  // It reports as the primary now, under the incarnation workers know.
  EXPECT_TRUE(Report(200, true, false, "backup1:50051", /*serving=*/100).ok());
  // The old primary, were it alive, is told it was replaced, and may not
  // drop "its" backup.
  EXPECT_EQ(Register(100).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Drop(100, 200).code(), absl::StatusCode::kFailedPrecondition);
}

// A membership send to a primary that acknowledged it and then died returns
// after its backup took over: that acknowledgement is not the new primary's,
// which must still be sent the membership (the workers it admits would
// otherwise wait for ever at the new primary).
TEST_F(ShardGroupTest, AckOfTheDeadPrimary_DoesNotCountForThePromotedBackup) {
  auto dying = std::make_shared<DyingShard>(WorkerIdentity{5, 7});
  by_address_["shard1:50051"] = dying;
  ASSERT_TRUE(Register(100).ok());
  ASSERT_TRUE(Report(200, false, false, "").ok());
  ASSERT_TRUE(Report(200, true, true, "backup1:50051").ok());
  ASSERT_NO_FATAL_FAILURE(AdmitWorkerKilling(dying.get()));
  ASSERT_TRUE(Promote(200, "backup1:50051").ok());
  dying->Restart();  // the old send comes back acknowledged
  ASSERT_TRUE(group_->AwaitAcknowledged(absl::Seconds(30)).ok());
  const std::vector<WorkerMembership> received = fake_->received();
  ASSERT_FALSE(received.empty());
  EXPECT_TRUE(received.back().Admits(WorkerIdentity{5, 7}));
}

// The same with a restart at the same address: the connection stays, the
// process behind it is new.
TEST_F(ShardGroupTest, AckOfTheDeadPrimary_DoesNotCountForItsRestart) {
  auto dying = std::make_shared<DyingShard>(WorkerIdentity{5, 7});
  by_address_["shard1:50051"] = dying;
  ASSERT_TRUE(Register(100).ok());
  ASSERT_NO_FATAL_FAILURE(AdmitWorkerKilling(dying.get()));
  absl::StatusOr<RegisterShardResponse> joined = Report(101, /*ready=*/false, false, "");
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->role(), PRIMARY);
  ASSERT_TRUE(Register(101).ok());
  dying->Restart();  // the old send comes back acknowledged
  ASSERT_TRUE(group_->AwaitAcknowledged(absl::Seconds(30)).ok());
  const std::vector<WorkerMembership> received = dying->received_after_restart();
  ASSERT_FALSE(received.empty());
  EXPECT_TRUE(received.back().Admits(WorkerIdentity{5, 7}));
}

TEST_F(ShardGroupTest, DroppedBackup_IsRefusedAndMayJoinAgain) {
  ASSERT_TRUE(Register(100).ok());
  ASSERT_TRUE(Report(200, false, false, "").ok());
  ASSERT_TRUE(Report(200, true, true, "backup1:50051").ok());
  ASSERT_TRUE(Drop(100, 200).ok());
  EXPECT_EQ(group_->BackupAddresses(), (std::vector<std::string>{"", ""}));
  EXPECT_EQ(Report(200, true, true, "backup1:50051").status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A dropped backup cannot take over.
  fake_->down = true;
  EXPECT_EQ(Promote(200, "backup1:50051").code(), absl::StatusCode::kFailedPrecondition);
  fake_->down = false;
  absl::StatusOr<RegisterShardResponse> again = Report(200, false, true, "");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->role(), BACKUP);
}

TEST_F(ShardGroupTest, CheckpointParts_WrittenByEveryShardOrTheErrorNamesIt) {
  EXPECT_EQ(group_->ReadyRemotes().status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(Register(100).ok());
  absl::StatusOr<std::vector<std::shared_ptr<RemoteShard>>> remotes = group_->ReadyRemotes();
  ASSERT_TRUE(remotes.ok()) << remotes.status();
  ASSERT_EQ(remotes->size(), 2u);
  EXPECT_EQ((*remotes)[0], nullptr);  // the coordinator's own shard
  absl::StatusOr<std::vector<CheckpointManifest::ShardFile>> files =
      WriteRemoteParts(*remotes, 4, 0, absl::Seconds(1));
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*files)[1].file(), "part-4");
  fake_->fail_writes = true;
  absl::Status failed = WriteRemoteParts(*remotes, 5, 0, absl::Seconds(1)).status();
  EXPECT_EQ(failed.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(failed.message().find("shard 1"), std::string::npos) << failed;
}

}  // namespace
}  // namespace fulcrum
