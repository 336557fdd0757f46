#include "server/coordinator/coordinator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/eval_format.h"
#include "common/model_spec.h"
#include "server/replication/witnesses.h"

namespace fulcrum {
namespace {

// Examples/s is measured over windows of at least this long.
constexpr absl::Duration kRateWindow = absl::Seconds(1);
// How long a worker told WAIT waits before asking again.
constexpr double kRetryAfterSeconds = 0.05;

bool JobOver(JobState state) { return state == FINISHED || state == STOPPED; }

}  // namespace

JobCoordinator::JobCoordinator(const CoordinatorOptions& options, ShardGroup* shards)
    : options_(options),
      partitions_(std::max<uint32_t>(1, options.job->partitions_per_epoch())),
      own_optimizers_(options.job.OptimizerOverrides()),
      shards_(shards) {}

absl::StatusOr<JobCoordinator::WorkerRecord*> JobCoordinator::LiveWorkerLocked(
    const WorkerIdentity& worker) {
  if (worker.coordinator_incarnation != options_.incarnation) {
    // Ids restart from 1 in every process: this id may be another worker's
    // now.
    return absl::FailedPreconditionError(
        absl::StrFormat("%s was issued by another coordinator process (this one is incarnation "
                        "%016x); register again",
                        DescribeWorker(worker), options_.incarnation));
  }
  auto it = workers_.find(worker.id);
  if (it == workers_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("unknown worker id ", worker.id, "; register with the coordinator"));
  }
  const WorkerState state = it->second.status.state();
  if (state == DEAD || state == LEFT) {
    return absl::FailedPreconditionError(absl::StrCat("worker ", worker.id, " was declared ",
                                                      WorkerState_Name(state), "; register again"));
  }
  return &it->second;
}

absl::StatusOr<RegisterWorkerResponse> JobCoordinator::RegisterWorker(
    const RegisterWorkerRequest& request) {
  FULCRUM_RETURN_IF_ERROR(shards_->CheckAllReady());
  absl::StatusOr<RegisterWorkerResponse> response = RegisterWorkerImpl(request);
  if (response.ok()) FULCRUM_RETURN_IF_ERROR(StateChanged());
  return response;
}

absl::StatusOr<RegisterWorkerResponse> JobCoordinator::RegisterWorkerImpl(
    const RegisterWorkerRequest& request) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  // A worker coming back under its name replaces itself: not one more.
  auto same_name = request.worker_name().empty() ? live_by_name_.end()
                                                 : live_by_name_.find(request.worker_name());
  if (same_name == live_by_name_.end() && LiveWorkersLocked() >= options_.max_workers) {
    return absl::ResourceExhaustedError(absl::StrCat("the job already has ", options_.max_workers,
                                                     " live workers, its limit (--max_workers)"));
  }
  const uint64_t id = next_worker_id_++;
  const std::string name =
      request.worker_name().empty() ? absl::StrCat("worker-", id) : request.worker_name();
  if (same_name != live_by_name_.end()) {
    DeclareDeadLocked(workers_.at(same_name->second),
                      absl::StrCat("replaced by a new worker named ", name));
  }

  WorkerRecord record;
  record.status.set_worker_id(id);
  record.status.set_name(name);
  record.status.set_host(request.host());
  record.status.set_state(IDLE);
  record.last_heartbeat = record.rate_since = record.registered_at = now;
  workers_.emplace(id, record);
  live_by_name_[name] = id;
  shards_->AdmitWorker(id);

  RegisterWorkerResponse response;
  response.set_worker_id(id);
  *response.mutable_job() = options_.job.spec();
  for (const std::string& address : shards_->WorkerAddresses()) {
    response.add_shard_addresses(address);
  }
  for (const std::string& address : shards_->BackupAddresses()) {
    response.add_backup_addresses(address);
  }
  response.set_incarnation(options_.incarnation);
  response.set_heartbeat_interval_seconds(absl::ToDoubleSeconds(options_.heartbeat_interval));
  response.set_worker_timeout_seconds(absl::ToDoubleSeconds(options_.worker_timeout));

  FULCRUM_LOG(INFO) << "worker " << id << " (" << name << " on " << request.host()
                    << ") registered";
  if (state_ == EVALUATING && started_at_ == absl::Time()) {
    started_at_ = now;  // restored with only the final evaluation owed
    shards_->Start();
  }
  // A job resumed from a checkpoint goes on with whoever comes back.
  if (state_ == WAITING_FOR_WORKERS &&
      (restored_ || LiveWorkersLocked() >= options_.job->num_workers())) {
    state_ = RUNNING;
    started_at_ = now;
    shards_->Start();
    FULCRUM_LOG(INFO) << LiveWorkersLocked() << " workers registered; job running";
    // Sync: every worker waiting gets its first partition now, so that all
    // of them are active from the first round; whoever asked first would
    // otherwise close rounds alone until the others' next ask, and the
    // model would depend on that timing.
    if (options_.job->mode() == SYNC) {
      for (auto& [id, waiting] : workers_) {
        const WorkerState s = waiting.status.state();
        if (s != DEAD && s != LEFT && !waiting.lease_id.has_value()) NewLeaseLocked(waiting);
      }
    }
  }
  return response;
}

absl::StatusOr<HeartbeatResponse> JobCoordinator::Heartbeat(const HeartbeatRequest& request) {
  const WorkerProgress& p = request.progress();
  if (!std::isfinite(p.loss()) || p.loss() < 0 || p.steps() < 0 ||
      !std::isfinite(p.wait_seconds()) || p.wait_seconds() < 0) {
    return absl::InvalidArgumentError(
        "progress needs a finite non-negative loss, steps and wait time");
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<WorkerRecord*> found = LiveWorkerLocked(SenderOf(request));
  if (!found.ok()) return found.status();
  WorkerRecord& record = **found;
  WorkerStatus& status = record.status;
  const absl::Time now = options_.clock->Now();
  record.last_heartbeat = now;
  status.set_steps(p.steps());
  if (p.loss() > 0) status.set_loss(p.loss());
  status.set_wait_seconds(p.wait_seconds());
  *status.mutable_pushes_acknowledged() = p.pushes_acknowledged();
  if (p.examples_seen() < record.rate_examples) {
    record.rate_examples = p.examples_seen();  // not cumulative: restart
    record.rate_since = now;
  } else if (now - record.rate_since >= kRateWindow) {
    status.set_examples_per_second((p.examples_seen() - record.rate_examples) /
                                   absl::ToDoubleSeconds(now - record.rate_since));
    record.rate_since = now;
    record.rate_examples = p.examples_seen();
  }
  status.set_examples_seen(p.examples_seen());
  HeartbeatResponse response;
  response.set_job_state(state_);
  for (const std::string& address : shards_->WorkerAddresses()) {
    response.add_shard_addresses(address);
  }
  for (const std::string& address : shards_->BackupAddresses()) {
    response.add_backup_addresses(address);
  }
  return response;
}

std::vector<JobCoordinator::PartitionState>& JobCoordinator::EpochLocked(uint32_t epoch) {
  auto it = epochs_.find(epoch);
  if (it == epochs_.end()) {
    it = epochs_.emplace(epoch, std::vector<PartitionState>(partitions_, PartitionState::kPending))
             .first;
    std::vector<uint32_t> order(partitions_);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(options_.job->seed() * 6364136223846793005ull + epoch);
    std::shuffle(order.begin(), order.end(), rng);
    lease_order_[epoch] = std::move(order);
  }
  return it->second;
}

uint32_t JobCoordinator::LiveWorkersLocked() const {
  uint32_t n = 0;
  for (const auto& [id, w] : workers_) {
    const WorkerState s = w.status.state();
    if (s != DEAD && s != LEFT) ++n;
  }
  return n;
}

AcquirePartitionResponse JobCoordinator::GrantLocked(WorkerRecord& worker, const Lease& lease) {
  AcquirePartitionResponse response;
  response.set_lease_id(lease.id);
  WorkerStatus& status = worker.status;
  if (lease.evaluate) {
    response.set_kind(AcquirePartitionResponse::EVALUATE);
    response.set_eval_epoch(lease.epoch);
    response.set_eval_final(lease.final);
    status.set_state(EVALUATING_MODEL);
    status.clear_partition();
  } else {
    response.set_kind(AcquirePartitionResponse::TRAIN);
    DataPartition* partition = response.mutable_partition();
    partition->set_epoch(lease.epoch);
    partition->set_index(lease.partition);
    partition->set_count(partitions_);
    *status.mutable_partition() = *partition;
    response.set_clock(status.clock());
  }
  return response;
}

absl::StatusOr<AcquirePartitionResponse> JobCoordinator::AcquirePartition(
    const AcquirePartitionRequest& request) {
  absl::StatusOr<AcquirePartitionResponse> response = GrantWork(request);
  // A lease granted (or the job's end told) is replicated before the worker
  // hears of it; a retry replicates the same state again.
  if (response.ok() && response->kind() != AcquirePartitionResponse::WAIT) {
    FULCRUM_RETURN_IF_ERROR(StateChanged());
  }
  // A training lease is handed out once every shard knows the worker is
  // active: a sync round another shard closed without it could not be
  // pushed to any more.
  if (response.ok() && response->kind() == AcquirePartitionResponse::TRAIN) {
    FULCRUM_RETURN_IF_ERROR(shards_->AwaitAcknowledged(options_.worker_timeout));
  }
  return response;
}

absl::StatusOr<AcquirePartitionResponse> JobCoordinator::GrantWork(
    const AcquirePartitionRequest& request) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<WorkerRecord*> found = LiveWorkerLocked(SenderOf(request));
  if (!found.ok()) return found.status();
  WorkerRecord& worker = **found;
  AcquirePartitionResponse response;
  if (JobOver(state_)) {
    response.set_kind(AcquirePartitionResponse::DONE);
    worker.status.set_state(LEFT);
    shards_->RemoveWorker(worker.status.worker_id());
    live_by_name_.erase(worker.status.name());
    return response;
  }
  if (worker.lease_id.has_value()) {  // a retry: same lease again
    return GrantLocked(worker, leases_.at(*worker.lease_id));
  }
  response.set_kind(AcquirePartitionResponse::WAIT);
  response.set_retry_after_seconds(kRetryAfterSeconds);
  if (state_ == WAITING_FOR_WORKERS) return response;
  const std::optional<Lease> lease = NewLeaseLocked(worker);
  if (!lease.has_value()) return response;
  return GrantLocked(worker, *lease);
}

std::optional<JobCoordinator::Lease> JobCoordinator::NewLeaseLocked(WorkerRecord& worker) {
  Lease lease;
  lease.worker_id = worker.status.worker_id();
  if (!eval_queue_.empty()) {
    lease.evaluate = true;
    lease.epoch = eval_queue_.front().epoch;
    lease.final = eval_queue_.front().final;
    eval_queue_.pop_front();
  } else {
    const uint32_t last_epoch = std::min<uint32_t>(
        options_.job->epochs() - 1,
        oldest_epoch_ + (options_.job->epoch_barrier() ? 0 : options_.epoch_lookahead));
    bool found_partition = false;
    for (uint32_t e = oldest_epoch_; e <= last_epoch && !found_partition; ++e) {
      std::vector<PartitionState>& parts = EpochLocked(e);
      for (uint32_t i : lease_order_.at(e)) {
        if (parts[i] == PartitionState::kPending) {
          parts[i] = PartitionState::kLeased;
          lease.epoch = e;
          lease.partition = i;
          found_partition = true;
          break;
        }
      }
    }
    if (!found_partition) return std::nullopt;  // WAIT
    // SSP: a worker's clock counts the partitions it trained, but never
    // starts below the slowest active worker (a joiner must not hold the
    // others back).
    WorkerStatus& status = worker.status;
    const int64_t floor = shards_->SlowestActiveClock();
    status.set_clock(std::max<int64_t>(status.partitions_completed(),
                                       floor == std::numeric_limits<int64_t>::max() ? 0 : floor));
    status.set_state(ACTIVE);
    shards_->ActivateWorker(status.worker_id(), status.clock());
  }
  lease.id = next_lease_id_++;
  leases_.emplace(lease.id, lease);
  worker.lease_id = lease.id;
  return lease;
}

absl::StatusOr<JobCoordinator::EndedLease> JobCoordinator::EndLeaseLocked(
    const WorkerIdentity& sender, uint64_t lease_id, bool evaluate) {
  absl::StatusOr<WorkerRecord*> found = LiveWorkerLocked(sender);
  if (!found.ok()) return found.status();
  WorkerRecord& worker = **found;
  if (lease_id != 0 && lease_id == worker.last_finished_lease) return EndedLease{&worker, {}};
  if (worker.lease_id != lease_id || leases_.at(lease_id).evaluate != evaluate) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker.status.worker_id(), " holds no ",
                     evaluate ? "evaluation" : "training", " lease ", lease_id));
  }
  const Lease lease = leases_.at(lease_id);
  leases_.erase(lease_id);
  worker.lease_id.reset();
  worker.last_finished_lease = lease_id;
  return EndedLease{&worker, lease};
}

absl::Status JobCoordinator::CompletePartition(const CompletePartitionRequest& request) {
  FULCRUM_RETURN_IF_ERROR(CompletePartitionImpl(request));
  return StateChanged();
}

absl::Status JobCoordinator::CompletePartitionImpl(const CompletePartitionRequest& request) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<EndedLease> ended =
      EndLeaseLocked(SenderOf(request), request.lease_id(), /*evaluate=*/false);
  if (!ended.ok()) return ended.status();
  if (!ended->lease.has_value()) return absl::OkStatus();  // a retry
  WorkerRecord& worker = *ended->worker;
  const Lease lease = *ended->lease;
  EpochLocked(lease.epoch)[lease.partition] = PartitionState::kDone;
  PartitionRecord record;
  record.set_epoch(lease.epoch);
  record.set_index(lease.partition);
  record.set_worker_id(worker.status.worker_id());
  record.set_worker_name(worker.status.name());
  completed_.push_back(record);
  WorkerStatus& status = worker.status;
  status.set_partitions_completed(status.partitions_completed() + 1);
  status.set_state(IDLE);
  status.clear_partition();
  shards_->DeactivateWorker(status.worker_id());
  AdvanceEpochsLocked();
  return absl::OkStatus();
}

void JobCoordinator::AdvanceEpochsLocked() {
  while (oldest_epoch_ < options_.job->epochs()) {
    const std::vector<PartitionState>& parts = EpochLocked(oldest_epoch_);
    if (!std::all_of(parts.begin(), parts.end(),
                     [](PartitionState s) { return s == PartitionState::kDone; })) {
      return;
    }
    epochs_.erase(oldest_epoch_);
    lease_order_.erase(oldest_epoch_);
    ++oldest_epoch_;
    const bool final = oldest_epoch_ == options_.job->epochs();
    FULCRUM_LOG(INFO) << "epoch " << oldest_epoch_ << "/" << options_.job->epochs() << " trained";
    if (options_.job->skip_evaluation()) {
      if (final && state_ == RUNNING) {
        state_ = FINISHED;
        finished_at_ = options_.clock->Now();
        FULCRUM_LOG(INFO) << "every epoch trained; job finished (no evaluation)";
      }
      continue;
    }
    eval_queue_.push_back(EvalTask{oldest_epoch_, final});
    if (final && state_ == RUNNING) {
      state_ = EVALUATING;
      FULCRUM_LOG(INFO) << "every epoch trained; final evaluation";
    }
  }
}

namespace {

constexpr int kMaxMetrics = 16;

absl::Status ValidateMetrics(const EvalResult& eval) {
  if (eval.metrics_size() > kMaxMetrics) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxMetrics, " metrics, got ", eval.metrics_size()));
  }
  for (const auto& [name, value] : eval.metrics()) {
    const bool named = !name.empty() && name.size() <= 64 && absl::ascii_islower(name[0]) &&
                       std::all_of(name.begin(), name.end(), [](char c) {
                         return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_';
                       });
    if (!named) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric name '", absl::CHexEscape(name.substr(0, 64)),
                       "' is not [a-z][a-z0-9_]* (64 characters at most)"));
    }
    if (!std::isfinite(value)) {
      return absl::InvalidArgumentError(absl::StrCat("metric ", name, " is not finite"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status JobCoordinator::ReportEval(const ReportEvalRequest& request) {
  FULCRUM_RETURN_IF_ERROR(ReportEvalImpl(request));
  return StateChanged();
}

absl::Status JobCoordinator::ReportEvalImpl(const ReportEvalRequest& request) {
  const double acc = request.eval().test_accuracy();
  if (!(acc >= 0.0 && acc <= 1.0) || !std::isfinite(request.eval().test_loss())) {
    return absl::InvalidArgumentError(
        absl::StrCat("test accuracy must be in [0, 1] and the loss finite, got ", acc, " and ",
                     request.eval().test_loss()));
  }
  FULCRUM_RETURN_IF_ERROR(ValidateMetrics(request.eval()));
  absl::MutexLock lock(&mu_);
  absl::StatusOr<EndedLease> ended =
      EndLeaseLocked(SenderOf(request), request.lease_id(), /*evaluate=*/true);
  if (!ended.ok()) return ended.status();
  if (!ended->lease.has_value()) return absl::OkStatus();  // a retry
  WorkerRecord& worker = *ended->worker;
  const Lease lease = *ended->lease;
  worker.status.set_state(IDLE);
  EvalResult eval = request.eval();
  eval.set_epoch(lease.epoch);
  eval.set_final(lease.final);
  eval.set_elapsed_seconds(ElapsedSecondsLocked());
  evaluations_.push_back(eval);
  // Evaluations may finish out of order; keep the latest epoch's.
  if (lease.final || lease.epoch >= last_eval_.epoch()) {
    last_eval_ = eval;
  }
  FULCRUM_LOG(INFO) << absl::StrFormat("%s epoch %d/%d:%s test_loss=%.4f (worker %d)",
                                       lease.final ? "final evaluation after" : "evaluation after",
                                       lease.epoch, options_.job->epochs(), FormatEval(eval),
                                       request.eval().test_loss(), worker.status.worker_id());
  if (lease.final && state_ == EVALUATING) {
    state_ = FINISHED;
    finished_at_ = options_.clock->Now();
    FULCRUM_LOG(INFO) << "job finished";
  }
  return absl::OkStatus();
}

void JobCoordinator::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (JobOver(state_)) return;
    state_ = STOPPED;
    finished_at_ = options_.clock->Now();
    // Release every lease so no round or clock waits for a worker that is
    // about to exit.
    for (auto& [id, worker] : workers_) {
      if (worker.lease_id.has_value()) RevokeLeaseLocked(worker);
    }
    FULCRUM_LOG(INFO) << "job stopped by an operator";
  }
  StateChanged().IgnoreError();  // logged where replicated
}

void JobCoordinator::RevokeLeaseLocked(WorkerRecord& worker) {
  if (!worker.lease_id.has_value()) return;
  const Lease lease = leases_.at(*worker.lease_id);
  leases_.erase(lease.id);
  worker.lease_id.reset();
  if (lease.evaluate) {
    eval_queue_.push_front(EvalTask{lease.epoch, lease.final});
  } else {
    EpochLocked(lease.epoch)[lease.partition] = PartitionState::kPending;
    shards_->DeactivateWorker(worker.status.worker_id());
  }
  worker.status.clear_partition();
  worker.status.set_state(IDLE);
}

void JobCoordinator::DeclareDeadLocked(WorkerRecord& worker, const std::string& why) {
  WorkerStatus& status = worker.status;
  const bool had_partition = status.has_partition();
  const DataPartition partition = status.partition();
  RevokeLeaseLocked(worker);
  shards_->RemoveWorker(status.worker_id());
  status.set_state(DEAD);
  status.set_examples_per_second(0);
  auto it = live_by_name_.find(status.name());
  if (it != live_by_name_.end() && it->second == status.worker_id()) {
    live_by_name_.erase(it);
  }
  FULCRUM_LOG(WARNING) << "worker " << status.worker_id() << " (" << status.name()
                       << ") declared dead: " << why
                       << (had_partition
                               ? absl::StrCat("; partition ", partition.index(), " of epoch ",
                                              partition.epoch() + 1, " returns to the pool")
                               : "");
}

int JobCoordinator::ReapSilentWorkers() {
  const int reaped = ReapSilentWorkersImpl();
  if (reaped > 0) StateChanged().IgnoreError();  // logged where replicated
  return reaped;
}

absl::Status JobCoordinator::WorkersLetGoOnAlone(absl::Time since, absl::Duration lookback) const {
  absl::MutexLock lock(&mu_);
  size_t population = 0;
  size_t called = 0;
  for (const auto& [id, record] : workers_) {
    // Live when the backup was lost: registered before, heard from since
    // `since - lookback` (declared dead since, perhaps: still counted).
    if (record.status.state() == LEFT || record.registered_at >= since ||
        record.last_heartbeat < since - lookback) {
      continue;
    }
    ++population;
    const WorkerState state = record.status.state();
    if (state != DEAD && record.last_heartbeat >= since) ++called;
  }
  return WorkersLetCoordinatorGoOnAlone(population, called);
}

int JobCoordinator::ReapSilentWorkersImpl() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  int reaped = 0;
  for (auto& [id, worker] : workers_) {
    const WorkerState s = worker.status.state();
    if (s == DEAD || s == LEFT) continue;
    const absl::Duration silence = now - worker.last_heartbeat;
    if (silence <= options_.worker_timeout) continue;
    ++reaped;
    if (JobOver(state_)) {
      worker.status.set_state(LEFT);
      shards_->RemoveWorker(id);
      live_by_name_.erase(worker.status.name());
      continue;
    }
    DeclareDeadLocked(worker, absl::StrCat("no heartbeat for ", absl::FormatDuration(silence)));
  }
  return reaped;
}

CoordinatorCheckpoint JobCoordinator::SaveProgress() const {
  absl::MutexLock lock(&mu_);
  return SaveProgressLocked();
}

CoordinatorCheckpoint JobCoordinator::SaveProgressLocked() const {
  CoordinatorCheckpoint progress;
  progress.set_state(state_);
  progress.set_oldest_epoch(oldest_epoch_);
  for (const PartitionRecord& r : completed_) *progress.add_completed() = r;
  *progress.mutable_last_eval() = last_eval_;
  uint64_t examples = restored_examples_;
  for (const auto& [id, w] : workers_) examples += w.status.examples_seen();
  progress.set_examples_seen(examples);
  progress.set_elapsed_seconds(ElapsedSecondsLocked());
  for (const EvalTask& task : eval_queue_) progress.add_pending_evals(task.epoch);
  for (const auto& [id, lease] : leases_) {
    if (lease.evaluate) progress.add_pending_evals(lease.epoch);
  }
  *progress.mutable_job() = options_.job.spec();
  return progress;
}

absl::Status JobCoordinator::RestoreProgress(const CoordinatorCheckpoint& progress) {
  absl::MutexLock lock(&mu_);
  const JobSpec& saved = progress.job();
  const JobSpec& job = options_.job.spec();
  if (saved.model() != job.model() || saved.epochs() != job.epochs() ||
      saved.partitions_per_epoch() != job.partitions_per_epoch() || saved.mode() != job.mode()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the checkpoint is of another job (model ", saved.model(), ", mode ",
                     ConsistencyModeName(saved.mode()), ", ", saved.epochs(), " epochs of ",
                     saved.partitions_per_epoch(), " partitions); this server runs model ",
                     job.model(), ", mode ", ConsistencyModeName(job.mode()), ", ", job.epochs(),
                     " epochs of ", job.partitions_per_epoch(), " partitions"));
  }
  if (!workers_.empty()) {
    return absl::FailedPreconditionError("workers registered before the restore");
  }
  completed_.assign(progress.completed().begin(), progress.completed().end());
  oldest_epoch_ = std::min(progress.oldest_epoch(), job.epochs());
  epochs_.clear();
  lease_order_.clear();
  for (const PartitionRecord& r : completed_) {
    if (r.epoch() >= oldest_epoch_ && r.epoch() < job.epochs() && r.index() < partitions_) {
      EpochLocked(r.epoch())[r.index()] = PartitionState::kDone;
    }
  }
  eval_queue_.clear();
  for (uint32_t epoch : progress.pending_evals()) {
    eval_queue_.push_back(EvalTask{epoch, epoch == job.epochs()});
  }
  last_eval_ = progress.last_eval();
  restored_examples_ = progress.examples_seen();
  restored_elapsed_seconds_ = progress.elapsed_seconds();
  restored_ = true;
  // A finished or stopped job stays so; otherwise it resumes when the
  // workers are back.
  if (JobOver(progress.state())) {
    state_ = progress.state();
    started_at_ = finished_at_ = options_.clock->Now();
    shards_->Start();
  } else if (oldest_epoch_ >= job.epochs()) {
    state_ = EVALUATING;  // only the final evaluation is owed
  }
  return absl::OkStatus();
}

CoordinatorReplica JobCoordinator::SaveReplica() const {
  absl::MutexLock lock(&mu_);
  CoordinatorReplica replica;
  *replica.mutable_progress() = SaveProgressLocked();
  CoordinatorWorkers& out = *replica.mutable_workers();
  out.set_incarnation(options_.incarnation);
  out.set_next_worker_id(next_worker_id_);
  out.set_next_lease_id(next_lease_id_);
  for (const auto& [id, record] : workers_) {
    CoordinatorWorkers::Worker* worker = out.add_workers();
    *worker->mutable_status() = record.status;
    worker->set_lease_id(record.lease_id.value_or(0));
    worker->set_last_finished_lease(record.last_finished_lease);
  }
  for (const auto& [id, lease] : leases_) {
    CoordinatorWorkers::Lease* l = out.add_leases();
    l->set_id(lease.id);
    l->set_worker_id(lease.worker_id);
    l->set_evaluate(lease.evaluate);
    l->set_epoch(lease.epoch);
    l->set_partition(lease.partition);
    l->set_final(lease.final);
  }
  for (const EvalResult& eval : evaluations_) *out.add_evaluations() = eval;
  // Membership changes are made under mu_ (lock order: this, then the group).
  *out.mutable_membership() = shards_->MembershipNow();
  out.set_resumed(restored_);
  return replica;
}

absl::Status JobCoordinator::RestoreReplica(const CoordinatorReplica& replica) {
  const CoordinatorWorkers& in = replica.workers();
  if (in.incarnation() != options_.incarnation) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the replicated job state is of coordinator incarnation %016x, this one is %016x",
        in.incarnation(), options_.incarnation));
  }
  FULCRUM_RETURN_IF_ERROR(RestoreProgress(replica.progress()));
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  next_worker_id_ = std::max(next_worker_id_, in.next_worker_id());
  next_lease_id_ = std::max(next_lease_id_, in.next_lease_id());
  uint64_t workers_examples = 0;
  for (const CoordinatorWorkers::Worker& w : in.workers()) {
    WorkerRecord record;
    record.status = w.status();
    record.last_heartbeat = record.rate_since = record.registered_at = now;  // heard from just now
    record.rate_examples = w.status().examples_seen();
    if (w.lease_id() != 0) record.lease_id = w.lease_id();
    record.last_finished_lease = w.last_finished_lease();
    const uint64_t id = w.status().worker_id();
    const WorkerState state = w.status().state();
    if (state != DEAD && state != LEFT) live_by_name_[w.status().name()] = id;
    workers_examples += w.status().examples_seen();
    workers_[id] = std::move(record);
  }
  // The progress counts the workers' examples; they count on from here.
  restored_examples_ -= std::min(restored_examples_, workers_examples);
  for (const CoordinatorWorkers::Lease& l : in.leases()) {
    auto worker = workers_.find(l.worker_id());
    if (worker == workers_.end() || worker->second.lease_id != l.id()) {
      return absl::FailedPreconditionError(absl::StrCat("replicated lease ", l.id(), " of worker ",
                                                        l.worker_id(), " is not that worker's"));
    }
    Lease lease;
    lease.id = l.id();
    lease.worker_id = l.worker_id();
    lease.evaluate = l.evaluate();
    lease.epoch = l.epoch();
    lease.partition = l.partition();
    lease.final = l.final();
    leases_[lease.id] = lease;
    if (lease.evaluate) {
      // The progress lists running evaluations as pending: this one runs.
      auto queued = std::find_if(eval_queue_.begin(), eval_queue_.end(),
                                 [&](const EvalTask& t) { return t.epoch == lease.epoch; });
      if (queued != eval_queue_.end()) eval_queue_.erase(queued);
    } else if (lease.epoch >= oldest_epoch_ && lease.epoch < options_.job->epochs() &&
               lease.partition < partitions_) {
      EpochLocked(lease.epoch)[lease.partition] = PartitionState::kLeased;
    }
  }
  for (auto& [id, record] : workers_) {
    if (record.lease_id.has_value() && !leases_.contains(*record.lease_id)) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker ", id, " holds lease ", *record.lease_id, ", not replicated"));
    }
  }
  evaluations_.assign(in.evaluations().begin(), in.evaluations().end());
  restored_ = in.resumed();
  state_ = replica.progress().state();
  if (!JobOver(state_) && state_ != WAITING_FOR_WORKERS) started_at_ = now;
  shards_->TakeOverMembership(in.membership());
  shards_->TakeOverPairs({replica.shard_pairs().begin(), replica.shard_pairs().end()});
  return absl::OkStatus();
}

void JobCoordinator::RecordCheckpoint(const CheckpointInfo& info) {
  {
    absl::MutexLock lock(&mu_);
    last_checkpoint_ = info;
  }
  StateChanged().IgnoreError();  // logged where replicated
}

void JobCoordinator::RecordCheckpointFailure(const absl::Status& error) {
  absl::MutexLock lock(&mu_);
  ++checkpoint_failures_;
  last_checkpoint_error_ = std::string(error.message());
}

void JobCoordinator::RecordRestore(const CheckpointInfo& info) {
  absl::MutexLock lock(&mu_);
  restored_from_ = info;
}

JobState JobCoordinator::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

bool JobCoordinator::WaitUntilDone(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return JobOver(state_); };
  return mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
}

bool JobCoordinator::WaitUntilWorkersLeft(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto left = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return JobOver(state_) && LiveWorkersLocked() == 0;
  };
  return mu_.AwaitWithDeadline(absl::Condition(&left), deadline);
}

JobStatus JobCoordinator::GetStatus() const {
  absl::MutexLock lock(&mu_);
  return GetStatusLocked();
}

JobStatus JobCoordinator::GetStatusLocked() const {
  const absl::Time now = options_.clock->Now();
  const JobSpec& job = options_.job.spec();
  JobStatus status;
  status.set_state(state_);
  status.set_model(job.model());
  status.set_mode(job.mode());
  status.set_optimizer(shards_->local()->store().optimizer().Describe());
  for (const std::string& own : own_optimizers_) status.add_own_optimizers(own);
  status.set_epochs(job.epochs());
  status.set_epoch(std::min(oldest_epoch_, job.epochs()));
  status.set_round(shards_->local()->version().version);
  status.set_live_workers(LiveWorkersLocked());
  status.set_expected_workers(job.num_workers());
  status.set_incarnation(options_.incarnation);
  status.set_partitions_per_epoch(partitions_);
  status.set_staleness(job.staleness());
  *status.mutable_last_eval() = last_eval_;
  status.set_elapsed_seconds(ElapsedSecondsLocked());
  for (const EvalResult& e : evaluations_) *status.add_evaluations() = e;
  if (last_checkpoint_.sequence() > 0) *status.mutable_last_checkpoint() = last_checkpoint_;
  if (restored_from_.sequence() > 0) *status.mutable_restored_from() = restored_from_;
  status.set_checkpoint_failures(checkpoint_failures_);
  status.set_last_checkpoint_error(last_checkpoint_error_);
  uint32_t left = 0;
  if (oldest_epoch_ < job.epochs()) {
    auto it = epochs_.find(oldest_epoch_);
    left = it == epochs_.end()
               ? partitions_
               : std::count_if(it->second.begin(), it->second.end(),
                               [](PartitionState s) { return s != PartitionState::kDone; });
  }
  status.set_partitions_left_in_epoch(left);
  double loss_sum = 0, wait = 0, rate = 0;
  int loss_count = 0;
  uint64_t examples = 0;
  uint32_t dead = 0;
  for (const auto& [id, record] : workers_) {
    WorkerStatus* w = status.add_workers();
    *w = record.status;
    w->set_seconds_since_heartbeat(absl::ToDoubleSeconds(now - record.last_heartbeat));
    examples += w->examples_seen();
    wait += w->wait_seconds();
    if (w->state() == DEAD) ++dead;
    if (w->state() == ACTIVE) {
      rate += w->examples_per_second();
      if (w->loss() > 0) {
        loss_sum += w->loss();
        ++loss_count;
      }
    }
  }
  if (loss_count == 0) {  // nobody training right now: the latest losses
    for (const auto& [id, record] : workers_) {
      if (record.status.loss() > 0) {
        loss_sum += record.status.loss();
        ++loss_count;
      }
    }
  }
  status.set_dead_workers(dead);
  examples += restored_examples_;
  status.set_examples_seen(examples);
  status.set_examples_per_second(rate);
  status.set_wait_seconds(wait);
  status.set_loss(loss_count > 0 ? loss_sum / loss_count : 0);
  for (const PartitionRecord& r : completed_) *status.add_completed() = r;
  for (SparseTableStatus& t : shards_->local()->SparseStatus())
    *status.add_sparse_tables() = std::move(t);
  for (ShardStatus& s : shards_->Status()) *status.add_shards() = std::move(s);
  return status;
}

double JobCoordinator::ElapsedSecondsLocked() const {
  double elapsed = restored_elapsed_seconds_;
  if (state_ != WAITING_FOR_WORKERS && started_at_ != absl::Time()) {
    const absl::Time end = JobOver(state_) ? finished_at_ : options_.clock->Now();
    elapsed += absl::ToDoubleSeconds(end - started_at_);
  }
  return elapsed;
}

std::string JobCoordinator::ProgressLine() const {
  JobStatus s = GetStatus();
  std::string line = absl::StrFormat(
      "%s round=%d epoch=%d/%d partitions_left=%d workers=%d examples=%d "
      "examples/s=%.0f loss=%.4f",
      JobState_Name(s.state()), s.round(), std::min(s.epoch() + 1, s.epochs()), s.epochs(),
      s.partitions_left_in_epoch(), s.live_workers(), s.examples_seen(), s.examples_per_second(),
      s.loss());
  if (s.last_eval().examples() > 0) line += FormatEval(s.last_eval());
  return line;
}

std::string JobCoordinator::ResultLine() const {
  JobStatus s = GetStatus();
  std::string mode = ConsistencyModeName(s.mode());
  if (s.mode() == SSP) mode = absl::StrCat("ssp:", s.staleness());
  std::string eval;
  if (s.last_eval().examples() > 0 || !s.evaluations().empty()) eval = FormatEval(s.last_eval());
  return absl::StrFormat("result: model=%s mode=%s epochs=%d%s wall_seconds=%.1f",
                         s.model().empty() ? "-" : s.model(), mode, s.epochs(), eval,
                         s.elapsed_seconds());
}

absl::Status WorkersWitnessCoordinatorLoss(const CoordinatorWorkers& workers,
                                           const absl::flat_hash_set<uint64_t>& came) {
  size_t live = 0;
  size_t live_came = 0;
  for (const CoordinatorWorkers::Worker& w : workers.workers()) {
    const WorkerState state = w.status().state();
    if (state == DEAD || state == LEFT) continue;
    ++live;
    if (came.contains(w.status().worker_id())) ++live_came;
  }
  return WorkersLetBackupTakeOver(live, live == 0 ? came.size() : live_came);
}

}  // namespace fulcrum
