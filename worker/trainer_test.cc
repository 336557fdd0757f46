#include "worker/trainer.h"

#include <set>
#include <random>

#include "common/model_spec.h"
#include "gtest/gtest.h"

namespace fulcrum {
namespace {

// An in-memory parameter server: SGD applied at once, with failures on cue.
class FakePsClient : public PsClient {
 public:
  explicit FakePsClient(const std::vector<TensorSpec>& tensors)
      : params_(ZerosLike(tensors)) {}

  absl::StatusOr<ServerVersion> Pull(int64_t clock, ParameterSet* params) override {
    ++pulls_;
    if (pull_failures_ > 0) {
      --pull_failures_;
      return absl::UnavailableError("server restarting");
    }
    *params = params_;
    ServerVersion v;
    v.version = v.round = pushes_;
    return v;
  }

  absl::StatusOr<ServerVersion> Push(int64_t clock, uint64_t request_id,
                                     const ParameterSet& grads,
                                     uint32_t batch_examples) override {
    if (push_failures_ > 0) {
      --push_failures_;
      // Applied, but the reply was lost: the retry must be de-duplicated.
      Apply(request_id, grads);
      return absl::UnavailableError("reply lost");
    }
    Apply(request_id, grads);
    examples_ += batch_examples;
    ServerVersion v;
    v.version = v.round = pushes_;
    return v;
  }

  void Apply(uint64_t request_id, const ParameterSet& grads) {
    if (!seen_.insert(request_id).second) return;
    ++pushes_;
    for (size_t t = 0; t < grads.size(); ++t) {
      for (size_t i = 0; i < grads[t].size(); ++i) params_[t][i] -= 0.1f * grads[t][i];
    }
  }

  ParameterSet params_;
  std::set<uint64_t> seen_;
  int64_t pushes_ = 0;
  int64_t pulls_ = 0;
  uint64_t examples_ = 0;
  int pull_failures_ = 0;
  int push_failures_ = 0;
};

class FakeCoordinator : public CoordinatorClient {
 public:
  absl::StatusOr<RegisterWorkerResponse> RegisterWorker(
      const RegisterWorkerRequest&) override {
    return absl::UnimplementedError("not used");
  }
  absl::StatusOr<ReportProgressResponse> ReportProgress(
      const ReportProgressRequest& request) override {
    reports_.push_back(request);
    ReportProgressResponse r;
    r.set_job_state(request.training_done() ? (request.has_eval() ? FINISHED : EVALUATING)
                                            : RUNNING);
    return r;
  }
  std::vector<ReportProgressRequest> reports_;
};

// Linearly separable toy data in Fashion-MNIST's shape: class k lights up
// feature block k.
ImageDataset ToyData(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  ImageDataset d;
  d.num_examples = n;
  d.num_features = kImageFeatures;
  d.num_classes = kImageClasses;
  d.features.resize(n * kImageFeatures);
  for (int i = 0; i < n; ++i) {
    const int label = rng() % kImageClasses;
    d.labels.push_back(label);
    for (int j = 0; j < kImageFeatures; ++j) {
      d.features[i * kImageFeatures + j] = noise(rng) + (j / 78 == label ? 1.0f : 0.0f);
    }
  }
  return d;
}

RegisterWorkerResponse Registration(bool evaluator, uint32_t index = 0,
                                    uint32_t count = 2) {
  RegisterWorkerResponse r;
  r.set_worker_id(5);
  r.set_evaluator(evaluator);
  r.mutable_partition()->set_index(index);
  r.mutable_partition()->set_count(count);
  JobSpec* job = r.mutable_job();
  job->set_model("softmax");
  job->set_mode(ASYNC);
  job->set_batch_size(10);
  job->set_epochs(3);
  job->set_seed(1);
  return r;
}

TrainerOptions FastOptions() {
  TrainerOptions o;
  o.retry.initial_backoff = absl::Milliseconds(1);
  o.retry.max_backoff = absl::Milliseconds(2);
  return o;
}

TEST(TrainerTest, Run_TrainsItsPartitionEveryEpochAndEvaluates) {
  std::unique_ptr<Model> model = *CreateModel("softmax");
  FakePsClient ps(model->tensors());
  FakeCoordinator coordinator;
  ImageDataset train = ToyData(200, 1), test = ToyData(100, 2);
  Trainer trainer(FastOptions(), Registration(true, 1, 2), model.get(), &ps,
                  &coordinator, &train, &test);
  ASSERT_TRUE(trainer.Run().ok());
  // Partition 1 of 2 is 100 examples: 10 batches of 10, for 3 epochs.
  EXPECT_EQ(ps.pushes_, 30);
  EXPECT_EQ(ps.examples_, 300u);
  ASSERT_FALSE(coordinator.reports_.empty());
  const ReportProgressRequest& last = coordinator.reports_.back();
  EXPECT_TRUE(last.training_done());
  EXPECT_EQ(last.examples_seen(), 300u);
  ASSERT_TRUE(last.has_eval());
  EXPECT_TRUE(last.eval().final());
  EXPECT_EQ(last.eval().epoch(), 3u);
  EXPECT_GT(last.eval().test_accuracy(), 0.9);  // separable toy data
  int epoch_evals = 0;
  for (const auto& r : coordinator.reports_) {
    if (r.has_eval() && !r.eval().final()) ++epoch_evals;
  }
  EXPECT_EQ(epoch_evals, 2);  // after epochs 1 and 2; the final covers 3
}

TEST(TrainerTest, NonEvaluator_DoesNotEvaluate) {
  std::unique_ptr<Model> model = *CreateModel("softmax");
  FakePsClient ps(model->tensors());
  FakeCoordinator coordinator;
  ImageDataset train = ToyData(100, 1), test = ToyData(50, 2);
  Trainer trainer(FastOptions(), Registration(false), model.get(), &ps,
                  &coordinator, &train, &test);
  ASSERT_TRUE(trainer.Run().ok());
  for (const auto& r : coordinator.reports_) EXPECT_FALSE(r.has_eval());
}

TEST(TrainerTest, UnavailableServer_RetriedAndPushAppliedOnce) {
  std::unique_ptr<Model> model = *CreateModel("softmax");
  FakePsClient ps(model->tensors());
  ps.pull_failures_ = 2;
  ps.push_failures_ = 3;
  FakeCoordinator coordinator;
  ImageDataset train = ToyData(40, 1);
  Trainer trainer(FastOptions(), Registration(false, 0, 1), model.get(), &ps,
                  &coordinator, &train, nullptr);
  ASSERT_TRUE(trainer.Run().ok());
  EXPECT_EQ(ps.pushes_, 12);  // 4 batches x 3 epochs, none applied twice
}

TEST(TrainerTest, ServerDownForGood_ErrorReturned) {
  std::unique_ptr<Model> model = *CreateModel("softmax");
  FakePsClient ps(model->tensors());
  ps.pull_failures_ = 1000;
  FakeCoordinator coordinator;
  ImageDataset train = ToyData(40, 1);
  TrainerOptions options = FastOptions();
  options.retry.max_attempts = 3;
  Trainer trainer(options, Registration(false, 0, 1), model.get(), &ps,
                  &coordinator, &train, nullptr);
  EXPECT_EQ(trainer.Run().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ps.pulls_, 3);
}

TEST(TrainerTest, DataOfWrongShape_FailedPrecondition) {
  std::unique_ptr<Model> model = *CreateModel("softmax");
  FakePsClient ps(model->tensors());
  FakeCoordinator coordinator;
  ImageDataset train = ToyData(20, 1);
  train.num_features = 100;
  Trainer trainer(FastOptions(), Registration(false), model.get(), &ps,
                  &coordinator, &train, nullptr);
  EXPECT_EQ(trainer.Run().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ps.pushes_, 0);
}

}  // namespace
}  // namespace fulcrum
