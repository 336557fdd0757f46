// ServingModel against checkpoint folders written as a training job writes
// them: a whole checkpoint, deltas after it, a corrupt one, bad lookups.
#include "server/serving/serving_model.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/checkpoint/checkpoint.h"
#include "server/checkpoint/shard_part_writer.h"

namespace fulcrum {
namespace {

std::string FreshDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp ? tmp : "/tmp", "/", name);
  PosixFileSystem()->DeleteRecursively(dir).IgnoreError();
  return dir;
}

// A training shard (dense "d" of 3, table "emb" of dim 2 with Adagrad and
// LRU eviction past 8 rows) writing its checkpoints into a folder.
class ServingModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    job_.set_model("test");
    job_.set_seed(5);
    TensorSpec* d = job_.add_tensors();
    d->set_name("d");
    d->add_shape(3);
    SparseTableSpec* emb = job_.add_sparse_tables();
    emb->set_name("emb");
    emb->set_dim(2);
    emb->set_initializer(UNIFORM);
    emb->set_scale(0.5f);
    OptimizerConfig config;
    config.set_kind(ADAGRAD);
    config.set_learning_rate(0.1f);
    auto store = ParameterStore::Create({}, *CreateOptimizer(config), {*d});
    SparseTableOptions options;
    options.name = "emb";
    options.dim = 2;
    options.initializer = UNIFORM;
    options.scale = 0.5f;
    options.seed = 5;
    options.max_rows = 8;
    options.eviction.set_when_full(FeatureEviction::LEAST_RECENTLY_UPDATED);
    std::vector<std::unique_ptr<SparseTable>> tables;
    tables.push_back(*SparseTable::Create(options, *CreateOptimizer(config)));
    shard_ = std::make_unique<ParameterShard>(std::move(*store), ASYNC, 0, std::move(tables));
    WorkerMembership m;
    m.coordinator_incarnation = 1;
    m.version = 1;
    m.started = true;
    m.Admit(1);
    m.Activate(1, 0);
    shard_->ApplyMembership(m);
    store_ = std::make_unique<CheckpointStore>(CheckpointStoreOptions{dir_, 10, nullptr});
    writer_ = std::make_unique<ShardPartWriter>(shard_.get(), store_.get(), 0, 1);
  }

  void Push(std::vector<uint64_t> keys) {
    std::vector<float> values(keys.size() * 2, 1.0f);
    std::vector<float> dense = {1, 2, 3};
    std::vector<SliceGradient> g = {{SliceRef{"d", 0, 3}, dense}};
    std::vector<SparseGradient> sparse = {{"emb", keys, values}};
    ASSERT_TRUE(shard_->Push(WorkerIdentity{1, 1}, 0, 0, g, sparse).ok());
    ASSERT_TRUE(shard_->EvictNow().ok());  // the evictor's pass, now
  }
  // Checkpoint `sequence` (a delta on `delta_of`, 0: whole), committed.
  void Checkpoint(uint64_t sequence, uint64_t delta_of) {
    absl::StatusOr<CheckpointManifest::ShardFile> file =
        CommitOneShardCheckpoint(*store_, *writer_, sequence, delta_of, job_);
    ASSERT_TRUE(file.ok()) << file.status();
  }
  // The training shard's values of `keys` (initial values for ids without
  // a row) and the serving model's.
  std::vector<float> Trained(std::vector<uint64_t> keys) {
    std::vector<float> out(keys.size() * 2);
    EXPECT_TRUE(shard_->sparse_table("emb")->Pull(keys, absl::MakeSpan(out), false).ok());
    return out;
  }
  std::vector<float> Served(ServingModel& model, std::vector<uint64_t> keys,
                            std::vector<bool>* found = nullptr) {
    std::vector<float> rows;
    std::vector<bool> has;
    uint64_t checkpoint = 0;
    absl::Status s = model.Lookup("emb", keys, 2, &rows, found ? found : &has, &checkpoint);
    EXPECT_TRUE(s.ok()) << s;
    return rows;
  }

  std::string dir_;
  JobSpec job_;
  std::unique_ptr<ParameterShard> shard_;
  std::unique_ptr<CheckpointStore> store_;
  std::unique_ptr<ShardPartWriter> writer_;
};

TEST_F(ServingModelTest, FollowsAWholeCheckpointThenItsDeltas_AnsweringAsTheTrainerHoldsThem) {
  ServingModel model(ServingModelOptions{{dir_}});
  std::vector<float> rows;
  std::vector<bool> found;
  uint64_t served = 0;
  EXPECT_EQ(model.Follow().status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(model.Lookup("emb", {1}, 2, &rows, &found, &served).code(),
            absl::StatusCode::kUnavailable);

  Push({1, 2, 3});
  Checkpoint(1, 0);
  ASSERT_TRUE(*model.Follow());
  EXPECT_FALSE(*model.Follow());  // nothing newer
  const std::vector<uint64_t> ids = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  EXPECT_EQ(Served(model, ids, &found), Trained(ids));
  EXPECT_EQ(found, (std::vector<bool>{true, true, true, false, false, false, false, false, false,
                                      false, false, false}));
  // Two deltas: rows changed, new ids, and evictions past 8 rows.
  Push({1, 4, 5, 6, 7});
  Checkpoint(2, 1);
  Push({8, 9, 10, 11, 12});
  Checkpoint(3, 2);
  EXPECT_GT(shard_->sparse_table("emb")->counters().evicted, 0u);
  ASSERT_TRUE(*model.Follow());  // jumps to 3: whole, with its chain
  EXPECT_EQ(Served(model, ids), Trained(ids));
  Push({2, 3});
  Checkpoint(4, 3);
  ASSERT_TRUE(*model.Follow());  // 4 continues 3: applied in place
  EXPECT_EQ(Served(model, ids), Trained(ids));
  const ServingStatus status = model.Status();
  EXPECT_EQ(status.checkpoint(), 4u);
  EXPECT_EQ(status.deltas_applied(), 1u);
  EXPECT_EQ(status.whole_loads(), 2u);
  ASSERT_EQ(status.tables_size(), 1);
  EXPECT_EQ(status.tables(0).rows(), shard_->sparse_table("emb")->rows());
  ReadTensorsResponse tensors;
  ASSERT_TRUE(model.ReadTensors({"d"}, &tensors).ok());
  std::vector<float> dense(3);
  ASSERT_TRUE(shard_->store().Read(SliceRef{"d", 0, 3}, absl::MakeSpan(dense)).ok());
  ASSERT_EQ(tensors.tensors_size(), 1);
  EXPECT_EQ(tensors.tensors(0).values(),
            std::string(reinterpret_cast<const char*>(dense.data()), 12));
}

TEST_F(ServingModelTest, CorruptDelta_KeepsServingTheLastGoodOneAndSaysWhy) {
  ServingModel model(ServingModelOptions{{dir_}});
  Push({1, 2});
  Checkpoint(1, 0);
  ASSERT_TRUE(*model.Follow());
  const std::vector<float> before = Served(model, {1, 2});
  Push({1});
  Checkpoint(2, 1);
  const std::string part = dir_ + "/ckpt-000000002/shard-00000-of-00001";
  std::string bytes = *PosixFileSystem()->ReadFile(part);
  bytes[bytes.size() - 20] ^= 0x10;
  {
    std::unique_ptr<WritableFile> f = *PosixFileSystem()->NewWritableFile(part);
    ASSERT_TRUE(f->Append(bytes).ok());
    ASSERT_TRUE(f->Close().ok());
  }
  EXPECT_EQ(model.Follow().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(*model.Follow());  // not retried until a newer one
  EXPECT_EQ(model.checkpoint(), 1u);
  EXPECT_EQ(Served(model, {1, 2}), before);
  EXPECT_NE(model.Status().last_error().find("checksum"), std::string::npos)
      << model.Status().last_error();
}

TEST_F(ServingModelTest, BadLookups_ClearStatusesNothingAnswered) {
  ServingModel model(ServingModelOptions{{dir_}});
  Push({1});
  Checkpoint(1, 0);
  ASSERT_TRUE(*model.Follow());
  std::vector<float> rows;
  std::vector<bool> found;
  uint64_t served = 0;
  absl::Status s = model.Lookup("user", {1}, 2, &rows, &found, &served);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("the model has: emb"), std::string::npos) << s;
  s = model.Lookup("emb", {1}, 8, &rows, &found, &served);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("2 floats, not 8"), std::string::npos) << s;
  ReadTensorsResponse tensors;
  EXPECT_EQ(model.ReadTensors({"nope"}, &tensors).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace fulcrum
