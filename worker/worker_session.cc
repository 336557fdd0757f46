#include "worker/worker_session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/model_spec.h"

namespace fulcrum {
namespace {

bool IsEvicted(const absl::Status& s) { return s.code() == absl::StatusCode::kFailedPrecondition; }

const std::vector<int64_t>& Now() {
  static const auto* now = new std::vector<int64_t>{-1};
  return *now;
}

}  // namespace

WorkerMetrics WorkerMetrics::Register(MetricsRegistry* registry) {
  WorkerMetrics m;
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

WorkerSession::WorkerSession(const WorkerSessionOptions& options, PsClient* ps,
                             CoordinatorClient* coordinator)
    : options_(options), ps_(ps), coordinator_(coordinator) {}

WorkerSession::~WorkerSession() {
  shutdown_heartbeat_.Notify();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

WorkerIdentity WorkerSession::worker() const {
  absl::MutexLock lock(&mu_);
  return worker_;
}

WorkerStats WorkerSession::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Status WorkerSession::Register() {
  RegisterWorkerRequest request;
  request.set_worker_name(options_.worker_name);
  request.set_host(options_.host);
  absl::StatusOr<RegisterWorkerResponse> response;
  FULCRUM_RETURN_IF_ERROR(RetryWithBackoff(options_.retry, IsUnavailable, [&] {
    response = coordinator_->RegisterWorker(request);
    return response.status();
  }));
  const JobSpec& job = response->job();
  const ShardMap map = ShardMap::Of(*response);
  LearnCoordinator(map);
  FULCRUM_RETURN_IF_ERROR(ps_->Connect(map.shards, map.backups));
  {
    absl::MutexLock lock(&mu_);
    shard_map_ = map;
    new_shard_map_.reset();
  }
  acknowledged_base_ = ps_->PushesAcknowledged();
  ps_->set_gradient_encoding(job.gradient_encoding());
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
  if (!heartbeat_thread_.joinable()) {
    heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  }
  return absl::OkStatus();
}

void WorkerSession::LearnCoordinator(const ShardMap& map) {
  std::vector<std::string> addresses;
  if (!map.shards.empty()) addresses.push_back(map.shards[0]);
  if (!map.backups.empty()) addresses.push_back(map.backups[0]);
  coordinator_->LearnAddresses(addresses);
}

void WorkerSession::SendHeartbeat() {
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
    ShardMap map = ShardMap::Of(*response);
    LearnCoordinator(map);
    absl::MutexLock lock(&mu_);
    // Another job's number of shards: registration sorts that out.
    if (worker_ == sender && map.shards.size() == shard_map_.shards.size() && map != shard_map_) {
      new_shard_map_ = std::move(map);
      shard_map_changed_ = true;
    }
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

void WorkerSession::NoteAcknowledged() {
  const std::vector<uint64_t> acknowledged = ps_->PushesAcknowledged();
  absl::MutexLock lock(&mu_);
  progress_.clear_pushes_acknowledged();
  for (size_t i = 0; i < acknowledged.size(); ++i) {
    const uint64_t base = i < acknowledged_base_.size() ? acknowledged_base_[i] : 0;
    progress_.add_pushes_acknowledged(acknowledged[i] - base);
  }
}

void WorkerSession::RefreshShards() {
  if (!shard_map_changed_.exchange(false)) return;  // the usual case: no lock
  ShardMap map;
  {
    absl::MutexLock lock(&mu_);
    if (!new_shard_map_.has_value()) return;
    map = std::move(*new_shard_map_);
    new_shard_map_.reset();
    shard_map_ = map;
  }
  absl::Status connected = ps_->Connect(map.shards, map.backups);
  if (!connected.ok()) {
    FULCRUM_LOG(WARNING) << "cannot connect to the new shard map: " << connected;
    return;
  }
  FULCRUM_LOG(INFO) << "shard map changed: shards at " << absl::StrJoin(map.shards, ", ")
                    << "; backups at " << absl::StrJoin(map.backups, ", ");
}

void WorkerSession::HeartbeatLoop() {
  while (!shutdown_heartbeat_.WaitForNotificationWithTimeout(heartbeat_interval_)) {
    SendHeartbeat();
  }
}

absl::StatusOr<AcquirePartitionResponse> WorkerSession::NextTask() {
  while (true) {
    AcquirePartitionResponse done;
    done.set_kind(AcquirePartitionResponse::DONE);
    if (stopped_) {
      FULCRUM_LOG(INFO) << "job stopped; worker " << worker().id << " exits";
      return done;
    }
    if (evicted_) {
      if (++reregistrations_ > options_.max_reregistrations) {
        return absl::UnavailableError(
            "the coordinator keeps declaring this worker dead; giving up");
      }
      FULCRUM_LOG(WARNING) << "registering again";
      FULCRUM_RETURN_IF_ERROR(Register());
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
    if (lease->kind() == AcquirePartitionResponse::DONE) {
      FULCRUM_LOG(INFO) << "job over; worker " << worker().id << " exits";
    } else if (lease->kind() == AcquirePartitionResponse::TRAIN) {
      clocks_.StartPartition(lease->clock());
    }
    return lease;
  }
}

absl::Status WorkerSession::Complete(const AcquirePartitionResponse& lease) {
  CompletePartitionRequest request;
  SetSender(worker(), &request);
  request.set_lease_id(lease.lease_id());
  return WorkDone(RetryWithBackoff(options_.retry, IsUnavailable,
                                   [&] { return coordinator_->CompletePartition(request); }),
                  options_.metrics ? options_.metrics->partitions : nullptr,
                  &WorkerStats::partitions);
}

absl::Status WorkerSession::WorkDone(absl::Status reported, Counter* metric,
                                     int64_t WorkerStats::*count) {
  if (!reported.ok()) return StepFailed(reported, /*pushed=*/false);
  if (metric != nullptr) metric->Increment();
  {
    absl::MutexLock lock(&mu_);
    ++(stats_.*count);
  }
  reregistrations_ = 0;
  SendHeartbeat();
  return absl::OkStatus();
}

absl::Status WorkerSession::ReportEval(const AcquirePartitionResponse& lease,
                                       const EvalResult& eval) {
  ReportEvalRequest request;
  SetSender(worker(), &request);
  request.set_lease_id(lease.lease_id());
  *request.mutable_eval() = eval;
  request.mutable_eval()->set_epoch(lease.eval_epoch());
  request.mutable_eval()->set_final(lease.eval_final());
  return WorkDone(RetryWithBackoff(options_.retry, IsUnavailable,
                                   [&] { return coordinator_->ReportEval(request); }),
                  options_.metrics ? options_.metrics->evaluations : nullptr,
                  &WorkerStats::evaluations);
}

template <typename Call>
absl::StatusOr<ServerVersion> WorkerSession::CallWaiting(Histogram* latency, Call call) {
  const absl::Time give_up = options_.clock->Now() + options_.start_timeout;
  while (true) {
    absl::StatusOr<ServerVersion> version;
    const absl::Time start = options_.clock->Now();
    absl::Status s = RetryWithBackoff(options_.retry, IsUnavailable, [&] {
      RefreshShards();
      version = call();
      return version.status();
    });
    if (latency != nullptr && s.ok()) {
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

absl::Status WorkerSession::StepFailed(absl::Status status, bool pushed) {
  if (absl::IsAborted(status)) {
    // A shard restarted from its checkpoint: its rounds start over.
    clocks_.Restarted(ps_->TakeRestartedShards(), pushed);
  } else if (IsEvicted(status)) {
    evicted_ = true;
  }
  return status;
}

absl::StatusOr<ServerVersion> WorkerSession::Pull(ParameterBatch* params) {
  absl::StatusOr<ServerVersion> version =
      CallWaiting(options_.metrics ? options_.metrics->pull_latency : nullptr,
                  [&] { return ps_->Pull(worker(), clocks_.Pull(), params); });
  if (!version.ok()) return StepFailed(version.status(), /*pushed=*/false);
  clocks_.Pulled(version->rounds);
  return version;
}

absl::StatusOr<ServerVersion> WorkerSession::PushPull(const ParameterBatch& grads,
                                                      uint32_t examples, ParameterBatch* params) {
  // One round trip: this step's gradient out, the next step's parameters
  // back (sync: of the round this push helps close). A retry carries the
  // same request id: the push is applied once even if the first attempt's
  // pull timed out after it.
  const std::vector<int64_t> push_clocks = clocks_.Push();
  const std::vector<int64_t> pull_clocks = clocks_.NextPull();
  const uint64_t request_id = next_request_id_++;
  absl::StatusOr<ServerVersion> version =
      CallWaiting(options_.metrics ? options_.metrics->pushpull_latency : nullptr, [&] {
        absl::StatusOr<ServerVersion> v =
            ps_->PushPull(worker(), push_clocks, request_id, grads, examples, pull_clocks, params);
        NoteAcknowledged();
        return v;
      });
  if (!version.ok()) return StepFailed(version.status(), /*pushed=*/true);
  clocks_.StepDone();
  return version;
}

absl::StatusOr<ServerVersion> WorkerSession::Push(const ParameterBatch& grads, uint32_t examples) {
  const uint64_t request_id = next_request_id_++;
  absl::StatusOr<ServerVersion> version;
  const absl::Time start = options_.clock->Now();
  absl::Status s = RetryWithBackoff(options_.retry, IsUnavailable, [&] {
    RefreshShards();
    version = ps_->Push(worker(), clocks_.Push(), request_id, grads, examples);
    NoteAcknowledged();
    return version.status();
  });
  if (!s.ok()) return StepFailed(s, /*pushed=*/true);
  if (options_.metrics) {
    options_.metrics->push_latency->Observe(absl::ToDoubleSeconds(options_.clock->Now() - start));
  }
  clocks_.StepDone();
  return version;
}

absl::StatusOr<ServerVersion> WorkerSession::PullLatest(ParameterBatch* params) {
  Histogram* latency = options_.metrics ? options_.metrics->pull_latency : nullptr;
  auto pull = [&] {
    RefreshShards();
    return ps_->Pull(worker(), Now(), params);
  };
  absl::StatusOr<ServerVersion> version = CallWaiting(latency, pull);
  if (absl::IsAborted(version.status())) {
    // A shard that restarted is read afresh; its rounds start over, which
    // the next partition must know (sync).
    clocks_.Restarted(ps_->TakeRestartedShards(), /*pushed=*/false);
    version = CallWaiting(latency, pull);
  }
  if (!version.ok()) return StepFailed(version.status(), /*pushed=*/false);
  return version;
}

absl::StatusOr<ServerVersion> WorkerSession::PushPullNow(const ParameterBatch& grads,
                                                         uint32_t examples,
                                                         ParameterBatch* params) {
  const uint64_t request_id = next_request_id_++;
  absl::StatusOr<ServerVersion> version =
      CallWaiting(options_.metrics ? options_.metrics->pushpull_latency : nullptr, [&] {
        RefreshShards();
        absl::StatusOr<ServerVersion> v =
            ps_->PushPull(worker(), Now(), request_id, grads, examples, Now(), params);
        NoteAcknowledged();
        return v;
      });
  if (!version.ok()) return StepFailed(version.status(), /*pushed=*/true);
  return version;
}

void WorkerSession::RecordStep(int64_t examples, double loss, absl::Time step_start) {
  {
    absl::MutexLock lock(&mu_);
    progress_.set_steps(progress_.steps() + 1);
    progress_.set_examples_seen(progress_.examples_seen() + examples);
    if (loss >= 0) {
      loss_sum_ += loss;
      ++loss_count_;
    }
    ++stats_.steps;
  }
  if (options_.metrics) {
    options_.metrics->steps->Increment();
    options_.metrics->examples->Increment(examples);
    if (loss >= 0) options_.metrics->loss->Set(loss);
    options_.metrics->step_seconds->Observe(
        absl::ToDoubleSeconds(options_.clock->Now() - step_start));
  }
}

}  // namespace fulcrum
