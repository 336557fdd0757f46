// A primary ParameterShard replicating through its ReplicationLog to a backup
// ParameterShard, in one process: the backup ends with the primary's state,
// a push is answered only once the backup has it, and the states around a
// takeover (detached, stepped down, promoted).
#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "grpcpp/server_context.h"
#include "gtest/gtest.h"
#include "server/replication/replication_log.h"
#include "server/rpc/grpc_services.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {
namespace {

constexpr uint64_t kCoordinator = 77;
constexpr uint64_t kA = 1;
constexpr uint64_t kB = 2;

// Tensor "t" of 4 elements (stripes of 2) with momentum, so optimizer slots
// must be replicated too.
std::unique_ptr<ParameterStore> MakeStore() {
  TensorSpec spec;
  spec.set_name("t");
  spec.add_shape(4);
  OptimizerConfig config;
  config.set_kind(MOMENTUM);
  config.set_learning_rate(0.5f);
  config.set_momentum(0.9f);
  ParameterStoreOptions options;
  options.stripe_elements = 2;
  auto store = ParameterStore::Create(options, *CreateOptimizer(config), {spec});
  EXPECT_TRUE(store.ok()) << store.status();
  return std::move(*store);
}

WorkerMembership Members(uint64_t version, std::vector<uint64_t> active) {
  WorkerMembership m;
  m.coordinator_incarnation = kCoordinator;
  m.version = version;
  m.started = true;
  for (uint64_t id : {kA, kB}) m.Admit(id);
  for (uint64_t id : active) m.Activate(id, 0);
  return m;
}

std::vector<float> Values(const ParameterShard& shard) {
  std::vector<float> out(4);
  EXPECT_TRUE(shard.store().Read(SliceRef{"t", 0, 4}, absl::MakeSpan(out)).ok());
  return out;
}

std::vector<std::vector<float>> Slots(const ParameterShard& shard) {
  ShardSnapshot snapshot = shard.Snapshot();
  EXPECT_EQ(snapshot.tensors.size(), 1u);
  return snapshot.tensors[0].slots;
}

// A primary and its backup, with the operations carried by a pump thread
// while `pumping` is set (the replicator's part, without the network).
class ReplicationTest : public ::testing::TestWithParam<ConsistencyMode> {
 protected:
  void SetUp() override {
    primary_ = std::make_unique<ParameterShard>(MakeStore(), GetParam(), 0, MakeTables());
    backup_ = std::make_unique<ParameterShard>(MakeStore(), GetParam(), 0, MakeTables());
    primary_->EnableReplication(&log_, absl::Milliseconds(300));
    primary_->ApplyMembership(Members(1, {kA, kB}));
    backup_->BecomeBackup();
  }
  void TearDown() override { StopPump(); }
  virtual std::vector<std::unique_ptr<SparseTable>> MakeTables() { return {}; }

  // Starts the backup from the primary's state, then carries operations
  // (or, with `pump` false, leaves them until StartPump).
  void Attach(bool pump = true) {
    absl::StatusOr<ReplicaState> state = primary_->StartReplica(absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(state.ok()) << state.status();
    ASSERT_TRUE(backup_->InstallReplica(*state).ok());
    log_.Acknowledge(state->sequence);
    if (pump) StartPump();
  }
  void StartPump() {
    pumping_ = true;
    pump_ = std::thread([this] {
      while (pumping_) {
        for (const WireSlices& bytes : log_.Take(1 << 20, absl::Milliseconds(10))) {
          ReplicaOp op;
          ASSERT_TRUE(bytes.ParseTo(&op).ok());
          absl::StatusOr<uint64_t> applied = backup_->ApplyReplicaOp(op);
          ASSERT_TRUE(applied.ok()) << applied.status();
          log_.Acknowledge(*applied);
        }
      }
    });
  }
  void StopPump() {
    pumping_ = false;
    if (pump_.joinable()) pump_.join();
  }

  absl::StatusOr<ShardVersion> Push(uint64_t worker, uint64_t request_id, int64_t clock,
                                    std::vector<float> gradient) {
    std::vector<SliceGradient> g = {{SliceRef{"t", 0, 4}, gradient}};
    return primary_->Push(WorkerIdentity{worker, kCoordinator}, request_id, clock, g);
  }

  ReplicationLog log_;
  std::unique_ptr<ParameterShard> primary_;
  std::unique_ptr<ParameterShard> backup_;
  std::atomic<bool> pumping_{false};
  std::thread pump_;
};

TEST_P(ReplicationTest, BackupEndsWithThePrimarysValuesSlotsAndVersion) {
  // Updates before the backup attached reach it in the snapshot.
  const bool sync = GetParam() == SYNC;
  ASSERT_TRUE(Push(kA, 1, 0, {1, 2, 3, 4}).ok());
  ASSERT_TRUE(Push(kB, 1, 0, {1, 1, 1, 1}).ok());
  Attach();
  for (int step = 1; step <= 5; ++step) {
    const int64_t clock = sync ? step : 0;
    ASSERT_TRUE(Push(kA, 1 + step, clock, {0.1f * step, 0, -1, 2}).ok());
    ASSERT_TRUE(Push(kB, 1 + step, clock, {0, 0.5f, 0.25f, -2}).ok());
  }
  // Worker B leaves; A's pushes alone complete rounds from here (sync), on
  // both copies alike.
  primary_->ApplyMembership(Members(2, {kA}));
  ASSERT_TRUE(Push(kA, 20, sync ? 6 : 0, {3, 3, 3, 3}).ok());
  // Every push was answered, so the backup has every one already.
  EXPECT_EQ(backup_->version().version, primary_->version().version);
  EXPECT_EQ(primary_->version().version, sync ? 7 : 13);
  EXPECT_EQ(Values(*backup_), Values(*primary_));
  EXPECT_EQ(Slots(*backup_), Slots(*primary_));
}

TEST_P(ReplicationTest, ConcurrentPushesAllReachTheBackup) {
  Attach();
  constexpr int kSteps = 200;
  std::vector<std::thread> workers;
  for (uint64_t worker : {kA, kB}) {
    workers.emplace_back([&, worker] {
      for (int step = 0; step < kSteps; ++step) {
        const int64_t clock = GetParam() == SYNC ? step : 0;
        absl::StatusOr<ShardVersion> v = Push(worker, step + 1, clock, {0.001f, 0, 0, 0});
        ASSERT_TRUE(v.ok()) << v.status();
        if (GetParam() == SYNC) {  // the next round opens once both pushed
          std::vector<float> out(4);
          std::vector<absl::Span<float>> outs = {absl::MakeSpan(out)};
          ASSERT_TRUE(primary_
                          ->Pull(WorkerIdentity{worker, kCoordinator}, step + 1,
                                 {SliceRef{"t", 0, 4}}, outs, absl::Now() + absl::Seconds(10))
                          .ok());
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  const int64_t expected = GetParam() == SYNC ? kSteps : 2 * kSteps;
  EXPECT_EQ(primary_->version().version, expected);
  EXPECT_EQ(backup_->version().version, expected);
  const std::vector<float> p = Values(*primary_), b = Values(*backup_);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(b[i], p[i], 1e-4) << i;
}

TEST_P(ReplicationTest, PushIsAnsweredOnlyOnceTheBackupHasIt_RetryAppliesOnce) {
  Attach();
  StopPump();  // the backup is not reached
  absl::StatusOr<ShardVersion> v = Push(kA, 7, 0, {1, 0, 0, 0});
  EXPECT_TRUE(absl::IsUnavailable(v.status())) << v.status();
  // The primary applied it; the retry (same request id) is not applied again
  // and is answered once the backup has the first copy.
  absl::StatusOr<ShardVersion> retry = Push(kA, 7, 0, {1, 0, 0, 0});
  EXPECT_TRUE(absl::IsUnavailable(retry.status())) << retry.status();
  StartPump();
  retry = Push(kA, 7, 0, {1, 0, 0, 0});
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(primary_->stats().pushes, 1);
  EXPECT_EQ(backup_->stats().pushes, 1);
  EXPECT_EQ(Values(*backup_), Values(*primary_));
}

TEST_P(ReplicationTest, DetachedPrimaryAnswersAloneSteppedDownPrimaryServesNoOne) {
  Attach();
  StopPump();
  log_.Detach();  // the coordinator dropped the backup
  ASSERT_TRUE(Push(kA, 1, 0, {1, 0, 0, 0}).ok());
  log_.StepDown();
  primary_->StepDown();
  absl::StatusOr<ShardVersion> v = Push(kB, 1, 0, {1, 0, 0, 0});
  EXPECT_TRUE(absl::IsUnavailable(v.status())) << v.status();
  EXPECT_NE(v.status().message().find("backup took over"), std::string::npos) << v.status();
}

// Workers call the backup with the incarnation their primary gave them (the
// backup serves under its own until it takes over): its parameter service
// refuses them as "not serving" before the shard sees the call, and must
// still count them as witnesses, or the coordinator's backup of a one-shard
// job waits for their next heartbeat to take over.
TEST_P(ReplicationTest, BackupServiceNotesWorkersCallingWithThePrimarysIncarnation) {
  Attach();
  constexpr uint64_t kPrimaryIncarnation = 111;
  constexpr uint64_t kBackupIncarnation = 222;
  ParameterServiceImpl service(backup_.get(), kBackupIncarnation, absl::Seconds(1), 1 << 20);
  grpc::ServerContext context;
  const absl::Time before = absl::Now();

  PushRequest push;
  SetSender(WorkerIdentity{kA, kCoordinator}, push.mutable_header());
  push.mutable_header()->set_incarnation(kPrimaryIncarnation);
  PushResponse push_response;
  grpc::Status status = service.HandlePush(context, push, &push_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();

  PullRequest pull;
  SetSender(WorkerIdentity{kB, kCoordinator}, pull.mutable_header());
  pull.mutable_header()->set_incarnation(kPrimaryIncarnation);
  pull.mutable_header()->set_clock(-1);
  grpc::ByteBuffer reply;
  status = service.HandlePull(context, pull, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();

  EXPECT_EQ(backup_->WorkersRefusedSince(before), (absl::flat_hash_set<uint64_t>{kA, kB}));
  service.Shutdown();
}

TEST_P(ReplicationTest, BackupServesNoWorkerUntilPromoted_ThenServesThePrimarysValues) {
  Attach();
  ASSERT_TRUE(Push(kA, 1, 0, {1, 2, 3, 4}).ok());
  std::vector<float> out(4);
  std::vector<absl::Span<float>> outs = {absl::MakeSpan(out)};
  const WorkerIdentity a{kA, kCoordinator};
  const absl::Time before_pull = absl::Now();
  EXPECT_TRUE(backup_->WorkersRefusedSince(before_pull).empty());
  absl::StatusOr<ShardVersion> pulled =
      backup_->Pull(a, -1, {SliceRef{"t", 0, 4}}, outs, absl::Now() + absl::Seconds(1));
  EXPECT_TRUE(absl::IsUnavailable(pulled.status())) << pulled.status();
  // The refused worker is a witness that it could not reach the primary.
  EXPECT_EQ(backup_->WorkersRefusedSince(before_pull), absl::flat_hash_set<uint64_t>{kA});
  EXPECT_TRUE(backup_->WorkersRefusedSince(absl::Now() + absl::Seconds(1)).empty());
  EXPECT_TRUE(primary_->WorkersRefusedSince(before_pull).empty());
  StopPump();
  backup_->Promote();
  pulled = backup_->Pull(a, -1, {SliceRef{"t", 0, 4}}, outs, absl::Now() + absl::Seconds(1));
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(out, Values(*primary_));
  // The promoted copy knows A's request 1: a retry there is not applied twice.
  std::vector<SliceGradient> g = {{SliceRef{"t", 0, 4}, std::vector<float>{1, 2, 3, 4}}};
  ASSERT_TRUE(backup_->Push(a, 1, 0, g).ok());
  EXPECT_EQ(backup_->stats().duplicate_pushes, 1);
  EXPECT_EQ(Values(*backup_), Values(*primary_));
}

TEST_P(ReplicationTest, GapIsRefused) {
  Attach();
  StopPump();
  ReplicaOp op;
  op.set_sequence(log_.last_reserved() + 5);
  *op.mutable_membership() = Members(9, {kA}).ToProto();
  absl::StatusOr<uint64_t> applied = backup_->ApplyReplicaOp(op);
  EXPECT_TRUE(absl::IsFailedPrecondition(applied.status())) << applied.status();
}

TEST_P(ReplicationTest, OperationThatDoesNotDecode_InvalidArgumentNothingApplied) {
  Attach();
  StopPump();
  ReplicaOp op;
  op.set_sequence(log_.last_reserved() + 1);
  ReplicaPush* push = op.mutable_push();
  push->set_worker_id(kA);
  push->set_coordinator_incarnation(kCoordinator);
  DenseValues* values = push->add_dense();
  values->mutable_slice()->set_tensor("t");
  values->mutable_slice()->set_length(uint64_t{1} << 40);  // past the tensor
  values->set_data(std::string(8, '\0'));
  absl::StatusOr<uint64_t> applied = backup_->ApplyReplicaOp(op);
  EXPECT_FALSE(applied.ok());
  values->mutable_slice()->set_length(4);  // 4 elements, 2 sent
  applied = backup_->ApplyReplicaOp(op);
  EXPECT_TRUE(absl::IsInvalidArgument(applied.status())) << applied.status();
  EXPECT_EQ(backup_->stats().pushes, primary_->stats().pushes);
}

// SYNC: a backup closes a round only where its primary did, in the
// primary's order of operations — never by itself when every active worker
// has pushed. (The primary sums a push after admitting it, and decides
// then: a worker activated in between, later in the operations, holds the
// round open there; a backup deciding at the push's place would close it a
// round early and refuse every push after.)
// Sparse table "emb" (dim 2, Adagrad) admitting ids at their second push,
// evicting rows 6 updates old and the least recently updated past 24 rows.
class LifecycleReplicationTest : public ReplicationTest {
 protected:
  std::vector<std::unique_ptr<SparseTable>> MakeTables() override {
    OptimizerConfig config;
    config.set_kind(ADAGRAD);
    config.set_learning_rate(0.1f);
    SparseTableOptions options;
    options.name = "emb";
    options.dim = 2;
    options.max_rows = 24;
    options.admission.set_min_count(2);
    options.eviction.set_ttl_updates(6);
    options.eviction.set_when_full(FeatureEviction::LEAST_RECENTLY_UPDATED);
    std::vector<std::unique_ptr<SparseTable>> tables;
    tables.push_back(*SparseTable::Create(options, *CreateOptimizer(config)));
    return tables;
  }
  absl::StatusOr<ShardVersion> PushRows(uint64_t worker, uint64_t request_id, int64_t clock,
                                        std::vector<uint64_t> keys) {
    std::vector<float> values(keys.size() * 2, 0.5f);
    std::vector<SparseGradient> sparse = {{"emb", keys, values}};
    return primary_->Push(WorkerIdentity{worker, kCoordinator}, request_id, clock, {}, sparse);
  }
};

TEST_P(LifecycleReplicationTest, BackupEvictsExactlyTheRowsItsPrimaryEvicted) {
  const bool sync = GetParam() == SYNC;
  Attach();
  for (uint64_t step = 0; step < 40; ++step) {
    const int64_t clock = sync ? static_cast<int64_t>(step) : 0;
    // Recurring ids (admitted), ids seen twice (admitted, then aged out)
    // and ids seen once (never admitted).
    ASSERT_TRUE(PushRows(kA, 1 + step, clock, {step % 4, 1000 + step / 2, 5000 + step}).ok());
    ASSERT_TRUE(PushRows(kB, 1 + step, clock, {step % 3, 2000 + step / 2, 9000 + step}).ok());
  }
  ASSERT_TRUE(PushRows(kA, 100, sync ? 40 : 0, {1}).ok());
  ASSERT_TRUE(PushRows(kB, 100, sync ? 40 : 0, {1}).ok());
  // The evictor's last pass, and the backup has it.
  ASSERT_TRUE(primary_->EvictNow().ok());
  const SparseTable& p = *primary_->sparse_table("emb");
  const SparseTable& b = *backup_->sparse_table("emb");
  EXPECT_GT(p.counters().evicted, 10u);
  EXPECT_GT(p.counters().refused, 40u);
  EXPECT_EQ(b.counters().evicted, p.counters().evicted);
  EXPECT_EQ(b.counters().admitted, p.counters().admitted);
  EXPECT_LE(p.rows(), 24u);
  const SparseTable::Contents pc = p.Snapshot(), bc = b.Snapshot();
  auto keyed = [](const SparseTable::Contents& c) {
    std::map<uint64_t, std::vector<float>> rows;
    for (const auto& r : c.rows) rows[r.key] = r.data;
    return rows;
  };
  EXPECT_EQ(keyed(bc), keyed(pc));  // the same rows, values and slots
  EXPECT_EQ(bc.pending.exact, pc.pending.exact);
}

INSTANTIATE_TEST_SUITE_P(Modes, LifecycleReplicationTest, ::testing::Values(ASYNC, SYNC, SSP),
                         [](const auto& info) { return ConsistencyMode_Name(info.param); });

TEST(SyncReplicationTest, BackupClosesARoundOnlyWhereItsPrimaryDid) {
  ParameterShard backup(MakeStore(), SYNC);
  backup.BecomeBackup();
  ReplicaState state;
  state.snapshot = ParameterShard(MakeStore(), SYNC).Snapshot();
  state.membership = Members(1, {kA, kB});
  ASSERT_TRUE(backup.InstallReplica(state).ok());
  uint64_t sequence = 0;
  auto push = [&](uint64_t worker, int64_t round) {
    ReplicaOp op;
    op.set_sequence(++sequence);
    ReplicaPush* p = op.mutable_push();
    p->set_worker_id(worker);
    p->set_coordinator_incarnation(kCoordinator);
    p->set_request_id(sequence);
    p->set_clock(round);
    DenseValues* values = p->add_dense();
    values->mutable_slice()->set_tensor("t");
    values->mutable_slice()->set_length(4);
    values->set_encoding(FLOAT32);
    const std::vector<float> g = {1, 1, 1, 1};
    values->set_data(reinterpret_cast<const char*>(g.data()), g.size() * sizeof(float));
    return backup.ApplyReplicaOp(op);
  };
  auto close = [&](int64_t round) {
    ReplicaOp op;
    op.set_sequence(++sequence);
    op.set_round_closed(round);
    return backup.ApplyReplicaOp(op);
  };
  ASSERT_TRUE(push(kA, 0).ok());
  ASSERT_TRUE(push(kB, 0).ok());
  EXPECT_EQ(backup.version().round, 0);  // both pushed: still open here
  const std::vector<float> before = Values(backup);
  ASSERT_TRUE(close(0).ok());
  EXPECT_EQ(backup.version().round, 1);
  EXPECT_NE(Values(backup), before);
  // Closing a round this copy is not collecting, or an empty one, is a
  // divergence: refused (the replicator then sends a snapshot).
  EXPECT_TRUE(absl::IsFailedPrecondition(close(1).status()));
  sequence -= 1;
  EXPECT_TRUE(absl::IsFailedPrecondition(close(7).status()));
  sequence -= 1;
  ASSERT_TRUE(push(kA, 1).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(close(0).status()));
  sequence -= 1;
  EXPECT_EQ(backup.version().round, 1);

  // Promoted with every active worker's push in, it decides by itself.
  ASSERT_TRUE(push(kB, 1).ok());
  EXPECT_EQ(backup.version().round, 1);
  backup.Promote();
  EXPECT_EQ(backup.version().round, 2);
}

// A sync round's parameters reach a worker only once the backup has the
// round's close: a worker holding round r + 1 while the backup, taking
// over, still collects round r would push ahead of it (the shards' rounds
// then disagree and the job stalls).
class SyncPullTest : public ReplicationTest {};

TEST_P(SyncPullTest, PullOfANewRoundWaitsForTheBackupToHaveItsClose) {
  Attach(/*pump=*/false);
  // Both push round 0 (the second closes it); neither is acknowledged yet.
  EXPECT_TRUE(absl::IsUnavailable(Push(kA, 1, 0, {1, 1, 1, 1}).status()));
  EXPECT_TRUE(absl::IsUnavailable(Push(kB, 2, 0, {1, 1, 1, 1}).status()));
  std::vector<float> pulled(4);
  const std::vector<absl::Span<float>> out = {absl::MakeSpan(pulled)};
  auto pull = [&] {
    return primary_->Pull(WorkerIdentity{kA, kCoordinator}, /*clock=*/1, {SliceRef{"t", 0, 4}}, out,
                          absl::Now() + absl::Seconds(5));
  };
  const absl::StatusOr<ShardVersion> early = pull();
  EXPECT_TRUE(absl::IsUnavailable(early.status())) << early.status();
  StartPump();
  const absl::StatusOr<ShardVersion> late = pull();
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_EQ(late->round, 1);
  EXPECT_EQ(pulled, Values(*primary_));
  EXPECT_EQ(backup_->version().round, 1);
}

INSTANTIATE_TEST_SUITE_P(Sync, SyncPullTest, ::testing::Values(SYNC),
                         [](const auto& info) { return ConsistencyMode_Name(info.param); });

INSTANTIATE_TEST_SUITE_P(Modes, ReplicationTest, ::testing::Values(ASYNC, SYNC, SSP),
                         [](const auto& info) { return ConsistencyMode_Name(info.param); });

}  // namespace
}  // namespace fulcrum
