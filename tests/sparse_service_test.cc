// Sparse tables through a real in-process gRPC server: rows created on first
// pull, pushed gradients applied under each consistency mode, bad input
// refused whole, the row limit, status and checkpoints.
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/payload.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/job.pb.h"
#include "proto/parameter_service.grpc.pb.h"
#include "server/job_spec.h"
#include "server/ps_server.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

class SparseServiceTest : public ::testing::Test {
 protected:
  void Start(ConsistencyMode mode, int workers, uint64_t max_rows = 1000,
             const std::string& checkpoint_dir = "") {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    // The softmax model's dense tensors (a push may carry both kinds) and
    // one table.
    JobSpec job = *BuiltinJob("softmax");
    job.clear_optimizer();
    job.set_mode(mode);
    job.set_num_workers(workers);
    job.mutable_optimizer()->set_kind(SGD);
    job.mutable_optimizer()->set_learning_rate(1.0f);
    SparseTableSpec* emb = job.add_sparse_tables();
    emb->set_name("emb");
    emb->set_dim(2);
    emb->set_max_rows(max_rows);
    options.checkpoint_dir = checkpoint_dir;
    options.job = *Job::Complete(job);
    auto server = ParameterServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->Start().ok());
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->bound_port()),
                                       grpc::InsecureChannelCredentials());
    ps_ = ParameterService::NewStub(channel);
    coordinator_ = Coordinator::NewStub(channel);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  uint64_t WorkerWithLease() {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    RegisterWorkerRequest r;
    r.set_worker_name(absl::StrCat("w", ++workers_));
    RegisterWorkerResponse registered;
    EXPECT_TRUE(coordinator_->RegisterWorker(&c, r, &registered).ok());
    ids_.push_back(registered.worker_id());
    return registered.worker_id();
  }
  void LeaseAll() {
    for (uint64_t id : ids_) {
      grpc::ClientContext c;
      c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      AcquirePartitionRequest r;
      r.set_worker_id(id);
      r.set_coordinator_incarnation(server_->incarnation());
      AcquirePartitionResponse lease;
      ASSERT_TRUE(coordinator_->AcquirePartition(&c, r, &lease).ok());
      ASSERT_EQ(lease.kind(), AcquirePartitionResponse::TRAIN);
    }
  }

  grpc::Status Pull(uint64_t worker, const std::vector<uint64_t>& keys, std::vector<float>* rows,
                    const std::string& table = "emb", int64_t clock = -1) {
    PullRequest request;
    request.mutable_header()->set_worker_id(worker);
    request.mutable_header()->set_coordinator_incarnation(server_->incarnation());
    request.mutable_header()->set_clock(clock);
    SparseKeys* k = request.add_sparse();
    k->set_table(table);
    for (uint64_t key : keys) k->add_keys(key);
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    PullResponse response;
    grpc::Status s = ps_->Pull(&c, request, &response);
    if (s.ok()) {
      EXPECT_EQ(response.sparse_size(), 1);
      EXPECT_EQ(response.sparse(0).keys_size(), static_cast<int>(keys.size()));
      rows->resize(keys.size() * 2);
      EXPECT_TRUE(
          DecodeFloat32(FLOAT32, response.sparse(0).data(), absl::MakeSpan(*rows), false).ok());
    }
    return s;
  }

  grpc::Status Push(uint64_t worker, const std::vector<uint64_t>& keys,
                    const std::vector<float>& grads, int64_t clock = 0, bool with_dense = false,
                    const std::string& table = "emb") {
    PushRequest request;
    request.mutable_header()->set_worker_id(worker);
    request.mutable_header()->set_coordinator_incarnation(server_->incarnation());
    request.mutable_header()->set_clock(clock);
    SparseValues* v = request.add_sparse();
    v->set_table(table);
    for (uint64_t key : keys) v->add_keys(key);
    v->set_encoding(FLOAT32);
    EncodeFloat32(grads, v->mutable_data());
    if (with_dense) {
      DenseValues* d = request.add_dense();
      d->mutable_slice()->set_tensor("softmax/b");
      d->mutable_slice()->set_length(10);
      d->set_encoding(FLOAT32);
      EncodeFloat32(std::vector<float>(10, 1.0f), d->mutable_data());
    }
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    PushResponse response;
    return ps_->Push(&c, request, &response);
  }

  std::vector<float> Bias(uint64_t worker) {
    PullRequest request;
    request.mutable_header()->set_worker_id(worker);
    request.mutable_header()->set_coordinator_incarnation(server_->incarnation());
    request.mutable_header()->set_clock(-1);
    DenseSlice* slice = request.add_dense();
    slice->set_tensor("softmax/b");
    slice->set_length(10);
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    PullResponse response;
    EXPECT_TRUE(ps_->Pull(&c, request, &response).ok());
    std::vector<float> out(10);
    DecodeFloat32(FLOAT32, response.dense(0).data(), absl::MakeSpan(out), false).IgnoreError();
    return out;
  }

  JobStatus Status() {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    JobStatus status;
    EXPECT_TRUE(coordinator_->GetStatus(&c, GetStatusRequest(), &status).ok());
    return status;
  }

  int workers_ = 0;
  std::vector<uint64_t> ids_;
  std::unique_ptr<ParameterServer> server_;
  std::unique_ptr<ParameterService::Stub> ps_;
  std::unique_ptr<Coordinator::Stub> coordinator_;
};

TEST_F(SparseServiceTest, PullCreatesRowsPushApplies) {
  Start(ASYNC, 1);
  const uint64_t w = WorkerWithLease();
  LeaseAll();
  std::vector<float> rows;
  ASSERT_TRUE(Pull(w, {7, uint64_t{1} << 63}, &rows).ok());
  EXPECT_EQ(rows, std::vector<float>(4, 0.0f));
  ASSERT_TRUE(Push(w, {7, 7}, {1, 2, 3, 4}).ok());  // duplicates add up
  ASSERT_TRUE(Pull(w, {7}, &rows).ok());
  EXPECT_EQ(rows, (std::vector<float>{-4, -6}));
  JobStatus status = Status();
  ASSERT_EQ(status.sparse_tables_size(), 1);
  EXPECT_EQ(status.sparse_tables(0).rows(), 2u);
  EXPECT_EQ(status.sparse_tables(0).bytes(), 2u * 2 * 4);
  EXPECT_GT(status.sparse_tables(0).bytes_per_row(), 8.0);
}

TEST_F(SparseServiceTest, BadInput_RefusedWithCodesAndNothingChanged) {
  Start(ASYNC, 1);
  const uint64_t w = WorkerWithLease();
  LeaseAll();
  std::vector<float> rows;
  EXPECT_EQ(Pull(w, {1}, &rows, "nope").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Push(w, {1}, {1, 2}, 0, false, "nope").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Push(w, {1, 2}, {1, 2, 3}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Push(w, {1}, {1, std::numeric_limits<float>::quiet_NaN()}, 0, true).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Status().sparse_tables(0).rows(), 0u);
  EXPECT_EQ(Bias(w), std::vector<float>(10, 0.0f));  // dense part not applied
}

TEST_F(SparseServiceTest, FullTable_ResourceExhaustedWholePushRefused) {
  Start(ASYNC, 1, /*max_rows=*/3);
  const uint64_t w = WorkerWithLease();
  LeaseAll();
  std::vector<float> rows;
  ASSERT_TRUE(Pull(w, {1, 2}, &rows).ok());
  grpc::Status s = Push(w, {1, 3, 4}, std::vector<float>(6, 1.0f), 0, /*with_dense=*/true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("--max_sparse_rows"), std::string::npos);
  EXPECT_EQ(Status().sparse_tables(0).rows(), 2u);
  EXPECT_EQ(Bias(w), std::vector<float>(10, 0.0f));
  ASSERT_TRUE(Pull(w, {1}, &rows).ok());
  EXPECT_EQ(rows, std::vector<float>(2, 0.0f));
  EXPECT_EQ(Pull(w, {5, 6}, &rows).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(SparseServiceTest, Sync_RoundAveragesSparseGradients) {
  Start(SYNC, 2);
  const uint64_t a = WorkerWithLease();
  const uint64_t b = WorkerWithLease();
  LeaseAll();
  ASSERT_TRUE(Push(a, {1, 2}, {2, 2, 4, 4}, 0).ok());
  std::vector<float> rows;
  ASSERT_TRUE(Pull(a, {1}, &rows).ok());
  EXPECT_EQ(rows, std::vector<float>(2, 0.0f));  // round 0 still open
  ASSERT_TRUE(Push(b, {1}, {6, 6}, 0).ok());
  ASSERT_TRUE(Pull(a, {1, 2}, &rows, "emb", /*clock=*/1).ok());
  // Mean over the round's 2 pushes: key 1 (2+6)/2, key 2 4/2.
  EXPECT_EQ(rows, (std::vector<float>{-4, -4, -2, -2}));
}

TEST_F(SparseServiceTest, Checkpoint_RestoresTableRows) {
  const std::string dir = TestDir("sparse_ckpt");
  Start(ASYNC, 1, 1000, dir);
  const uint64_t w = WorkerWithLease();
  LeaseAll();
  ASSERT_TRUE(Push(w, {11, 12}, {1, 1, 2, 2}).ok());
  ASSERT_TRUE(server_->Checkpoint().ok());
  server_->Shutdown();
  server_.reset();
  workers_ = 0;
  ids_.clear();
  Start(ASYNC, 1, 1000, dir);  // restores the newest checkpoint
  const uint64_t again = WorkerWithLease();
  LeaseAll();
  EXPECT_EQ(Status().sparse_tables(0).rows(), 2u);
  std::vector<float> rows;
  ASSERT_TRUE(Pull(again, {11, 12}, &rows).ok());
  EXPECT_EQ(rows, (std::vector<float>{-1, -1, -2, -2}));
}

}  // namespace
}  // namespace fulcrum
