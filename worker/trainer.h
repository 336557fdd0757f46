// Trainer: one worker's training loop over its data partition.
#ifndef FULCRUM_WORKER_TRAINER_H_
#define FULCRUM_WORKER_TRAINER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/idx_dataset.h"
#include "common/retry.h"
#include "proto/fulcrum.pb.h"
#include "worker/coordinator_client.h"
#include "worker/model.h"
#include "worker/ps_client.h"

namespace fulcrum {

struct TrainerOptions {
  // Progress (and heartbeat) reports to the coordinator at most this often.
  absl::Duration report_interval = absl::Seconds(1);
  // How long the worker keeps retrying pulls while the job waits for its
  // other workers.
  absl::Duration start_timeout = absl::Minutes(10);
  // Retries of calls that fail with UNAVAILABLE.
  RetryOptions retry;
  // Evaluation runs over the test set in chunks of this many examples.
  int64_t eval_chunk = 2000;
};

// Runs the job the coordinator gave this worker: for each epoch, shuffles its
// partition (seeded by the job's seed, the partition and the epoch), and for
// each mini-batch pulls the parameters, computes gradients and pushes them.
// In sync mode the worker's clock follows the shard's rounds. The evaluator
// worker measures test accuracy after each epoch and, once every worker has
// finished, on the final model.
//
// Not thread-safe; the model, clients and data sets are not owned and must
// outlive the trainer.
class Trainer {
 public:
  Trainer(const TrainerOptions& options,
          const RegisterWorkerResponse& registration, Model* model,
          PsClient* ps, CoordinatorClient* coordinator,
          const ImageDataset* train, const ImageDataset* test);

  // Trains every epoch. Errors: an unrecoverable RPC status, or
  // FAILED_PRECONDITION if the data does not fit the model.
  absl::Status Run();

  // Last evaluation this worker ran (zero if none).
  const EvalResult& last_eval() const { return last_eval_; }

 private:
  absl::Status CheckData() const;
  absl::StatusOr<ServerVersion> PullWithRetry(int64_t clock);
  absl::StatusOr<ServerVersion> PushWithRetry(int64_t clock, uint32_t examples);
  absl::Status Report(bool force, bool training_done, const EvalResult* eval);
  EvalResult Evaluate(uint32_t epoch, bool final);
  absl::Status FinalEvaluation();

  const TrainerOptions options_;
  const RegisterWorkerResponse registration_;
  const JobSpec& job_;
  Model* const model_;
  PsClient* const ps_;
  CoordinatorClient* const coordinator_;
  const ImageDataset* const train_;
  const ImageDataset* const test_;

  ParameterSet params_;
  ParameterSet grads_;
  std::vector<float> batch_features_;
  std::vector<uint8_t> batch_labels_;

  uint32_t epoch_ = 0;
  int64_t steps_ = 0;
  uint64_t examples_seen_ = 0;
  uint64_t next_request_id_ = 1;
  double loss_sum_ = 0;  // since the last report
  int64_t loss_count_ = 0;
  double last_loss_ = 0;
  absl::Time last_report_ = absl::InfinitePast();
  JobState last_state_ = JOB_STATE_UNSPECIFIED;
  EvalResult last_eval_;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_TRAINER_H_
