// The ParameterService and Coordinator services through a real in-process
// gRPC server on an ephemeral 127.0.0.1 port.
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/payload.h"
#include "common/rpc/health_check.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/job.pb.h"
#include "proto/parameter_service.grpc.pb.h"
#include "server/job_spec.h"
#include "server/ps_server.h"
#include "tests/wait.h"

namespace fulcrum {
namespace {

constexpr int kElements = 1000;

class ParameterServiceTest : public ::testing::Test {
 protected:
  void StartServer(ConsistencyMode mode, int num_workers, int max_message = 0) {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    JobSpec job;
    job.set_model("test");
    job.set_mode(mode);
    job.set_num_workers(num_workers);
    expected_ = num_workers;
    job.mutable_optimizer()->set_kind(SGD);
    job.mutable_optimizer()->set_learning_rate(1.0f);
    TensorSpec* t = job.add_tensors();
    t->set_name("w");
    t->add_shape(kElements);
    TensorSpec* b = job.add_tensors();
    b->set_name("b");
    b->add_shape(3);
    options.store.stripe_elements = 64;
    if (max_message > 0) options.max_message_bytes = max_message;
    options.job = *Job::Complete(job);
    auto server = ParameterServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_GT(server_->bound_port(), 0);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->bound_port()),
                                   grpc::InsecureChannelCredentials());
    ps_ = ParameterService::NewStub(channel_);
    coordinator_ = Coordinator::NewStub(channel_);
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // Worker `id` of the running server's coordinator.
  WorkerIdentity Me(uint64_t id) const { return WorkerIdentity{id, server_->incarnation()}; }

  // Registers a worker (named uniquely) without taking work.
  uint64_t RegisterOnly() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    RegisterWorkerRequest request;
    request.set_worker_name(absl::StrCat("t", ++registered_));
    RegisterWorkerResponse response;
    grpc::Status s = coordinator_->RegisterWorker(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.worker_id();
  }

  absl::StatusOr<AcquirePartitionResponse> Acquire(uint64_t id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    AcquirePartitionRequest request;
    request.set_worker_id(id);
    request.set_coordinator_incarnation(server_->incarnation());
    AcquirePartitionResponse response;
    grpc::Status s = coordinator_->AcquirePartition(&context, request, &response);
    if (!s.ok())
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    return response;
  }

  // Registers a worker and leases it a partition, so it may push.
  uint64_t RegisterWorker() {
    const uint64_t id = RegisterOnly();
    leased_.push_back(id);
    if (leased_.size() >= expected_) {  // the job has started: lease to all
      for (uint64_t w : leased_) {
        absl::StatusOr<AcquirePartitionResponse> r = Acquire(w);
        EXPECT_TRUE(r.ok()) << r.status();
        EXPECT_EQ(r->kind(), AcquirePartitionResponse::TRAIN);
      }
      leased_.clear();
    }
    return id;
  }

  grpc::Status Push(uint64_t worker, const std::string& tensor, uint64_t offset,
                    const std::vector<float>& values, int64_t clock = 0, uint64_t length = 0,
                    uint64_t request_id = 0) {
    PushRequest request;
    request.mutable_header()->set_worker_id(worker);
    request.mutable_header()->set_coordinator_incarnation(server_->incarnation());
    request.mutable_header()->set_clock(clock);
    request.mutable_header()->set_request_id(request_id);
    DenseValues* v = request.add_dense();
    v->mutable_slice()->set_tensor(tensor);
    v->mutable_slice()->set_offset(offset);
    v->mutable_slice()->set_length(length ? length : values.size());
    v->set_encoding(FLOAT32);
    EncodeFloat32(values, v->mutable_data());
    return Push(request);
  }

  grpc::Status Push(const PushRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    PushResponse response;
    return ps_->Push(&context, request, &response);
  }

  grpc::Status Pull(uint64_t worker, const std::string& tensor, uint64_t offset, uint64_t length,
                    std::vector<float>* out, int64_t clock = -1, int timeout_ms = 5000,
                    PullResponse* response_out = nullptr) {
    PullRequest request;
    request.mutable_header()->set_worker_id(worker);
    request.mutable_header()->set_coordinator_incarnation(server_->incarnation());
    request.mutable_header()->set_clock(clock);
    DenseSlice* slice = request.add_dense();
    slice->set_tensor(tensor);
    slice->set_offset(offset);
    slice->set_length(length);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
    PullResponse response;
    grpc::Status s = ps_->Pull(&context, request, &response);
    if (s.ok()) {
      EXPECT_EQ(response.dense_size(), 1);
      out->resize(length);
      EXPECT_TRUE(DecodeFloat32(response.dense(0).encoding(), response.dense(0).data(),
                                absl::MakeSpan(*out), false)
                      .ok());
      if (response_out) *response_out = response;
    }
    return s;
  }

  std::vector<float> PullW(uint64_t worker) {
    std::vector<float> out;
    grpc::Status s = Pull(worker, "w", 0, kElements, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  int registered_ = 0;
  size_t expected_ = 1;
  std::vector<uint64_t> leased_;
  std::unique_ptr<ParameterServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ParameterService::Stub> ps_;
  std::unique_ptr<Coordinator::Stub> coordinator_;
};

TEST_F(ParameterServiceTest, PushThenPull_RoundTrip) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  std::vector<float> grad(10);
  for (int i = 0; i < 10; ++i) grad[i] = i * 0.5f;
  ASSERT_TRUE(Push(id, "w", 100, grad).ok());
  std::vector<float> out;
  PullResponse response;
  ASSERT_TRUE(Pull(id, "w", 98, 14, &out, -1, 5000, &response).ok());
  for (int i = 0; i < 14; ++i) {
    const int k = i - 2;
    EXPECT_EQ(out[i], (k >= 0 && k < 10) ? -k * 0.5f : 0.0f) << i;
  }
  EXPECT_EQ(response.header().version(), 1);
  EXPECT_EQ(response.header().incarnation(), server_->incarnation());
  EXPECT_NE(response.header().incarnation(), 0u);
}

TEST_F(ParameterServiceTest, UnknownTensor_NotFoundNothingChanged) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  grpc::Status s = Push(id, "nope", 0, {1.0f});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("nope"), std::string::npos);
  std::vector<float> out;
  EXPECT_EQ(Pull(id, "nope", 0, 1, &out).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(PullW(id), std::vector<float>(kElements, 0.0f));
}

TEST_F(ParameterServiceTest, WrongLength_InvalidArgumentNothingChanged) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  // The slice says 5 elements, the payload holds 4.
  EXPECT_EQ(Push(id, "w", 0, {1, 1, 1, 1}, 0, /*length=*/5).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(PullW(id), std::vector<float>(kElements, 0.0f));
}

TEST_F(ParameterServiceTest, SliceOutsideTensor_InvalidArgumentNothingChanged) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  EXPECT_EQ(Push(id, "w", kElements - 2, {1, 1, 1}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  std::vector<float> out;
  EXPECT_EQ(Pull(id, "w", kElements, 1, &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A huge pull is refused before anything is allocated.
  EXPECT_EQ(Pull(id, "w", 0, uint64_t{1} << 40, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(PullW(id), std::vector<float>(kElements, 0.0f));
}

TEST_F(ParameterServiceTest, NonFiniteGradient_InvalidArgumentNothingApplied) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  // The first slice is fine, the second holds a NaN: neither is applied.
  PushRequest request;
  request.mutable_header()->set_worker_id(id);
  request.mutable_header()->set_coordinator_incarnation(server_->incarnation());
  DenseValues* good = request.add_dense();
  good->mutable_slice()->set_tensor("b");
  good->mutable_slice()->set_length(3);
  good->set_encoding(FLOAT32);
  EncodeFloat32(std::vector<float>{1, 2, 3}, good->mutable_data());
  DenseValues* bad = request.add_dense();
  bad->mutable_slice()->set_tensor("w");
  bad->mutable_slice()->set_offset(0);
  bad->mutable_slice()->set_length(2);
  bad->set_encoding(FLOAT32);
  EncodeFloat32(std::vector<float>{1.0f, std::numeric_limits<float>::quiet_NaN()},
                bad->mutable_data());
  grpc::Status s = Push(request);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("non-finite"), std::string::npos);
  std::vector<float> b;
  ASSERT_TRUE(Pull(id, "b", 0, 3, &b).ok());
  EXPECT_EQ(b, std::vector<float>(3, 0.0f));
  EXPECT_EQ(PullW(id), std::vector<float>(kElements, 0.0f));
  // Infinity is refused the same way.
  EXPECT_EQ(Push(id, "w", 0, {std::numeric_limits<float>::infinity()}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(PullW(id), std::vector<float>(kElements, 0.0f));
}

TEST_F(ParameterServiceTest, PayloadNotMultipleOfFour_InvalidArgument) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  PushRequest request;
  request.mutable_header()->set_worker_id(id);
  request.mutable_header()->set_coordinator_incarnation(server_->incarnation());
  DenseValues* v = request.add_dense();
  v->mutable_slice()->set_tensor("w");
  v->mutable_slice()->set_length(2);
  v->set_encoding(FLOAT32);
  v->set_data(std::string(7, '\0'));
  grpc::Status s = Push(request);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("multiple of 4"), std::string::npos);
  EXPECT_EQ(PullW(id), std::vector<float>(kElements, 0.0f));
}

TEST_F(ParameterServiceTest, UnsupportedEncoding_InvalidArgument) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  PushRequest request;
  request.mutable_header()->set_worker_id(id);
  request.mutable_header()->set_coordinator_incarnation(server_->incarnation());
  DenseValues* v = request.add_dense();
  v->mutable_slice()->set_tensor("w");
  v->mutable_slice()->set_length(2);
  v->set_encoding(ENCODING_UNSPECIFIED);
  v->set_data(std::string(8, '\0'));
  EXPECT_EQ(Push(request).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ParameterServiceTest, UnregisteredWorker_FailedPrecondition) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  EXPECT_EQ(Push(id + 100, "w", 0, {1.0f}).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  std::vector<float> out;
  EXPECT_EQ(Pull(id + 100, "w", 0, 1, &out).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Push(0, "w", 0, {1.0f}).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(PullW(id), std::vector<float>(kElements, 0.0f));

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  HeartbeatRequest heartbeat;
  heartbeat.set_worker_id(id + 100);
  heartbeat.set_coordinator_incarnation(server_->incarnation());
  HeartbeatResponse response;
  EXPECT_EQ(coordinator_->Heartbeat(&context, heartbeat, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ParameterServiceTest, RegisteredWithoutLease_MayPullNotPush) {
  StartServer(ASYNC, 2);
  const uint64_t id = RegisterOnly();
  RegisterOnly();  // the job starts
  std::vector<float> out;
  EXPECT_TRUE(Pull(id, "w", 0, 4, &out).ok());
  grpc::Status s = Push(id, "w", 0, {1.0f});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("lease"), std::string::npos);
}

TEST_F(ParameterServiceTest, Stop_JobStoppedAndWorkersToldDone) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  StopResponse stopped;
  ASSERT_TRUE(coordinator_->Stop(&context, StopRequest(), &stopped).ok());
  EXPECT_EQ(Acquire(id)->kind(), AcquirePartitionResponse::DONE);
  grpc::ClientContext status_context;
  status_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  JobStatus status;
  ASSERT_TRUE(coordinator_->GetStatus(&status_context, GetStatusRequest(), &status).ok());
  EXPECT_EQ(status.state(), STOPPED);
}

TEST_F(ParameterServiceTest, WatchStatus_StreamsUntilJobEnds) {
  StartServer(ASYNC, 1);
  RegisterWorker();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  WatchStatusRequest request;
  request.set_interval_seconds(0.05);
  auto reader = coordinator_->WatchStatus(&context, request);
  JobStatus status;
  ASSERT_TRUE(reader->Read(&status));
  EXPECT_EQ(status.state(), RUNNING);
  ASSERT_TRUE(reader->Read(&status));  // a second update follows
  grpc::ClientContext stop_context;
  stop_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  StopResponse stopped;
  ASSERT_TRUE(coordinator_->Stop(&stop_context, StopRequest(), &stopped).ok());
  int more = 0;
  while (reader->Read(&status)) ++more;  // ends after the STOPPED update
  EXPECT_EQ(status.state(), STOPPED);
  EXPECT_LT(more, 100);
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(ParameterServiceTest, WatchStatus_NegativeInterval_InvalidArgument) {
  StartServer(ASYNC, 1);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  WatchStatusRequest request;
  request.set_interval_seconds(-1);
  auto reader = coordinator_->WatchStatus(&context, request);
  JobStatus status;
  EXPECT_FALSE(reader->Read(&status));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ParameterServiceTest, HealthService_ReportsServing) {
  StartServer(ASYNC, 1);
  absl::Status serving = CheckServing(channel_, absl::Seconds(5));
  EXPECT_TRUE(serving.ok()) << serving;
}

TEST_F(ParameterServiceTest, OversizedMessage_ResourceExhausted) {
  StartServer(ASYNC, 1, /*max_message=*/1024);
  const uint64_t id = RegisterWorker();
  EXPECT_EQ(Push(id, "w", 0, std::vector<float>(kElements, 1.0f)).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  std::vector<float> out;
  ASSERT_TRUE(Pull(id, "w", 0, 10, &out).ok());
  EXPECT_EQ(out, std::vector<float>(10, 0.0f));
  // A pull whose answer would exceed the limit is refused before the server
  // builds it (the message names the server's flag, not gRPC's limit).
  grpc::Status big = Pull(id, "w", 0, kElements, &out);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(big.error_message().find("--max_message_mb"), std::string::npos) << big.error_message();
}

TEST_F(ParameterServiceTest, ManyThreadsPushing_NoUpdateLost) {
  // SGD with lr 1: the final values are minus the exact sum of all pushes
  // (integer-valued, so float addition is exact).
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  constexpr int kThreads = 8;
  constexpr int kPushes = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<float> grad(kElements, static_cast<float>(t + 1));
      for (int i = 0; i < kPushes; ++i) {
        grpc::Status s = Push(id, "w", 0, grad);
        ASSERT_TRUE(s.ok()) << s.error_message();
      }
    });
  }
  for (auto& th : threads) th.join();
  const float expected = -static_cast<float>(kPushes * kThreads * (kThreads + 1) / 2);
  EXPECT_EQ(PullW(id), std::vector<float>(kElements, expected));
  EXPECT_EQ(server_->shard()->stats().pushes, kThreads * kPushes);
}

TEST_F(ParameterServiceTest, RetriedPushWithSameRequestId_AppliedOnce) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  ASSERT_TRUE(Push(id, "w", 0, {2.0f}, 0, 0, /*request_id=*/41).ok());
  ASSERT_TRUE(Push(id, "w", 0, {2.0f}, 0, 0, /*request_id=*/41).ok());
  std::vector<float> out;
  ASSERT_TRUE(Pull(id, "w", 0, 1, &out).ok());
  EXPECT_EQ(out[0], -2.0f);
}

TEST_F(ParameterServiceTest, Sync_PullWaitsForRoundThenSeesMean) {
  StartServer(SYNC, 2);
  const uint64_t a = RegisterWorker();
  const uint64_t b = RegisterWorker();
  ASSERT_TRUE(Push(a, "w", 0, std::vector<float>(kElements, 1.0f), 0).ok());
  std::vector<float> out;
  // Round 1 cannot complete until b pushes: a short deadline expires.
  EXPECT_EQ(Pull(a, "w", 0, kElements, &out, /*clock=*/1, 200).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  std::thread late([&] {
    ASSERT_TRUE(WaitUntil([&] { return server_->shard()->stats().waiting_pulls == 1; }));
    ASSERT_TRUE(Push(b, "w", 0, std::vector<float>(kElements, 3.0f), 0).ok());
  });
  PullResponse response;
  ASSERT_TRUE(Pull(a, "w", 0, kElements, &out, 1, 5000, &response).ok());
  late.join();
  EXPECT_EQ(out, std::vector<float>(kElements, -2.0f));
  EXPECT_EQ(response.header().round(), 1);
  // A push for a round already past is refused: the worker is out of step
  // with this shard's rounds and pulls again (ABORTED), it is not evicted.
  EXPECT_EQ(Push(a, "w", 0, {1.0f}, 0).error_code(), grpc::StatusCode::ABORTED);
}

// A PushPull of one gradient on "w"[0, n) and a read of the same range.
PushPullRequest MakePushPull(const WorkerIdentity& worker, const std::vector<float>& gradient,
                             int64_t push_clock, int64_t pull_clock, uint64_t request_id) {
  PushPullRequest request;
  PushRequest* push = request.mutable_push();
  SetSender(worker, push->mutable_header());
  push->mutable_header()->set_clock(push_clock);
  push->mutable_header()->set_request_id(request_id);
  DenseValues* v = push->add_dense();
  v->mutable_slice()->set_tensor("w");
  v->mutable_slice()->set_length(gradient.size());
  v->set_encoding(FLOAT32);
  EncodeFloat32(gradient, v->mutable_data());
  PullRequest* pull = request.mutable_pull();
  SetSender(worker, pull->mutable_header());
  pull->mutable_header()->set_clock(pull_clock);
  DenseSlice* slice = pull->add_dense();
  slice->set_tensor("w");
  slice->set_length(gradient.size());
  return request;
}

std::vector<float> PulledValues(const PushPullResponse& response) {
  std::vector<float> out(response.pull().dense(0).slice().length());
  EXPECT_TRUE(
      DecodeFloat32(FLOAT32, response.pull().dense(0).data(), absl::MakeSpan(out), false).ok());
  return out;
}

grpc::Status CallPushPull(ParameterService::Stub* ps, const PushPullRequest& request,
                          PushPullResponse* response, int timeout_ms = 5000) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  return ps->PushPull(&context, request, response);
}

TEST_F(ParameterServiceTest, PushPull_Async_ReplyHoldsTheValuesAfterThePush) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  PushPullResponse response;
  ASSERT_TRUE(
      CallPushPull(ps_.get(), MakePushPull(Me(id), {1.0f, 2.0f, 3.0f}, 0, -1, 7), &response).ok());
  EXPECT_EQ(PulledValues(response), (std::vector<float>{-1.0f, -2.0f, -3.0f}));
  EXPECT_EQ(response.push_header().version(), 1);
  EXPECT_EQ(response.pull().header().version(), 1);
  // A retry with the same request id (its reply was lost) is applied once.
  ASSERT_TRUE(
      CallPushPull(ps_.get(), MakePushPull(Me(id), {1.0f, 2.0f, 3.0f}, 0, -1, 7), &response).ok());
  EXPECT_EQ(PulledValues(response), (std::vector<float>{-1.0f, -2.0f, -3.0f}));
  EXPECT_EQ(server_->shard()->stats().pushes, 1);
}

TEST_F(ParameterServiceTest, PushPull_Sync_WaitsForTheRoundItsPushCloses) {
  StartServer(SYNC, 2);
  const uint64_t a = RegisterWorker();
  const uint64_t b = RegisterWorker();
  PushPullResponse first;
  // a pushes round 0 and asks for round 1, which needs b's push too.
  grpc::Status a_status;
  std::thread a_call([&] {
    a_status = CallPushPull(
        ps_.get(), MakePushPull(Me(a), std::vector<float>(kElements, 1.0f), 0, 1, 1), &first);
  });
  // a's push is in, and its pull waits for the round.
  ASSERT_TRUE(WaitUntil([&] { return server_->shard()->stats().waiting_pulls == 1; }));
  EXPECT_EQ(server_->shard()->stats().pushes, 1);
  PushPullResponse second;
  ASSERT_TRUE(CallPushPull(ps_.get(),
                           MakePushPull(Me(b), std::vector<float>(kElements, 3.0f), 0, 1, 1),
                           &second)
                  .ok());
  a_call.join();
  ASSERT_TRUE(a_status.ok()) << a_status.error_message();
  EXPECT_EQ(PulledValues(first), std::vector<float>(kElements, -2.0f));  // the mean
  EXPECT_EQ(PulledValues(second), std::vector<float>(kElements, -2.0f));
  EXPECT_EQ(first.pull().header().round(), 1);
  EXPECT_GT(first.pull().header().wait_seconds(), 0.0);  // it waited, however briefly
}

TEST_F(ParameterServiceTest, PushPull_BadPush_NothingAppliedAndNoPull) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  PushPullRequest request = MakePushPull(Me(id), {1.0f, NAN}, 0, -1, 3);
  PushPullResponse response;
  grpc::Status s = CallPushPull(ps_.get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(response.pull().dense_size(), 0);
  EXPECT_EQ(PullW(id), std::vector<float>(kElements, 0.0f));
  // A good push with a bad pull: the push is applied, the call fails.
  request = MakePushPull(Me(id), {1.0f}, 0, -1, 4);
  request.mutable_pull()->mutable_dense(0)->set_tensor("nope");
  s = CallPushPull(ps_.get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_EQ(PullW(id)[0], -1.0f);
}

TEST_F(ParameterServiceTest, PushPull_TopKPayload_ScatteredIntoTheSlice) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  std::vector<float> gradient(kElements, 0.0f);
  gradient[3] = 2.0f;
  gradient[kElements - 1] = -1.0f;
  PushPullRequest request = MakePushPull(Me(id), gradient, 0, -1, 5);
  DenseValues* v = request.mutable_push()->mutable_dense(0);
  v->set_encoding(INDEXED_NONZEROS);
  v->clear_data();
  EncodeValues(INDEXED_NONZEROS, gradient, v->mutable_data());
  EXPECT_EQ(v->data().size(), 8 + 2 * 8u);
  PushPullResponse response;
  ASSERT_TRUE(CallPushPull(ps_.get(), request, &response).ok());
  std::vector<float> expected(kElements, 0.0f);
  expected[3] = -2.0f;
  expected[kElements - 1] = 1.0f;
  EXPECT_EQ(PulledValues(response), expected);
  // An index past the slice is refused, nothing applied.
  std::string bad;
  EncodeValues(INDEXED_NONZEROS, std::vector<float>(kElements + 1, 1.0f), &bad);
  v->set_data(bad);
  EXPECT_EQ(CallPushPull(ps_.get(), request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(PullW(id), expected);
}

TEST_F(ParameterServiceTest, IndexedNonzerosClaimingHugeSlice_InvalidArgumentNoAllocation) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  // A slice of 2^32 - 1 elements and a payload header saying the same: the
  // counts agree, but no such tensor range exists; it must be refused before
  // 16 GB are allocated to decode it.
  PushRequest request;
  request.mutable_header()->set_worker_id(id);
  request.mutable_header()->set_coordinator_incarnation(server_->incarnation());
  DenseValues* v = request.add_dense();
  v->mutable_slice()->set_tensor("w");
  v->mutable_slice()->set_length(UINT32_MAX);
  v->set_encoding(INDEXED_NONZEROS);
  std::string data(8, '\0');
  const uint32_t length = UINT32_MAX;
  std::memcpy(&data[0], &length, 4);
  v->set_data(data);
  EXPECT_EQ(Push(request).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(PullW(id), std::vector<float>(kElements, 0.0f));
}

TEST_F(ParameterServiceTest, PushPull_TwoWorkerIds_InvalidArgumentNothingApplied) {
  StartServer(ASYNC, 1);
  const uint64_t id = RegisterWorker();
  PushPullRequest request = MakePushPull(Me(id), {1.0f}, 0, -1, 8);
  request.mutable_pull()->mutable_header()->set_worker_id(id + 100);
  PushPullResponse response;
  grpc::Status s = CallPushPull(ps_.get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(PullW(id)[0], 0.0f);
}

// Worker ids restart from 1 in every ps_server process. A worker that
// registered with an earlier process and kept its id is refused on every RPC
// a worker makes (FAILED_PRECONDITION: register again), though the current
// process gave that id to another worker, and nothing it sends counts: no
// gradient in the sync round, no heartbeat, no lease taken or completed.
class StaleWorkerServiceTest : public ParameterServiceTest {
 protected:
  void SetUp() override {
    StartServer(SYNC, 1);
    stale_ = Me(RegisterWorker());
    server_->Shutdown();
    StartServer(SYNC, 1);  // the restarted process, same job, nothing restored
    current_ = RegisterOnly();
    ASSERT_EQ(current_, stale_.id);
    absl::StatusOr<AcquirePartitionResponse> lease = Acquire(current_);
    ASSERT_TRUE(lease.ok()) << lease.status();
    ASSERT_EQ(lease->kind(), AcquirePartitionResponse::TRAIN);
    lease_ = lease->lease_id();
    ASSERT_NE(server_->incarnation(), stale_.coordinator_incarnation);
  }

  grpc::ClientContext* Context() {
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return context_.get();
  }

  void ExpectRefusedAndNothingChanged(const grpc::Status& s) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_NE(s.error_message().find("register again"), std::string::npos) << s.error_message();
    JobStatus status;
    ASSERT_TRUE(coordinator_->GetStatus(Context(), GetStatusRequest(), &status).ok());
    EXPECT_EQ(status.round(), 0);
    EXPECT_EQ(status.completed_size(), 0);
    ASSERT_EQ(status.workers_size(), 1);
    EXPECT_EQ(status.workers(0).state(), ACTIVE);
    EXPECT_EQ(status.workers(0).steps(), 0);
    EXPECT_EQ(PullW(current_), std::vector<float>(kElements, 0.0f));
    // The current worker's round still waits for it, and its push closes it.
    ASSERT_TRUE(Push(current_, "w", 0, std::vector<float>(kElements, 1.0f), 0).ok());
    std::vector<float> out;
    ASSERT_TRUE(Pull(current_, "w", 0, kElements, &out, /*clock=*/1).ok());
    EXPECT_EQ(out, std::vector<float>(kElements, -1.0f));
  }

  WorkerIdentity stale_;
  uint64_t current_ = 0;
  uint64_t lease_ = 0;  // the current worker's
  std::unique_ptr<grpc::ClientContext> context_;
};

TEST_F(StaleWorkerServiceTest, Pull) {
  PullRequest request;
  SetSender(stale_, request.mutable_header());
  request.mutable_header()->set_clock(-1);
  request.add_dense()->set_tensor("w");
  request.mutable_dense(0)->set_length(kElements);
  PullResponse response;
  ExpectRefusedAndNothingChanged(ps_->Pull(Context(), request, &response));
}

TEST_F(StaleWorkerServiceTest, Push) {
  PushRequest request;
  SetSender(stale_, request.mutable_header());
  DenseValues* v = request.add_dense();
  v->mutable_slice()->set_tensor("w");
  v->mutable_slice()->set_length(kElements);
  v->set_encoding(FLOAT32);
  EncodeFloat32(std::vector<float>(kElements, 5.0f), v->mutable_data());
  PushResponse response;
  ExpectRefusedAndNothingChanged(ps_->Push(Context(), request, &response));
}

TEST_F(StaleWorkerServiceTest, PushPull) {
  PushPullResponse response;
  ExpectRefusedAndNothingChanged(CallPushPull(
      ps_.get(), MakePushPull(stale_, std::vector<float>(kElements, 5.0f), 0, -1, 9), &response));
}

TEST_F(StaleWorkerServiceTest, Heartbeat) {
  HeartbeatRequest request;
  SetSender(stale_, &request);
  request.mutable_progress()->set_steps(50);
  HeartbeatResponse response;
  ExpectRefusedAndNothingChanged(coordinator_->Heartbeat(Context(), request, &response));
}

TEST_F(StaleWorkerServiceTest, AcquirePartition) {
  AcquirePartitionRequest request;
  SetSender(stale_, &request);
  AcquirePartitionResponse response;
  ExpectRefusedAndNothingChanged(coordinator_->AcquirePartition(Context(), request, &response));
}

TEST_F(StaleWorkerServiceTest, CompletePartition) {
  CompletePartitionRequest request;
  SetSender(stale_, &request);
  request.set_lease_id(lease_);
  CompletePartitionResponse response;
  ExpectRefusedAndNothingChanged(coordinator_->CompletePartition(Context(), request, &response));
}

TEST_F(StaleWorkerServiceTest, ReportEval) {
  ReportEvalRequest request;
  SetSender(stale_, &request);
  request.set_lease_id(lease_);
  request.mutable_eval()->set_test_accuracy(0.5);
  ReportEvalResponse response;
  ExpectRefusedAndNothingChanged(coordinator_->ReportEval(Context(), request, &response));
}

TEST_F(ParameterServiceTest, GetStatus_ReportsJob) {
  StartServer(SYNC, 2);
  RegisterWorker();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  JobStatus status;
  ASSERT_TRUE(coordinator_->GetStatus(&context, GetStatusRequest(), &status).ok());
  EXPECT_EQ(status.state(), WAITING_FOR_WORKERS);
  EXPECT_EQ(status.live_workers(), 1u);
  EXPECT_EQ(status.partitions_per_epoch(), 8u);
  EXPECT_EQ(status.expected_workers(), 2u);
  EXPECT_EQ(status.mode(), SYNC);
  EXPECT_EQ(status.optimizer(), "sgd(lr=1)");
}

// A coordinator needs a job; a model's name alone is none (Job::Complete
// refuses a job of no tensors and no tables).
TEST(ParameterServerTest, NoJob_CreateFailsNamingTheFlags) {
  ServerOptions options;
  absl::Status s = ParameterServer::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--job=FILE or --model=NAME"), std::string::npos) << s;
  // Nor when --coordinator names only this process (one command for every
  // pod of a StatefulSet): it is the coordinator then.
  options.listen_address = "127.0.0.1:0";
  options.coordinator_address = options.listen_address;
  EXPECT_EQ(ParameterServer::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  JobSpec named_only;
  named_only.set_model("resnet");
  EXPECT_EQ(Job::Complete(named_only).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fulcrum
