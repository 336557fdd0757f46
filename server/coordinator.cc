#include "server/coordinator.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/model_spec.h"

namespace fulcrum {
namespace {

// Examples/s is measured over windows of at least this long.
constexpr absl::Duration kRateWindow = absl::Seconds(1);

}  // namespace

JobCoordinator::JobCoordinator(const CoordinatorOptions& options,
                         ParameterShard* shard)
    : options_(options), shard_(shard) {}

absl::StatusOr<RegisterWorkerResponse> JobCoordinator::RegisterWorker(
    const RegisterWorkerRequest& request) {
  absl::MutexLock lock(&mu_);
  if (state_ != WAITING_FOR_WORKERS) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the job takes ", options_.job.num_workers(),
        " workers and all have registered"));
  }
  const uint32_t index = static_cast<uint32_t>(workers_.size());
  const uint64_t id = next_worker_id_++;

  WorkerRecord record;
  WorkerStatus& status = record.status;
  status.set_worker_id(id);
  status.set_name(request.worker_name().empty() ? absl::StrCat("worker-", id)
                                                : request.worker_name());
  status.set_host(request.host());
  status.mutable_partition()->set_index(index);
  status.mutable_partition()->set_count(options_.job.num_workers());
  status.set_evaluator(index == 0);
  record.last_report = record.rate_since = absl::Now();
  workers_.emplace(id, record);
  shard_->AdmitWorker(id);

  RegisterWorkerResponse response;
  response.set_worker_id(id);
  *response.mutable_job() = options_.job;
  for (const std::string& address : options_.shard_addresses) {
    response.add_shard_addresses(address);
  }
  *response.mutable_partition() = status.partition();
  response.set_incarnation(options_.incarnation);
  response.set_evaluator(status.evaluator());

  FULCRUM_LOG(INFO) << "worker " << id << " (" << status.name() << " on "
                    << status.host() << ") registered: partition " << index
                    << " of " << options_.job.num_workers()
                    << (status.evaluator() ? ", evaluator" : "");
  if (workers_.size() == options_.job.num_workers()) {
    state_ = RUNNING;
    started_at_ = absl::Now();
    shard_->Start();
    FULCRUM_LOG(INFO) << "all " << options_.job.num_workers()
                      << " workers registered; job running";
  }
  return response;
}

absl::StatusOr<ReportProgressResponse> JobCoordinator::ReportProgress(
    const ReportProgressRequest& request) {
  if (!std::isfinite(request.loss()) || request.loss() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss must be finite and non-negative, got ", request.loss()));
  }
  if (request.has_eval()) {
    const double acc = request.eval().test_accuracy();
    if (!(acc >= 0.0 && acc <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("test accuracy must be in [0, 1], got ", acc));
    }
  }
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(request.worker_id());
  if (it == workers_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "unknown worker id ", request.worker_id(), "; register first"));
  }
  WorkerRecord& record = it->second;
  WorkerStatus& status = record.status;
  const absl::Time now = absl::Now();
  status.set_epoch(request.epoch());
  status.set_step(request.step());
  if (request.loss() > 0) status.set_loss(request.loss());
  if (request.examples_seen() >= record.rate_examples &&
      now - record.rate_since >= kRateWindow) {
    status.set_examples_per_second(
        (request.examples_seen() - record.rate_examples) /
        absl::ToDoubleSeconds(now - record.rate_since));
    record.rate_since = now;
    record.rate_examples = request.examples_seen();
  }
  status.set_examples_seen(request.examples_seen());
  record.last_report = now;

  if (request.has_eval()) {
    last_eval_ = request.eval();
    FULCRUM_LOG(INFO) << absl::StrFormat(
        "%s epoch %d/%d: test_accuracy=%.4f test_loss=%.4f",
        request.eval().final() ? "final evaluation after" : "evaluation after",
        request.eval().epoch(), options_.job.epochs(),
        request.eval().test_accuracy(), request.eval().test_loss());
    if (request.eval().final() && state_ == EVALUATING) {
      state_ = FINISHED;
      finished_at_ = now;
      FULCRUM_LOG(INFO) << "job finished";
    }
  }
  if (request.training_done() && !status.training_done()) {
    status.set_training_done(true);
    status.set_examples_per_second(0);
    shard_->DeactivateWorker(status.worker_id());
    FULCRUM_LOG(INFO) << "worker " << status.worker_id()
                      << " finished training after " << status.step()
                      << " steps";
    MaybeFinishTrainingLocked();
  }
  ReportProgressResponse response;
  response.set_job_state(state_);
  return response;
}

void JobCoordinator::MaybeFinishTrainingLocked() {
  if (state_ != RUNNING) return;
  for (const auto& [id, record] : workers_) {
    if (!record.status.training_done()) return;
  }
  state_ = EVALUATING;
  FULCRUM_LOG(INFO) << "every worker finished training; final evaluation";
}

JobState JobCoordinator::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

bool JobCoordinator::WaitUntilDone(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return state_ == FINISHED || state_ == STOPPED;
  };
  return mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
}

JobStatus JobCoordinator::GetStatus() const {
  absl::MutexLock lock(&mu_);
  return GetStatusLocked();
}

JobStatus JobCoordinator::GetStatusLocked() const {
  const absl::Time now = absl::Now();
  const JobSpec& job = options_.job;
  JobStatus status;
  status.set_state(state_);
  status.set_model(job.model());
  status.set_mode(job.mode());
  status.set_optimizer(shard_->store().optimizer().Describe());
  status.set_epochs(job.epochs());
  status.set_round(shard_->version().version);
  status.set_registered_workers(workers_.size());
  status.set_expected_workers(job.num_workers());
  status.set_incarnation(options_.incarnation);
  *status.mutable_last_eval() = last_eval_;
  if (state_ != WAITING_FOR_WORKERS) {
    const absl::Time end = (state_ == FINISHED) ? finished_at_ : now;
    status.set_elapsed_seconds(absl::ToDoubleSeconds(end - started_at_));
  }
  uint32_t min_epoch = job.epochs();
  bool any_training = false;
  double loss_sum = 0;
  int loss_count = 0;
  uint64_t examples = 0;
  double rate = 0;
  for (const auto& [id, record] : workers_) {
    WorkerStatus* w = status.add_workers();
    *w = record.status;
    w->set_seconds_since_report(absl::ToDoubleSeconds(now - record.last_report));
    examples += w->examples_seen();
    if (!w->training_done()) {
      any_training = true;
      min_epoch = std::min(min_epoch, w->epoch());
      rate += w->examples_per_second();
      if (w->loss() > 0) {
        loss_sum += w->loss();
        ++loss_count;
      }
    }
  }
  if (!any_training) {
    min_epoch = state_ == WAITING_FOR_WORKERS ? 0 : job.epochs();
    for (const auto& [id, record] : workers_) {
      if (record.status.loss() > 0) {
        loss_sum += record.status.loss();
        ++loss_count;
      }
    }
  }
  status.set_epoch(min_epoch);
  status.set_examples_seen(examples);
  status.set_examples_per_second(rate);
  status.set_loss(loss_count > 0 ? loss_sum / loss_count : 0);
  return status;
}

std::string JobCoordinator::ProgressLine() const {
  JobStatus s = GetStatus();
  std::string line = absl::StrFormat(
      "%s round=%d epoch=%d/%d examples=%d examples/s=%.0f loss=%.4f",
      JobState_Name(s.state()), s.round(), std::min(s.epoch() + 1, s.epochs()),
      s.epochs(), s.examples_seen(), s.examples_per_second(), s.loss());
  if (s.last_eval().examples() > 0) {
    absl::StrAppendFormat(&line, " test_accuracy=%.4f",
                          s.last_eval().test_accuracy());
  }
  return line;
}

std::string JobCoordinator::ResultLine() const {
  JobStatus s = GetStatus();
  return absl::StrFormat(
      "result: model=%s mode=%s epochs=%d test_accuracy=%.4f wall_seconds=%.1f",
      s.model(), ConsistencyModeName(s.mode()), s.epochs(), s.last_eval().test_accuracy(),
      s.elapsed_seconds());
}

}  // namespace fulcrum
