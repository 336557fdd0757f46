// The Trainer against the real JobCoordinator and ParameterShard, reached
// through in-process clients (no gRPC) that can fail on cue.
#include "worker/trainer.h"

#include <map>
#include <random>
#include <set>
#include <thread>

#include "common/model_spec.h"
#include "gtest/gtest.h"
#include "server/coordinator/coordinator.h"
#include "server/job_spec.h"
#include "server/shard/parameter_shard.h"
#include "tests/wait.h"
#include "worker/workload.h"

namespace fulcrum {
namespace {

// Gradient computations as they happen: how many have started, and which
// one (1-based) last filled each gradient buffer (buffers move between
// batches by swapping, so a buffer names its step).
struct ComputeLog {
  std::atomic<int> started{0};
  absl::Mutex mu;
  std::map<const float*, int> step_of ABSL_GUARDED_BY(mu);

  int StepOf(const ParameterBatch& gradients) {
    absl::MutexLock lock(&mu);
    auto it = step_of.find(gradients.dense[0].data());
    return it == step_of.end() ? 0 : it->second;
  }
};

// A PsClient calling a ParameterShard directly. Fails the next
// `pull_failures` pulls with UNAVAILABLE, and answers the next
// `lost_push_replies` pushes with UNAVAILABLE after applying them (the reply
// was lost).
class LocalPsClient : public PsClient {
 public:
  explicit LocalPsClient(ParameterShard* shard) : shard_(shard) {}

  absl::Status Connect(const std::vector<std::string>& shards,
                       const std::vector<std::string>& backups) override {
    return shards.size() <= 1 ? absl::OkStatus()
                              : absl::InvalidArgumentError("one local shard only");
  }
  int num_shards() const override { return 1; }

  absl::StatusOr<ServerVersion> Pull(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                                     ParameterBatch* batch) override {
    const int64_t clock = clocks[0];
    if (Take(pull_failures)) return absl::UnavailableError("injected");
    if (pull_timeouts_advance != nullptr) {
      ++pull_timeouts;
      pull_timeouts_advance->Advance(absl::Minutes(1));
      return absl::DeadlineExceededError("round 3 not complete before the deadline");
    }
    batch->dense.resize(batch->tensors.size());
    std::vector<SliceRef> slices;
    std::vector<absl::Span<float>> out;
    for (size_t i = 0; i < batch->tensors.size(); ++i) {
      batch->dense[i].resize(ElementCount(batch->tensors[i]));
      slices.push_back({batch->tensors[i].name(), 0, batch->dense[i].size()});
      out.push_back(absl::MakeSpan(batch->dense[i]));
    }
    absl::StatusOr<ShardVersion> v =
        shard_->Pull(worker, clock, slices, out, absl::Now() + absl::Seconds(10));
    if (!v.ok()) return v.status();
    ServerVersion sv;
    sv.version = v->version;
    sv.round = v->round;
    sv.wait_seconds = v->wait_seconds;
    sv.rounds = {v->round};
    return sv;
  }

  absl::StatusOr<ServerVersion> Push(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                                     uint64_t request_id, const ParameterBatch& batch,
                                     uint32_t) override {
    const int64_t clock = clocks[0];
    std::vector<SliceGradient> gradients;
    for (size_t i = 0; i < batch.tensors.size(); ++i) {
      gradients.push_back({{batch.tensors[i].name(), 0, batch.dense[i].size()}, batch.dense[i]});
    }
    for (const std::vector<float>& g : batch.dense) {
      size_t nonzeros = 0;
      for (float x : g) nonzeros += x != 0.0f;
      absl::MutexLock lock(&mu_);
      max_pushed_nonzeros[g.size()] = std::max(max_pushed_nonzeros[g.size()], nonzeros);
    }
    absl::StatusOr<ShardVersion> v = shard_->Push(worker, request_id, clock, gradients);
    if (!v.ok()) return v.status();
    if (Take(lost_push_replies)) return absl::UnavailableError("reply lost");
    ServerVersion sv;
    sv.version = v->version;
    sv.round = v->round;
    sv.rounds = {v->round};
    return sv;
  }

  // Push, then pull. With `computes` set, first waits (up to `probe_wait`)
  // for the trainer to start computing another step after the one whose
  // gradient this call carries, and counts the calls that saw it in
  // `overlapped`. With `steps_per_partition` set too, the calls carrying a
  // partition's last step (after which nothing is computed) do not wait.
  absl::StatusOr<ServerVersion> PushPull(const WorkerIdentity& worker,
                                         absl::Span<const int64_t> push_clocks, uint64_t request_id,
                                         const ParameterBatch& gradients, uint32_t examples,
                                         absl::Span<const int64_t> pull_clocks,
                                         ParameterBatch* params) override {
    ++pushpulls;
    if (computes != nullptr) {
      const int step = computes->StepOf(gradients);
      const bool last = steps_per_partition > 0 && step % steps_per_partition == 0;
      const absl::Time give_up = absl::Now() + (last ? absl::ZeroDuration() : probe_wait);
      while (computes->started.load() <= step && absl::Now() < give_up) {
        absl::SleepFor(absl::Microseconds(50));
      }
      if (computes->started.load() > step) ++overlapped;
    }
    return PsClient::PushPull(worker, push_clocks, request_id, gradients, examples, pull_clocks,
                              params);
  }

  std::atomic<int> pull_failures{0};
  // Set: every pull times out waiting and moves this clock a minute on.
  ManualClock* pull_timeouts_advance = nullptr;
  std::atomic<int> pull_timeouts{0};
  std::atomic<int> lost_push_replies{0};
  std::atomic<int> pushpulls{0};
  ComputeLog* computes = nullptr;
  absl::Duration probe_wait = absl::Milliseconds(500);
  int steps_per_partition = 0;
  std::atomic<int> overlapped{0};
  absl::Mutex mu_;
  // By tensor size: the most nonzero gradient elements any push carried.
  std::map<size_t, size_t> max_pushed_nonzeros ABSL_GUARDED_BY(mu_);

 private:
  static bool Take(std::atomic<int>& counter) {
    int n = counter.load();
    while (n > 0) {
      if (counter.compare_exchange_weak(n, n - 1)) return true;
    }
    return false;
  }
  ParameterShard* const shard_;
};

class LocalCoordinatorClient : public CoordinatorClient {
 public:
  explicit LocalCoordinatorClient(JobCoordinator* c) : c_(c) {}
  absl::StatusOr<RegisterWorkerResponse> RegisterWorker(const RegisterWorkerRequest& r) override {
    return c_->RegisterWorker(r);
  }
  absl::StatusOr<HeartbeatResponse> Heartbeat(const HeartbeatRequest& r) override {
    ++heartbeats;
    return c_->Heartbeat(r);
  }
  absl::StatusOr<AcquirePartitionResponse> AcquirePartition(
      const AcquirePartitionRequest& r) override {
    return c_->AcquirePartition(r);
  }
  absl::Status CompletePartition(const CompletePartitionRequest& r) override {
    return c_->CompletePartition(r);
  }
  absl::Status ReportEval(const ReportEvalRequest& r) override { return c_->ReportEval(r); }
  std::atomic<int> heartbeats{0};

 private:
  JobCoordinator* const c_;
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

// A factory for the image workload over the given data.
WorkloadFactory Images(const ImageDataset* train, const ImageDataset* test) {
  return [train, test](const JobSpec&) -> absl::StatusOr<std::unique_ptr<Workload>> {
    return MakeImageWorkload(train, test);
  };
}

// Another workload's every call, for a test to change one of them.
class DelegatingWorkload : public Workload {
 public:
  explicit DelegatingWorkload(std::unique_ptr<Workload> inner) : inner_(std::move(inner)) {}
  absl::Status Configure(const JobSpec& job) override { return inner_->Configure(job); }
  absl::StatusOr<int64_t> LoadPartition(const DataPartition& p) override {
    return inner_->LoadPartition(p);
  }
  void PlanStep(absl::Span<const int64_t> examples, ParameterBatch* batch) override {
    inner_->PlanStep(examples, batch);
  }
  absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t> examples,
                                          const ParameterBatch& params,
                                          ParameterBatch* grads) override {
    return inner_->ComputeGradients(examples, params, grads);
  }
  absl::StatusOr<EvalResult> Evaluate(const PullFn& pull) override {
    return inner_->Evaluate(pull);
  }

 private:
  const std::unique_ptr<Workload> inner_;
};

// The image workload, logging its gradient computations in `*log`.
class CountingWorkload : public DelegatingWorkload {
 public:
  CountingWorkload(std::unique_ptr<Workload> inner, ComputeLog* log)
      : DelegatingWorkload(std::move(inner)), log_(log) {}
  absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t> examples,
                                          const ParameterBatch& params,
                                          ParameterBatch* grads) override {
    const int step = ++log_->started;
    const absl::StatusOr<double> loss =
        DelegatingWorkload::ComputeGradients(examples, params, grads);
    absl::MutexLock lock(&log_->mu);
    log_->step_of[grads->dense[0].data()] = step;
    return loss;
  }

 private:
  ComputeLog* const log_;
};

class TrainerTest : public ::testing::Test {
 protected:
  void Init(ConsistencyMode mode, uint32_t num_workers, uint32_t epochs, uint32_t partitions) {
    JobSpec& job = job_;
    job.set_model("softmax");
    job.set_mode(mode);
    job.set_epochs(epochs);
    job.set_batch_size(10);
    job.set_seed(1);
    job.set_num_workers(num_workers);
    job.set_partitions_per_epoch(partitions);
    job.mutable_optimizer()->set_kind(SGD);
    job.mutable_optimizer()->set_learning_rate(0.1f);
    const std::vector<TensorSpec> tensors = *ModelTensors("softmax");
    job.clear_tensors();  // a test may Init twice
    for (const TensorSpec& t : tensors) *job.add_tensors() = t;
    options_.job = *Job::Complete(job);  // a test's job is right
    options_.heartbeat_interval = absl::Milliseconds(20);
    auto store = ParameterStore::Create({}, *CreateOptimizer(job.optimizer()), tensors);
    ASSERT_TRUE(store.ok());
    shard_ = std::make_unique<ParameterShard>(std::move(*store), mode, 1);
    group_ = std::make_unique<ShardGroup>(ShardGroupOptions{}, shard_.get());
    coordinator_ = std::make_unique<JobCoordinator>(options_, group_.get());
    ps_ = std::make_unique<LocalPsClient>(shard_.get());
    client_ = std::make_unique<LocalCoordinatorClient>(coordinator_.get());
  }

  TrainerOptions Options(const std::string& name) {
    TrainerOptions o;
    o.session.worker_name = name;
    o.session.retry.initial_backoff = absl::Milliseconds(1);
    o.session.retry.max_backoff = absl::Milliseconds(2);
    return o;
  }

  JobSpec job_;  // what a test sets before Init, which completes it into options_.job
  CoordinatorOptions options_;
  std::unique_ptr<ParameterShard> shard_;
  std::unique_ptr<ShardGroup> group_;
  std::unique_ptr<JobCoordinator> coordinator_;
  std::unique_ptr<LocalPsClient> ps_;
  std::unique_ptr<LocalCoordinatorClient> client_;
  ImageDataset train_ = ToyData(400, 1);
  ImageDataset test_ = ToyData(200, 2);
};

TEST_F(TrainerTest, OneWorker_TrainsEveryPartitionAndEvaluates) {
  Init(ASYNC, 1, 2, 4);
  MetricsRegistry registry;
  const WorkerMetrics metrics = WorkerMetrics::Register(&registry);
  TrainerOptions options = Options("a");
  options.session.metrics = &metrics;
  Trainer trainer(options, ps_.get(), client_.get(), Images(&train_, &test_));
  ASSERT_TRUE(trainer.Run().ok());
  EXPECT_EQ(metrics.steps->value(), 80);
  EXPECT_EQ(metrics.examples->value(), 800);
  EXPECT_EQ(metrics.partitions->value(), 8);
  EXPECT_EQ(metrics.evaluations->value(), 2);
  EXPECT_EQ(metrics.registrations->value(), 1);
  EXPECT_EQ(metrics.step_seconds->snapshot().count, 80u);
  EXPECT_GT(metrics.loss->value(), 0);
  EXPECT_EQ(trainer.stats().partitions, 8);
  EXPECT_EQ(trainer.stats().steps, 80);       // 400 examples / batch 10, 2 epochs
  EXPECT_EQ(trainer.stats().evaluations, 2);  // after epoch 1, and final
  JobStatus status = coordinator_->GetStatus();
  EXPECT_EQ(status.state(), FINISHED);
  EXPECT_TRUE(status.last_eval().final());
  EXPECT_GT(status.last_eval().test_accuracy(), 0.9);  // separable toy data
  EXPECT_EQ(status.completed_size(), 8);
  EXPECT_EQ(status.examples_seen(), 800u);  // progress flushed at the end
  EXPECT_GT(client_->heartbeats.load(), 0);
}

TEST_F(TrainerTest, OverlappedAsync_ComputesWhileThePushPullIsInFlight) {
  job_.set_overlap_communication(true);
  Init(ASYNC, 1, 2, 4);
  ComputeLog computes;
  ps_->computes = &computes;
  // Every call but a partition's last must see the next step start: wait
  // for it as long as it takes (the cap only stops a broken trainer).
  ps_->steps_per_partition = 10;  // 100 examples a partition, batches of 10
  ps_->probe_wait = absl::Seconds(60);
  Trainer trainer(Options("a"), ps_.get(), client_.get(),
                  [&](const JobSpec&) -> absl::StatusOr<std::unique_ptr<Workload>> {
                    return std::make_unique<CountingWorkload>(MakeImageWorkload(&train_, &test_),
                                                              &computes);
                  });
  ASSERT_TRUE(trainer.Run().ok());
  EXPECT_EQ(trainer.stats().steps, 80);
  EXPECT_EQ(shard_->stats().pushes, 80);  // every step's gradient, once
  // Every step's push-pull but each partition's last saw the next step's
  // gradient being computed meanwhile.
  EXPECT_EQ(ps_->pushpulls.load(), 80);
  EXPECT_EQ(ps_->overlapped.load(), 80 - 8);
  EXPECT_GT(coordinator_->GetStatus().last_eval().test_accuracy(), 0.9);
}

// A workload that fails its `fail_at`th step (1-based) with DATA_LOSS.
class FailingWorkload : public DelegatingWorkload {
 public:
  FailingWorkload(std::unique_ptr<Workload> inner, int fail_at)
      : DelegatingWorkload(std::move(inner)), fail_at_(fail_at) {}
  absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t> examples,
                                          const ParameterBatch& params,
                                          ParameterBatch* grads) override {
    if (++steps_ == fail_at_) return absl::DataLossError("the batch file is truncated");
    return DelegatingWorkload::ComputeGradients(examples, params, grads);
  }

 private:
  const int fail_at_;
  int steps_ = 0;
};

// A step's error ends the run with it, before that step's push, and the
// partition is not reported trained; with and without overlap.
TEST_F(TrainerTest, ComputeGradientsFails_RunEndsWithItsErrorBeforeThatStepsPush) {
  for (const bool overlap : {false, true}) {
    SCOPED_TRACE(overlap ? "overlapped" : "not overlapped");
    job_.set_overlap_communication(overlap);
    Init(ASYNC, 1, 2, 4);
    Trainer trainer(Options("a"), ps_.get(), client_.get(),
                    [&](const JobSpec&) -> absl::StatusOr<std::unique_ptr<Workload>> {
                      return std::make_unique<FailingWorkload>(MakeImageWorkload(&train_, &test_),
                                                               /*fail_at=*/3);
                    });
    const absl::Status run = trainer.Run();
    EXPECT_EQ(run.code(), absl::StatusCode::kDataLoss) << run;
    EXPECT_NE(run.message().find("truncated"), std::string::npos) << run;
    EXPECT_EQ(shard_->stats().pushes, 2);  // the two steps computed
    EXPECT_EQ(coordinator_->GetStatus().completed_size(), 0);
  }
}

TEST_F(TrainerTest, NotOverlapped_OnePushPullPerStepButTheLast) {
  Init(ASYNC, 1, 2, 4);  // overlap_communication unset
  ComputeLog computes;
  ps_->computes = &computes;
  ps_->probe_wait = absl::Milliseconds(20);  // each call waits this long in vain
  Trainer trainer(Options("a"), ps_.get(), client_.get(),
                  [&](const JobSpec&) -> absl::StatusOr<std::unique_ptr<Workload>> {
                    return std::make_unique<CountingWorkload>(MakeImageWorkload(&train_, &test_),
                                                              &computes);
                  });
  ASSERT_TRUE(trainer.Run().ok());
  EXPECT_EQ(shard_->stats().pushes, 80);
  EXPECT_EQ(ps_->pushpulls.load(), 80 - 8);  // the last step of a partition pushes only
  EXPECT_EQ(ps_->overlapped.load(), 0);
}

TEST_F(TrainerTest, TopK_PushesAtMostKPerTensorAndStillLearns) {
  job_.set_gradient_encoding(INDEXED_NONZEROS);
  job_.set_topk_ratio(0.1f);
  Init(ASYNC, 1, 3, 4);
  Trainer trainer(Options("a"), ps_.get(), client_.get(), Images(&train_, &test_));
  ASSERT_TRUE(trainer.Run().ok());
  absl::MutexLock lock(&ps_->mu_);
  ASSERT_EQ(ps_->max_pushed_nonzeros.size(), 2u);  // weights and biases
  for (const auto& [size, nonzeros] : ps_->max_pushed_nonzeros) {
    EXPECT_LE(nonzeros, (size + 9) / 10) << "tensor of " << size;
    EXPECT_GT(nonzeros, 0u);
  }
  EXPECT_GT(coordinator_->GetStatus().last_eval().test_accuracy(), 0.9);
}

TEST_F(TrainerTest, TwoWorkersSync_ShareTheWorkAndFinish) {
  Init(SYNC, 2, 2, 8);
  Trainer a(Options("a"), ps_.get(), client_.get(), Images(&train_, &test_));
  Trainer b(Options("b"), ps_.get(), client_.get(), Images(&train_, &test_));
  absl::Status sa, sb;
  std::thread ta([&] { sa = a.Run(); });
  std::thread tb([&] { sb = b.Run(); });
  ta.join();
  tb.join();
  ASSERT_TRUE(sa.ok()) << sa;
  ASSERT_TRUE(sb.ok()) << sb;
  EXPECT_EQ(a.stats().partitions + b.stats().partitions, 16);
  EXPECT_EQ(a.stats().steps + b.stats().steps, 80);
  JobStatus status = coordinator_->GetStatus();
  EXPECT_EQ(status.state(), FINISHED);
  EXPECT_GT(status.last_eval().test_accuracy(), 0.9);
  // A round holds one or two pushes (how many pair up depends on timing).
  EXPECT_GE(status.round(), 40);
  EXPECT_LE(status.round(), 80);
}

TEST_F(TrainerTest, UnavailableServer_RetriedAndPushAppliedOnce) {
  Init(ASYNC, 1, 1, 2);
  ps_->pull_failures = 3;
  ps_->lost_push_replies = 3;
  Trainer trainer(Options("a"), ps_.get(), client_.get(), Images(&train_, &test_));
  absl::Status s = trainer.Run();
  ASSERT_TRUE(s.ok()) << s;
  // 40 steps; the pushes whose replies were "lost" were retried with the
  // same request id and not applied twice.
  EXPECT_EQ(shard_->stats().pushes, 40);
  EXPECT_EQ(shard_->stats().duplicate_pushes, 3);
}

TEST_F(TrainerTest, DeclaredDead_RegistersAgainAndFinishes) {
  Init(ASYNC, 1, 2, 4);
  TrainerOptions options = Options("a");
  options.step_delay = absl::Milliseconds(2);  // 160 ms of work in all
  Trainer trainer(options, ps_.get(), client_.get(), Images(&train_, &test_));
  std::thread killer([&] {
    // Mid-job (a partition done, another in progress), replace the worker's
    // registration, as the coordinator does when it declares a worker dead.
    while (true) {
      const JobStatus s = coordinator_->GetStatus();
      if (s.workers_size() == 1 && s.workers(0).partitions_completed() >= 1 &&
          s.workers(0).state() == ACTIVE) {
        break;
      }
      absl::SleepFor(absl::Microseconds(200));
    }
    RegisterWorkerRequest impostor;
    impostor.set_worker_name("a");
    ASSERT_TRUE(coordinator_->RegisterWorker(impostor).ok());
  });
  absl::Status s = trainer.Run();
  killer.join();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GE(trainer.stats().registrations, 2);
  JobStatus status = coordinator_->GetStatus();
  EXPECT_EQ(status.state(), FINISHED);
  // Still every partition exactly once per epoch.
  std::set<std::pair<uint32_t, uint32_t>> done;
  for (const PartitionRecord& r : status.completed()) {
    EXPECT_TRUE(done.insert({r.epoch(), r.index()}).second);
  }
  EXPECT_EQ(done.size(), 8u);
}

TEST_F(TrainerTest, Stop_WorkerExitsCleanly) {
  Init(SYNC, 1, 1000, 4);
  TrainerOptions options = Options("a");
  options.step_delay = absl::Milliseconds(1);
  Trainer trainer(options, ps_.get(), client_.get(), Images(&train_, &test_));
  std::thread stopper([&] {
    // Mid-job: once it has trained a few steps.
    EXPECT_TRUE(WaitUntil([&] { return trainer.stats().steps >= 5; }));
    coordinator_->Stop();
  });
  absl::Status s = trainer.Run();
  stopper.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(coordinator_->state(), STOPPED);
  EXPECT_LT(trainer.stats().partitions, 4000);
}

TEST_F(TrainerTest, PullsTimingOut_AskedAgainUntilTheStartTimeoutThenGivesUp) {
  Init(SYNC, 1, 1, 2);
  ManualClock clock;
  ps_->pull_timeouts_advance = &clock;
  TrainerOptions options = Options("a");
  options.session.clock = &clock;
  options.session.start_timeout = absl::Minutes(10);
  Trainer trainer(options, ps_.get(), client_.get(), Images(&train_, &test_));
  absl::Status s = trainer.Run();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  // Asked at minutes 0, 1, ..., 9 of the trainer's clock; the tenth reply
  // comes at minute 10, when the timeout has run out.
  EXPECT_EQ(ps_->pull_timeouts.load(), 10);
  EXPECT_EQ(shard_->stats().pushes, 0);
}

TEST_F(TrainerTest, NoTestDataWhenAskedToEvaluate_Unimplemented) {
  Init(ASYNC, 1, 1, 1);
  Trainer trainer(Options("a"), ps_.get(), client_.get(), Images(&train_, nullptr));
  EXPECT_EQ(trainer.Run().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(trainer.stats().registrations, 1);
}

TEST_F(TrainerTest, DataOfWrongShape_FailedPrecondition) {
  Init(ASYNC, 1, 1, 2);
  ImageDataset bad = ToyData(20, 1);
  bad.num_features = 100;
  Trainer trainer(Options("a"), ps_.get(), client_.get(), Images(&bad, nullptr));
  EXPECT_EQ(trainer.Run().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(shard_->stats().pushes, 0);
}

}  // namespace
}  // namespace fulcrum
