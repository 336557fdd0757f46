#include "server/shard_group.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "server/optimizer.h"

namespace fulcrum {
namespace {

// A shard process that records what the coordinator tells it.
class FakeShard : public RemoteShard {
 public:
  absl::StatusOr<uint64_t> SetMembership(const WorkerMembership& membership,
                                         absl::Duration) override {
    absl::MutexLock lock(&mu_);
    received_.push_back(membership);
    return membership.version;
  }
  absl::StatusOr<CheckpointManifest::ShardFile> WriteCheckpoint(uint64_t sequence,
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

 private:
  absl::Mutex mu_;
  std::vector<WorkerMembership> received_;
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
      return fake_;
    };
    group_ = std::make_unique<ShardGroup>(options, local_.get());
  }

  absl::Status Register(uint64_t incarnation, bool ready = true) {
    RegisterShardRequest request;
    request.set_shard_index(1);
    request.set_num_shards(2);
    request.set_address("shard1:50051");
    request.set_incarnation(incarnation);
    request.set_ready(ready);
    return group_->RegisterShard(request).status();
  }

  std::shared_ptr<FakeShard> fake_ = std::make_shared<FakeShard>();
  std::vector<std::string> dialled_;
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
  ASSERT_TRUE(Register(101).ok());  // a new process at the same address
  ASSERT_TRUE(group_->AwaitAcknowledged(absl::Seconds(30)).ok());
  EXPECT_GT(fake_->received().size(), before);
}

TEST_F(ShardGroupTest, CheckpointParts_WrittenByEveryShardOrTheErrorNamesIt) {
  EXPECT_EQ(group_->WriteRemoteParts(1).status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(Register(100).ok());
  absl::StatusOr<std::vector<CheckpointManifest::ShardFile>> files = group_->WriteRemoteParts(4);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*files)[1].file(), "part-4");
  fake_->fail_writes = true;
  absl::Status failed = group_->WriteRemoteParts(5).status();
  EXPECT_EQ(failed.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(failed.message().find("shard 1"), std::string::npos) << failed;
}

}  // namespace
}  // namespace fulcrum
