#include "server/coordinator.h"

#include "common/model_spec.h"
#include "gtest/gtest.h"

namespace fulcrum {
namespace {

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    JobSpec& job = options_.job;
    job.set_model("softmax");
    job.set_mode(SYNC);
    job.set_epochs(2);
    job.set_batch_size(32);
    job.set_num_workers(2);
    job.mutable_optimizer()->set_kind(SGD);
    const std::vector<TensorSpec> tensors = *ModelTensors("softmax");
    for (const TensorSpec& t : tensors) *job.add_tensors() = t;
    options_.incarnation = 77;
    auto store = ParameterStore::Create({}, *CreateOptimizer(job.optimizer()),
                                        {job.tensors().begin(), job.tensors().end()});
    ASSERT_TRUE(store.ok());
    shard_ = std::make_unique<ParameterShard>(std::move(*store), SYNC);
    coordinator_ = std::make_unique<JobCoordinator>(options_, shard_.get());
  }

  RegisterWorkerResponse Register(const std::string& name) {
    RegisterWorkerRequest request;
    request.set_worker_name(name);
    request.set_host("h");
    absl::StatusOr<RegisterWorkerResponse> r = coordinator_->RegisterWorker(request);
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  }

  absl::StatusOr<ReportProgressResponse> Report(uint64_t id, bool done,
                                                const EvalResult* eval = nullptr,
                                                double loss = 0.5) {
    ReportProgressRequest request;
    request.set_worker_id(id);
    request.set_examples_seen(100);
    request.set_step(3);
    request.set_loss(loss);
    request.set_training_done(done);
    if (eval) *request.mutable_eval() = *eval;
    return coordinator_->ReportProgress(request);
  }

  CoordinatorOptions options_;
  std::unique_ptr<ParameterShard> shard_;
  std::unique_ptr<JobCoordinator> coordinator_;
};

TEST_F(CoordinatorTest, Register_AssignsPartitionsAndFirstEvaluates) {
  RegisterWorkerResponse a = Register("a");
  EXPECT_EQ(coordinator_->state(), WAITING_FOR_WORKERS);
  RegisterWorkerResponse b = Register("b");
  EXPECT_EQ(coordinator_->state(), RUNNING);
  EXPECT_NE(a.worker_id(), 0u);
  EXPECT_NE(a.worker_id(), b.worker_id());
  EXPECT_EQ(a.partition().index(), 0u);
  EXPECT_EQ(b.partition().index(), 1u);
  EXPECT_EQ(a.partition().count(), 2u);
  EXPECT_TRUE(a.evaluator());
  EXPECT_FALSE(b.evaluator());
  EXPECT_EQ(a.job().model(), "softmax");
  EXPECT_EQ(a.job().tensors_size(), 2);
  EXPECT_EQ(a.incarnation(), 77u);
  EXPECT_TRUE(a.shard_addresses().empty());
}

TEST_F(CoordinatorTest, RegisterBeyondJobSize_ResourceExhausted) {
  Register("a");
  Register("b");
  RegisterWorkerRequest request;
  EXPECT_EQ(coordinator_->RegisterWorker(request).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(CoordinatorTest, ReportFromUnknownWorker_FailedPrecondition) {
  EXPECT_EQ(Report(12345, false).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CoordinatorTest, MalformedReports_InvalidArgument) {
  uint64_t id = Register("a").worker_id();
  EXPECT_EQ(Report(id, false, nullptr, -1.0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Report(id, false, nullptr, std::nan("")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EvalResult eval;
  eval.set_test_accuracy(1.5);
  EXPECT_EQ(Report(id, false, &eval).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CoordinatorTest, Lifecycle_RunningEvaluatingFinished) {
  uint64_t a = Register("a").worker_id();
  uint64_t b = Register("b").worker_id();
  EXPECT_EQ(Report(a, true)->job_state(), RUNNING);
  EXPECT_EQ(Report(b, true)->job_state(), EVALUATING);
  EXPECT_FALSE(coordinator_->WaitUntilDone(absl::Now()));
  EvalResult eval;
  eval.set_epoch(2);
  eval.set_test_accuracy(0.85);
  eval.set_examples(10000);
  eval.set_final(true);
  EXPECT_EQ(Report(a, true, &eval)->job_state(), FINISHED);
  EXPECT_TRUE(coordinator_->WaitUntilDone(absl::Now()));
  JobStatus status = coordinator_->GetStatus();
  EXPECT_EQ(status.state(), FINISHED);
  EXPECT_DOUBLE_EQ(status.last_eval().test_accuracy(), 0.85);
  EXPECT_EQ(coordinator_->ResultLine().rfind("result: model=softmax mode=sync "
                                             "epochs=2 test_accuracy=0.8500 ",
                                             0),
            0u);
}

TEST_F(CoordinatorTest, Status_SumsWorkersAndListsThem) {
  uint64_t a = Register("a").worker_id();
  Register("b");
  ASSERT_TRUE(Report(a, false).ok());
  JobStatus s = coordinator_->GetStatus();
  EXPECT_EQ(s.registered_workers(), 2u);
  EXPECT_EQ(s.expected_workers(), 2u);
  EXPECT_EQ(s.examples_seen(), 100u);
  ASSERT_EQ(s.workers_size(), 2);
  EXPECT_EQ(s.workers(0).name(), "a");
  EXPECT_EQ(s.workers(0).step(), 3);
  EXPECT_DOUBLE_EQ(s.loss(), 0.5);
  EXPECT_EQ(s.mode(), SYNC);
  EXPECT_EQ(s.incarnation(), 77u);
}

TEST_F(CoordinatorTest, FinishedWorker_LeavesSyncRounds) {
  uint64_t a = Register("a").worker_id();
  uint64_t b = Register("b").worker_id();
  std::vector<float> w(7840, 1.0f), bias(10, 1.0f);
  ASSERT_TRUE(shard_->Push(a, 0, 0, {{{"softmax/w", 0, 7840}, w},
                                     {{"softmax/b", 0, 10}, bias}})
                  .ok());
  EXPECT_EQ(shard_->version().round, 0);
  ASSERT_TRUE(Report(b, true).ok());
  EXPECT_EQ(shard_->version().round, 1);
}

}  // namespace
}  // namespace fulcrum
