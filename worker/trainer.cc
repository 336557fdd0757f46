#include "worker/trainer.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/model_spec.h"
#include "common/status_macros.h"

namespace fulcrum {

Trainer::Trainer(const TrainerOptions& options,
                 const RegisterWorkerResponse& registration, Model* model,
                 PsClient* ps, CoordinatorClient* coordinator,
                 const ImageDataset* train, const ImageDataset* test)
    : options_(options),
      registration_(registration),
      job_(registration_.job()),
      model_(model),
      ps_(ps),
      coordinator_(coordinator),
      train_(train),
      test_(test) {}

absl::Status Trainer::CheckData() const {
  const TensorSpec& first = model_->tensors().front();
  const int64_t features = first.shape(0);
  for (const ImageDataset* data : {train_, test_}) {
    if (data == nullptr) continue;
    if (data->num_features != features) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data has ", data->num_features, " features per example; model ",
          job_.model(), " expects ", features));
    }
    for (uint8_t label : data->labels) {
      if (label >= kImageClasses) {
        return absl::FailedPreconditionError(absl::StrCat(
            "label ", int{label}, " is out of range for ", kImageClasses,
            " classes"));
      }
    }
  }
  if (job_.batch_size() == 0) {
    return absl::FailedPreconditionError("job has batch_size 0");
  }
  if (registration_.partition().count() == 0 ||
      registration_.partition().index() >= registration_.partition().count()) {
    return absl::FailedPreconditionError("coordinator sent an invalid partition");
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerVersion> Trainer::PullWithRetry(int64_t clock) {
  const absl::Time give_up = absl::Now() + options_.start_timeout;
  while (true) {
    absl::StatusOr<ServerVersion> version;
    absl::Status s = RetryWithBackoff(
        options_.retry, IsUnavailable, [&]() -> absl::Status {
          version = ps_->Pull(clock, &params_);
          return version.status();
        });
    // A pull that timed out waiting for the job to start or for a slow round
    // is simply asked again, up to start_timeout.
    if (s.code() == absl::StatusCode::kDeadlineExceeded && absl::Now() < give_up) {
      FULCRUM_LOG(INFO) << "pull waiting: " << s.message();
      continue;
    }
    if (!s.ok()) return s;
    return version;
  }
}

absl::StatusOr<ServerVersion> Trainer::PushWithRetry(int64_t clock,
                                                     uint32_t examples) {
  const uint64_t request_id = next_request_id_++;
  absl::StatusOr<ServerVersion> version;
  absl::Status s = RetryWithBackoff(options_.retry, IsUnavailable, [&]() {
    version = ps_->Push(clock, request_id, grads_, examples);
    return version.status();
  });
  if (!s.ok()) return s;
  return version;
}

absl::Status Trainer::Report(bool force, bool training_done,
                             const EvalResult* eval) {
  const absl::Time now = absl::Now();
  if (!force && now - last_report_ < options_.report_interval) {
    return absl::OkStatus();
  }
  ReportProgressRequest request;
  request.set_worker_id(registration_.worker_id());
  request.set_epoch(epoch_);
  request.set_step(steps_);
  request.set_examples_seen(examples_seen_);
  if (loss_count_ > 0) last_loss_ = loss_sum_ / loss_count_;
  request.set_loss(last_loss_);
  request.set_training_done(training_done);
  if (eval != nullptr) *request.mutable_eval() = *eval;
  absl::StatusOr<ReportProgressResponse> response;
  FULCRUM_RETURN_IF_ERROR(RetryWithBackoff(options_.retry, IsUnavailable, [&]() {
    response = coordinator_->ReportProgress(request);
    return response.status();
  }));
  last_state_ = response->job_state();
  last_report_ = now;
  loss_sum_ = 0;
  loss_count_ = 0;
  return absl::OkStatus();
}

EvalResult Trainer::Evaluate(uint32_t epoch, bool final) {
  int64_t correct = 0;
  double loss_sum = 0;
  for (int64_t begin = 0; begin < test_->num_examples;
       begin += options_.eval_chunk) {
    Batch batch;
    batch.size = std::min(options_.eval_chunk, test_->num_examples - begin);
    batch.num_features = test_->num_features;
    batch.features = &test_->features[begin * test_->num_features];
    batch.labels = &test_->labels[begin];
    model_->Evaluate(params_, batch, &correct, &loss_sum);
  }
  EvalResult eval;
  eval.set_epoch(epoch);
  eval.set_examples(test_->num_examples);
  eval.set_test_accuracy(double(correct) / test_->num_examples);
  eval.set_test_loss(loss_sum / test_->num_examples);
  eval.set_final(final);
  FULCRUM_LOG(INFO) << absl::StrFormat(
      "%s after epoch %d: test_accuracy=%.4f test_loss=%.4f",
      final ? "final evaluation" : "evaluation", epoch, eval.test_accuracy(),
      eval.test_loss());
  last_eval_ = eval;
  return eval;
}

absl::Status Trainer::FinalEvaluation() {
  // Wait until every worker has finished, then evaluate the final model.
  while (last_state_ == RUNNING || last_state_ == WAITING_FOR_WORKERS) {
    absl::SleepFor(absl::Milliseconds(100));
    FULCRUM_RETURN_IF_ERROR(Report(/*force=*/true, /*training_done=*/true, nullptr));
  }
  if (last_state_ != EVALUATING) return absl::OkStatus();  // stopped
  FULCRUM_RETURN_IF_ERROR(PullWithRetry(-1).status());
  const EvalResult eval = Evaluate(job_.epochs(), /*final=*/true);
  return Report(/*force=*/true, /*training_done=*/true, &eval);
}

absl::Status Trainer::Run() {
  FULCRUM_RETURN_IF_ERROR(CheckData());
  const DataPartition& partition = registration_.partition();
  const int64_t n = train_->num_examples;
  const int64_t begin = int64_t{partition.index()} * n / partition.count();
  const int64_t end = int64_t{partition.index() + 1} * n / partition.count();
  const int64_t batch_size = job_.batch_size();
  const bool sync = job_.mode() == SYNC;
  const bool evaluator = registration_.evaluator() && test_ != nullptr;
  FULCRUM_LOG(INFO) << "worker " << registration_.worker_id() << ": examples ["
                    << begin << ", " << end << ") of " << n << ", "
                    << job_.epochs() << " epochs, batch " << batch_size
                    << (evaluator ? ", evaluator" : "");

  std::vector<int64_t> order(end - begin);
  std::iota(order.begin(), order.end(), begin);
  batch_features_.resize(batch_size * train_->num_features);
  batch_labels_.resize(batch_size);

  // The first pull tells a sync worker which round it joins at.
  FULCRUM_ASSIGN_OR_RETURN(ServerVersion version, PullWithRetry(-1));
  int64_t clock = version.round;
  bool have_params = true;
  FULCRUM_RETURN_IF_ERROR(Report(/*force=*/true, false, nullptr));

  for (epoch_ = 0; epoch_ < job_.epochs(); ++epoch_) {
    std::mt19937_64 rng(job_.seed() * 1000003 + partition.index() * 7919 + epoch_);
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t pos = 0; pos < order.size(); pos += batch_size) {
      const int64_t size = std::min<int64_t>(batch_size, order.size() - pos);
      for (int64_t i = 0; i < size; ++i) {
        const int64_t example = order[pos + i];
        std::copy_n(&train_->features[example * train_->num_features],
                    train_->num_features,
                    &batch_features_[i * train_->num_features]);
        batch_labels_[i] = train_->labels[example];
      }
      if (!have_params) {
        FULCRUM_ASSIGN_OR_RETURN(version, PullWithRetry(sync ? clock : -1));
      }
      Batch batch{batch_features_.data(), batch_labels_.data(), size,
                  train_->num_features};
      loss_sum_ += model_->ComputeGradients(params_, batch, &grads_);
      ++loss_count_;
      FULCRUM_ASSIGN_OR_RETURN(version, PushWithRetry(clock, size));
      have_params = false;
      ++steps_;
      examples_seen_ += size;
      clock = sync ? clock + 1 : steps_;
      FULCRUM_RETURN_IF_ERROR(Report(/*force=*/false, false, nullptr));
      if (last_state_ == STOPPED) return absl::OkStatus();
    }
    const bool last_epoch = epoch_ + 1 == job_.epochs();
    if (evaluator && !last_epoch) {
      FULCRUM_ASSIGN_OR_RETURN(version, PullWithRetry(sync ? clock : -1));
      have_params = true;
      const EvalResult eval = Evaluate(epoch_ + 1, /*final=*/false);
      FULCRUM_RETURN_IF_ERROR(Report(/*force=*/true, false, &eval));
    }
  }
  epoch_ = job_.epochs() - 1;
  FULCRUM_RETURN_IF_ERROR(Report(/*force=*/true, /*training_done=*/true, nullptr));
  FULCRUM_LOG(INFO) << "worker " << registration_.worker_id()
                    << " finished training: " << steps_ << " steps, "
                    << examples_seen_ << " examples";
  if (evaluator) return FinalEvaluation();
  return absl::OkStatus();
}

}  // namespace fulcrum
