#include "worker/trainer.h"

#include <algorithm>
#include <future>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/model_spec.h"

namespace fulcrum {
namespace {

bool IsEvicted(const absl::Status& s) { return s.code() == absl::StatusCode::kFailedPrecondition; }

// The examples of the mini-batch that starts at `pos` of `order`.
absl::Span<const int64_t> MiniBatchAt(const std::vector<int64_t>& order, size_t pos,
                                      size_t batch_size) {
  return absl::Span<const int64_t>(&order[pos], std::min(batch_size, order.size() - pos));
}

}  // namespace

TrainerMetrics TrainerMetrics::Register(MetricsRegistry* registry) {
  TrainerMetrics m;
  m.steps = registry->AddCounter("fulcrum_worker_steps_total", "Training steps taken.");
  m.examples = registry->AddCounter("fulcrum_worker_examples_total", "Examples trained.");
  m.partitions =
      registry->AddCounter("fulcrum_worker_partitions_total", "Partitions trained to the end.");
  m.evaluations = registry->AddCounter("fulcrum_worker_evaluations_total", "Evaluations run.");
  m.registrations = registry->AddCounter("fulcrum_worker_registrations_total",
                                         "Registrations with the coordinator.");
  m.wait_seconds = registry->AddCounter("fulcrum_worker_wait_seconds_total",
                                        "Time pulls waited for sync rounds or slower ssp workers.");
  m.loss = registry->AddGauge("fulcrum_worker_loss", "Last mini-batch's training loss.");
  m.pull_latency = registry->AddHistogram("fulcrum_worker_pull_seconds",
                                          "Pull RPC time, waits included.", LatencyBuckets());
  m.push_latency =
      registry->AddHistogram("fulcrum_worker_push_seconds", "Push RPC time.", LatencyBuckets());
  m.pushpull_latency = registry->AddHistogram(
      "fulcrum_worker_pushpull_seconds",
      "PushPull RPC time (a step's gradient out, the next step's parameters back), waits "
      "included.",
      LatencyBuckets());
  m.step_seconds = registry->AddHistogram("fulcrum_worker_step_seconds",
                                          "A whole step: pull, compute, push.", LatencyBuckets());
  return m;
}

Trainer::Trainer(const TrainerOptions& options, PsClient* ps, CoordinatorClient* coordinator,
                 WorkloadFactory workload_factory)
    : options_(options),
      ps_(ps),
      coordinator_(coordinator),
      workload_factory_(std::move(workload_factory)) {}

Trainer::~Trainer() {
  shutdown_heartbeat_.Notify();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

TrainerStats Trainer::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Status Trainer::Register() {
  RegisterWorkerRequest request;
  request.set_worker_name(options_.worker_name);
  request.set_host(options_.host);
  absl::StatusOr<RegisterWorkerResponse> response;
  FULCRUM_RETURN_IF_ERROR(RetryWithBackoff(options_.retry, IsUnavailable, [&] {
    response = coordinator_->RegisterWorker(request);
    return response.status();
  }));
  const JobSpec& job = response->job();
  if (workload_ == nullptr || job.model() != job_.model()) {
    FULCRUM_ASSIGN_OR_RETURN(workload_, workload_factory_(job));
  }
  FULCRUM_RETURN_IF_ERROR(workload_->Configure(job));
  FULCRUM_RETURN_IF_ERROR(
      ps_->Connect({response->shard_addresses().begin(), response->shard_addresses().end()}));
  ps_->set_gradient_encoding(job.gradient_encoding());
  if (job.gradient_encoding() != INDEXED_NONZEROS) {
    sparsifier_.reset();
  } else if (sparsifier_ == nullptr) {  // a re-registration keeps the residual
    sparsifier_ = std::make_unique<TopKSparsifier>(job.topk_ratio());
  }
  job_ = job;
  if (response->heartbeat_interval_seconds() > 0) {
    heartbeat_interval_ = absl::Seconds(response->heartbeat_interval_seconds());
  }
  {
    absl::MutexLock lock(&mu_);
    worker_ = WorkerIdentity{response->worker_id(), response->incarnation()};
    progress_ = WorkerProgress();
    loss_sum_ = 0;
    loss_count_ = 0;
    ++stats_.registrations;
  }
  if (options_.metrics) options_.metrics->registrations->Increment();
  clocks_.Reset(job.mode(), ps_->num_shards());
  evicted_ = false;
  FULCRUM_LOG(INFO) << "registered as worker " << response->worker_id() << ": model " << job.model()
                    << ", mode " << ConsistencyModeName(job.mode()) << ", " << job.epochs()
                    << " epochs of " << job.partitions_per_epoch() << " partitions, batch "
                    << job.batch_size();
  return absl::OkStatus();
}

void Trainer::SendHeartbeat() {
  absl::MutexLock heartbeat_lock(&heartbeat_mu_);
  HeartbeatRequest request;
  WorkerIdentity sender;
  {
    absl::MutexLock lock(&mu_);
    sender = worker_;
    SetSender(sender, &request);
    if (loss_count_ > 0) progress_.set_loss(loss_sum_ / loss_count_);
    loss_sum_ = 0;
    loss_count_ = 0;
    *request.mutable_progress() = progress_;
  }
  absl::StatusOr<HeartbeatResponse> response = coordinator_->Heartbeat(request);
  if (response.ok()) {
    heartbeat_warned_ = false;
    if (response->job_state() == STOPPED) stopped_ = true;
  } else if (IsEvicted(response.status())) {
    // Only if the id is still ours: a re-registration may have raced this.
    if (worker() == sender && !evicted_) {
      FULCRUM_LOG(WARNING) << "coordinator no longer knows worker " << sender.id << ": "
                           << response.status().message();
      evicted_ = true;
    }
  } else if (!heartbeat_warned_) {
    heartbeat_warned_ = true;
    FULCRUM_LOG(WARNING) << "heartbeat failed: " << response.status();
  }
}

void Trainer::HeartbeatLoop() {
  while (!shutdown_heartbeat_.WaitForNotificationWithTimeout(heartbeat_interval_)) {
    SendHeartbeat();
  }
}

template <typename Call>
absl::StatusOr<ServerVersion> Trainer::CallWaiting(Histogram* latency, Call call) {
  const absl::Time give_up = options_.clock->Now() + options_.start_timeout;
  while (true) {
    absl::StatusOr<ServerVersion> version;
    const absl::Time start = options_.clock->Now();
    absl::Status s = RetryWithBackoff(options_.retry, IsUnavailable, [&] {
      version = call();
      return version.status();
    });
    if (options_.metrics && s.ok()) {
      latency->Observe(absl::ToDoubleSeconds(options_.clock->Now() - start));
      options_.metrics->wait_seconds->Increment(version->wait_seconds);
    }
    // A call that timed out waiting for the job to start, a slow round or a
    // slow worker is made again, up to start_timeout.
    if (s.code() == absl::StatusCode::kDeadlineExceeded && options_.clock->Now() < give_up &&
        !Interrupted()) {
      FULCRUM_LOG(INFO) << "still waiting: " << s.message();
      continue;
    }
    if (!s.ok()) return s;
    absl::MutexLock lock(&mu_);
    progress_.set_wait_seconds(progress_.wait_seconds() + version->wait_seconds);
    return version;
  }
}

absl::StatusOr<ServerVersion> Trainer::PullWithRetry(absl::Span<const int64_t> clocks,
                                                     ParameterBatch* batch) {
  return CallWaiting(options_.metrics ? options_.metrics->pull_latency : nullptr,
                     [&] { return ps_->Pull(worker(), clocks, batch); });
}

absl::StatusOr<ServerVersion> Trainer::PushPullWithRetry(
    absl::Span<const int64_t> push_clocks, uint32_t examples, absl::Span<const int64_t> pull_clocks,
    uint64_t request_id, const ParameterBatch& grads, ParameterBatch* params) {
  // A retry carries the same request id: the push is applied once even if
  // the first attempt's pull timed out after it.
  return CallWaiting(options_.metrics ? options_.metrics->pushpull_latency : nullptr, [&] {
    return ps_->PushPull(worker(), push_clocks, request_id, grads, examples, pull_clocks, params);
  });
}

absl::StatusOr<ServerVersion> Trainer::PushWithRetry(absl::Span<const int64_t> clocks,
                                                     uint32_t examples) {
  const uint64_t request_id = next_request_id_++;
  absl::StatusOr<ServerVersion> version;
  const absl::Time start = options_.clock->Now();
  absl::Status s = RetryWithBackoff(options_.retry, IsUnavailable, [&] {
    version = ps_->Push(worker(), clocks, request_id, grads_, examples);
    return version.status();
  });
  if (!s.ok()) return s;
  if (options_.metrics) {
    options_.metrics->push_latency->Observe(absl::ToDoubleSeconds(options_.clock->Now() - start));
  }
  return version;
}

absl::Status Trainer::EvaluateTask(const AcquirePartitionResponse& lease) {
  absl::StatusOr<EvalResult> eval = workload_->Evaluate([this](ParameterBatch* batch) {
    absl::Status s = PullWithRetry({-1}, batch).status();
    if (absl::IsAborted(s)) {
      // A shard that restarted is read afresh; its rounds start over, which
      // the next partition must know (sync).
      clocks_.Restarted(ps_->restarted_shards(), /*pushed=*/false);
      s = PullWithRetry({-1}, batch).status();
    }
    return s;
  });
  if (!eval.ok()) return eval.status();
  eval->set_epoch(lease.eval_epoch());
  eval->set_final(lease.eval_final());
  FULCRUM_LOG(INFO) << absl::StrFormat(
      "%s after epoch %d: test_accuracy=%.4f test_loss=%.4f%s",
      lease.eval_final() ? "final evaluation" : "evaluation", lease.eval_epoch(),
      eval->test_accuracy(), eval->test_loss(),
      eval->test_auc() > 0 ? absl::StrFormat(" test_auc=%.4f", eval->test_auc()) : "");
  ReportEvalRequest request;
  SetSender(worker(), &request);
  request.set_lease_id(lease.lease_id());
  *request.mutable_eval() = *eval;
  FULCRUM_RETURN_IF_ERROR(RetryWithBackoff(options_.retry, IsUnavailable,
                                           [&] { return coordinator_->ReportEval(request); }));
  if (options_.metrics) options_.metrics->evaluations->Increment();
  absl::MutexLock lock(&mu_);
  ++stats_.evaluations;
  return absl::OkStatus();
}

double Trainer::ComputeStep(absl::Span<const int64_t> examples, ParameterBatch* grads) {
  const double loss = workload_->ComputeGradients(examples, params_, grads);
  if (sparsifier_ != nullptr) sparsifier_->Sparsify(grads);
  return loss;
}

void Trainer::RecordStep(int64_t examples, double loss, absl::Time step_start) {
  {
    absl::MutexLock lock(&mu_);
    progress_.set_steps(progress_.steps() + 1);
    progress_.set_examples_seen(progress_.examples_seen() + examples);
    loss_sum_ += loss;
    ++loss_count_;
    ++stats_.steps;
  }
  if (options_.metrics) {
    options_.metrics->steps->Increment();
    options_.metrics->examples->Increment(examples);
    options_.metrics->loss->Set(loss);
    options_.metrics->step_seconds->Observe(
        absl::ToDoubleSeconds(options_.clock->Now() - step_start));
  }
  if (options_.step_delay > absl::ZeroDuration()) {
    absl::SleepFor(options_.step_delay);
  }
}

absl::Status Trainer::TrainOverlapped(const std::vector<int64_t>& order) {
  const size_t batch_size = job_.batch_size();
  const std::vector<int64_t> now = {-1};
  auto examples_at = [&](size_t pos) { return MiniBatchAt(order, pos, batch_size); };
  // Step t computes on the parameters step t-2's PushPull brought back while
  // step t-1's is in flight; the training thread waits only for what the
  // compute did not hide.
  if (!said_overlapping_) {
    FULCRUM_LOG(INFO) << "overlapping communication with computation (async, dense model)";
    said_overlapping_ = true;
  }
  std::future<absl::StatusOr<ServerVersion>> in_flight;
  auto finish_in_flight = [&]() -> absl::Status {
    if (!in_flight.valid()) return absl::OkStatus();
    absl::StatusOr<ServerVersion> version = in_flight.get();
    if (version.ok()) {
      std::swap(params_, incoming_params_);
      return absl::OkStatus();
    }
    if (!absl::IsAborted(version.status()) || Interrupted()) return version.status();
    // A shard restarted: that gradient (of the old parameters) is dropped,
    // and training goes on from a fresh read.
    FULCRUM_LOG(WARNING) << "dropping a step: " << version.status().message();
    return PullWithRetry(now, &params_).status();
  };
  for (size_t pos = 0; pos < order.size(); pos += batch_size) {
    const absl::Time step_start = options_.clock->Now();
    const absl::Span<const int64_t> examples = examples_at(pos);
    const double loss = ComputeStep(examples, &grads_);
    FULCRUM_RETURN_IF_ERROR(finish_in_flight());
    if (Interrupted()) return absl::AbortedError("interrupted");
    std::swap(grads_, outgoing_grads_);
    workload_->PlanStep(examples_at(pos + batch_size < order.size() ? pos + batch_size : pos),
                        &incoming_params_);
    const uint64_t request_id = next_request_id_++;
    const uint32_t size = examples.size();
    in_flight = std::async(std::launch::async, [this, &now, size, request_id] {
      return PushPullWithRetry(now, size, now, request_id, outgoing_grads_, &incoming_params_);
    });
    RecordStep(size, loss, step_start);
  }
  return finish_in_flight();
}

absl::Status Trainer::TrainPartition(const AcquirePartitionResponse& lease) {
  const DataPartition& partition = lease.partition();
  FULCRUM_ASSIGN_OR_RETURN(const int64_t n, workload_->LoadPartition(partition));
  const int64_t batch_size = job_.batch_size();

  // The order depends only on the job's seed and the partition, so a
  // partition retrained after a worker died is trained the same way.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(job_.seed() * 1000003 + partition.epoch() * 7919 + partition.index());
  std::shuffle(order.begin(), order.end(), rng);

  clocks_.StartPartition(lease.clock());
  auto examples_at = [&](size_t pos) { return MiniBatchAt(order, pos, batch_size); };
  int restarts_seen = 0;
  bool have_params = false;  // params_ holds the parameters for the step at pos
  for (size_t pos = 0; pos < order.size();) {
    if (Interrupted()) return absl::AbortedError("interrupted");
    const absl::Time step_start = options_.clock->Now();
    const absl::Span<const int64_t> examples = examples_at(pos);
    absl::StatusOr<ServerVersion> version = ServerVersion();
    if (!have_params) {
      workload_->PlanStep(examples, &params_);
      version = PullWithRetry(clocks_.Pull(), &params_);
      if (version.ok()) clocks_.Pulled(version->rounds);
      if (version.ok() && clocks_.MayOverlap() && job_.overlap_communication() &&
          params_.sparse.empty() && pos == 0) {
        FULCRUM_RETURN_IF_ERROR(TrainOverlapped(order));
        break;
      }
    }
    double loss = 0;
    bool pushing = false;
    if (version.ok()) {
      loss = ComputeStep(examples, &grads_);
      pushing = true;
      const std::vector<int64_t>& push_clocks = clocks_.Push();
      const size_t next = pos + batch_size;
      if (next < order.size()) {
        // One round trip: this step's gradient out, the next step's
        // parameters back (sync: of the round this push helps close).
        const std::vector<int64_t> pull_clocks = clocks_.NextPull();
        workload_->PlanStep(examples_at(next), &params_);
        version = PushPullWithRetry(push_clocks, examples.size(), pull_clocks, next_request_id_++,
                                    grads_, &params_);
      } else {
        version = PushWithRetry(push_clocks, examples.size());
      }
      have_params = version.ok() && next < order.size();
    }
    if (absl::IsAborted(version.status()) && !Interrupted() && ++restarts_seen <= 10) {
      // A shard restarted from its checkpoint: its rounds start over. The
      // step is done again from a fresh pull (a gradient of the old
      // parameters never reaches the restored ones), at the restarted
      // shard's current round and, where a push was taken, the next round.
      FULCRUM_LOG(WARNING) << "redoing a step: " << version.status().message();
      have_params = false;
      clocks_.Restarted(ps_->restarted_shards(), pushing);
      continue;
    }
    if (!version.ok()) return version.status();
    pos += batch_size;
    clocks_.StepDone();
    RecordStep(examples.size(), loss, step_start);
  }
  CompletePartitionRequest request;
  SetSender(worker(), &request);
  request.set_lease_id(lease.lease_id());
  FULCRUM_RETURN_IF_ERROR(RetryWithBackoff(
      options_.retry, IsUnavailable, [&] { return coordinator_->CompletePartition(request); }));
  if (options_.metrics) options_.metrics->partitions->Increment();
  absl::MutexLock lock(&mu_);
  ++stats_.partitions;
  return absl::OkStatus();
}

absl::Status Trainer::Run() {
  FULCRUM_RETURN_IF_ERROR(Register());
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  int reregistrations = 0;
  while (!stopped_) {
    if (evicted_) {
      if (++reregistrations > options_.max_reregistrations) {
        return absl::UnavailableError(
            "the coordinator keeps declaring this worker dead; giving up");
      }
      FULCRUM_LOG(WARNING) << "registering again";
      FULCRUM_RETURN_IF_ERROR(Register());
      continue;
    }
    AcquirePartitionRequest request;
    SetSender(worker(), &request);
    absl::StatusOr<AcquirePartitionResponse> lease;
    absl::Status s = RetryWithBackoff(options_.retry, IsUnavailable, [&] {
      lease = coordinator_->AcquirePartition(request);
      return lease.status();
    });
    if (IsEvicted(s)) {
      evicted_ = true;
      continue;
    }
    if (!s.ok()) return s;
    switch (lease->kind()) {
      case AcquirePartitionResponse::DONE:
        FULCRUM_LOG(INFO) << "job over; worker " << worker().id << " exits";
        return absl::OkStatus();  // progress was flushed after the last work
      case AcquirePartitionResponse::WAIT:
        absl::SleepFor(absl::Seconds(std::max(0.01, lease->retry_after_seconds())));
        continue;
      case AcquirePartitionResponse::EVALUATE:
        s = EvaluateTask(*lease);
        break;
      case AcquirePartitionResponse::TRAIN:
        s = TrainPartition(*lease);
        break;
      default:
        return absl::InternalError(
            absl::StrCat("unknown work kind ", static_cast<int>(lease->kind())));
    }
    if (s.ok()) {
      reregistrations = 0;
      SendHeartbeat();
      continue;
    }
    if (stopped_) break;
    if (IsEvicted(s) || evicted_) {
      FULCRUM_LOG(WARNING) << "work abandoned: " << s.message();
      evicted_ = true;
      continue;
    }
    return s;
  }
  FULCRUM_LOG(INFO) << "job stopped; worker " << worker().id << " exits";
  return absl::OkStatus();
}

}  // namespace fulcrum
