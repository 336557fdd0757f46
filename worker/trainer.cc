#include "worker/trainer.h"

#include <algorithm>
#include <future>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/eval_format.h"
#include "common/model_spec.h"

namespace fulcrum {
namespace {

// The examples of the mini-batch that starts at `pos` of `order`.
absl::Span<const int64_t> MiniBatchAt(const std::vector<int64_t>& order, size_t pos,
                                      size_t batch_size) {
  return absl::Span<const int64_t>(&order[pos], std::min(batch_size, order.size() - pos));
}

}  // namespace

Trainer::Trainer(const TrainerOptions& options, PsClient* ps, CoordinatorClient* coordinator,
                 WorkloadFactory workload_factory)
    : options_(options),
      workload_factory_(std::move(workload_factory)),
      session_(options.session, ps, coordinator) {}

absl::Status Trainer::AdoptJob() {
  const WorkerStats stats = session_.stats();
  if (stats.registrations == adopted_registration_) return absl::OkStatus();
  const JobSpec& job = session_.job();
  if (workload_ == nullptr || job.model() != job_.model()) {
    FULCRUM_ASSIGN_OR_RETURN(workload_, workload_factory_(job));
  }
  FULCRUM_RETURN_IF_ERROR(workload_->Configure(job));
  if (job.gradient_encoding() != INDEXED_NONZEROS) {
    sparsifier_.reset();
  } else if (sparsifier_ == nullptr) {  // a re-registration keeps the residual
    sparsifier_ = std::make_unique<TopKSparsifier>(job.topk_ratio());
  }
  job_ = job;
  adopted_registration_ = stats.registrations;
  return absl::OkStatus();
}

absl::Status Trainer::EvaluateTask(const AcquirePartitionResponse& lease) {
  absl::StatusOr<EvalResult> eval = workload_->Evaluate(
      [this](ParameterBatch* batch) { return session_.PullLatest(batch).status(); });
  if (!eval.ok()) return eval.status();
  FULCRUM_LOG(INFO) << absl::StrFormat("%s after epoch %d:%s test_loss=%.4f",
                                       lease.eval_final() ? "final evaluation" : "evaluation",
                                       lease.eval_epoch(), FormatEval(*eval), eval->test_loss());
  return session_.ReportEval(lease, *eval);
}

absl::StatusOr<double> Trainer::ComputeStep(absl::Span<const int64_t> examples,
                                            ParameterBatch* grads) {
  FULCRUM_ASSIGN_OR_RETURN(const double loss,
                           workload_->ComputeGradients(examples, params_, grads));
  if (sparsifier_ != nullptr) sparsifier_->Sparsify(grads);
  return loss;
}

void Trainer::StepDone(int64_t examples, double loss, absl::Time step_start) {
  session_.RecordStep(examples, loss, step_start);
  if (options_.step_delay > absl::ZeroDuration()) {
    absl::SleepFor(options_.step_delay);
  }
}

absl::Status Trainer::TrainOverlapped(const std::vector<int64_t>& order) {
  const size_t batch_size = job_.batch_size();
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
    if (!absl::IsAborted(version.status()) || session_.Interrupted()) return version.status();
    // A shard restarted: that gradient (of the old parameters) is dropped,
    // and training goes on from a fresh read.
    FULCRUM_LOG(WARNING) << "dropping a step: " << version.status().message();
    return session_.PullLatest(&params_).status();
  };
  for (size_t pos = 0; pos < order.size(); pos += batch_size) {
    const absl::Time step_start = options_.session.clock->Now();
    const absl::Span<const int64_t> examples = examples_at(pos);
    const absl::StatusOr<double> loss = ComputeStep(examples, &grads_);
    FULCRUM_RETURN_IF_ERROR(finish_in_flight());
    if (!loss.ok()) return loss.status();
    if (session_.Interrupted()) return absl::AbortedError("interrupted");
    std::swap(grads_, outgoing_grads_);
    workload_->PlanStep(examples_at(pos + batch_size < order.size() ? pos + batch_size : pos),
                        &incoming_params_);
    const uint32_t size = examples.size();
    in_flight = std::async(std::launch::async, [this, size] {
      return session_.PushPullNow(outgoing_grads_, size, &incoming_params_);
    });
    StepDone(size, *loss, step_start);
  }
  return finish_in_flight();
}

absl::Status Trainer::TrainPartition(const AcquirePartitionResponse& lease) {
  const DataPartition& partition = lease.partition();
  FULCRUM_ASSIGN_OR_RETURN(const int64_t n, workload_->LoadPartition(partition));
  const int64_t batch_size = job_.batch_size();

  const std::vector<int64_t> order = ExampleOrder(job_, partition, n);

  auto examples_at = [&](size_t pos) { return MiniBatchAt(order, pos, batch_size); };
  int restarts_seen = 0;
  bool have_params = false;  // params_ holds the parameters for the step at pos
  for (size_t pos = 0; pos < order.size();) {
    if (session_.Interrupted()) return absl::AbortedError("interrupted");
    const absl::Time step_start = options_.session.clock->Now();
    const absl::Span<const int64_t> examples = examples_at(pos);
    absl::StatusOr<ServerVersion> version = ServerVersion();
    if (!have_params) {
      workload_->PlanStep(examples, &params_);
      version = session_.Pull(&params_);
      if (version.ok() && session_.MayOverlap() && job_.overlap_communication() &&
          params_.sparse.empty() && pos == 0) {
        FULCRUM_RETURN_IF_ERROR(TrainOverlapped(order));
        break;
      }
    }
    double loss = 0;
    if (version.ok()) {
      FULCRUM_ASSIGN_OR_RETURN(loss, ComputeStep(examples, &grads_));
      const size_t next = pos + batch_size;
      if (next < order.size()) {
        workload_->PlanStep(examples_at(next), &params_);
        version = session_.PushPull(grads_, examples.size(), &params_);
      } else {
        version = session_.Push(grads_, examples.size());
      }
      have_params = version.ok() && next < order.size();
    }
    if (absl::IsAborted(version.status()) && !session_.Interrupted() && ++restarts_seen <= 10) {
      // A shard restarted from its checkpoint (the session adjusted the
      // clocks): the step is done again from a fresh pull, so a gradient of
      // the old parameters never reaches the restored ones.
      FULCRUM_LOG(WARNING) << "redoing a step: " << version.status().message();
      have_params = false;
      continue;
    }
    if (!version.ok()) return version.status();
    pos += batch_size;
    StepDone(examples.size(), loss, step_start);
  }
  return session_.Complete(lease);
}

absl::Status Trainer::Run() {
  FULCRUM_RETURN_IF_ERROR(session_.Register());
  FULCRUM_RETURN_IF_ERROR(AdoptJob());
  while (true) {
    FULCRUM_ASSIGN_OR_RETURN(const AcquirePartitionResponse lease, session_.NextTask());
    FULCRUM_RETURN_IF_ERROR(AdoptJob());
    absl::Status s;
    switch (lease.kind()) {
      case AcquirePartitionResponse::DONE:
        return absl::OkStatus();  // progress was flushed after the last work
      case AcquirePartitionResponse::WAIT:
        absl::SleepFor(absl::Seconds(std::max(0.01, lease.retry_after_seconds())));
        continue;
      case AcquirePartitionResponse::EVALUATE:
        s = EvaluateTask(lease);
        break;
      case AcquirePartitionResponse::TRAIN:
        s = TrainPartition(lease);
        break;
      default:
        return absl::InternalError(
            absl::StrCat("unknown work kind ", static_cast<int>(lease.kind())));
    }
    if (s.ok() || session_.Interrupted()) {
      // Interrupted: the job stopped (NextTask says DONE) or this worker was
      // declared dead (NextTask registers again).
      if (!s.ok()) FULCRUM_LOG(WARNING) << "work abandoned: " << s.message();
      continue;
    }
    return s;
  }
}

}  // namespace fulcrum
