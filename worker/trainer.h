// Trainer: one worker's life in a job — register, heartbeat, and train or
// evaluate whatever the coordinator leases to it until the job is over.
#ifndef FULCRUM_WORKER_TRAINER_H_
#define FULCRUM_WORKER_TRAINER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "worker/coordinator_client.h"
#include "worker/fulcrum_worker.h"
#include "worker/ps_client.h"
#include "worker/topk.h"
#include "worker/worker_session.h"

namespace fulcrum {

struct TrainerOptions {
  // Registration, retries, deadlines, metrics (see worker_session.h).
  WorkerSessionOptions session;
  // Sleep after every training step (for tests and demos of stragglers).
  absl::Duration step_delay = absl::ZeroDuration();
};

// Runs a worker: registers (again, whenever the coordinator has declared it
// dead), heartbeats from a thread of its own, and loops on AcquirePartition:
// a training lease is trained from its start (mini-batches in an order fixed
// by the job's seed and the partition): a pull before the first step, then
// after each step one PushPull that sends its gradient and brings back the
// next step's parameters (a plain push after the last); an evaluation task
// pulls the current model and evaluates it on the test set. It returns when
// the coordinator says the job is over.
//
// Sync workers follow each shard's rounds; ssp workers send the clock of
// their lease, and their pulls wait while they are too far ahead. Async
// workers of dense models, if the job overlaps communication, compute a step
// while the previous step's PushPull is in flight (on a second thread).
//
// The trainer builds the job's workload (data and model, see workload.h)
// with `workload_factory` once it knows the job from its registration.
//
// Not thread-safe (Run once). The clients are not owned and must outlive the
// trainer; they are used from two threads.
class Trainer {
 public:
  Trainer(const TrainerOptions& options, PsClient* ps, CoordinatorClient* coordinator,
          WorkloadFactory workload_factory);

  // OK when the job is over (finished or stopped). Errors: an unrecoverable
  // RPC status, or FAILED_PRECONDITION if the data does not fit the model.
  absl::Status Run();

  WorkerStats stats() const { return session_.stats(); }

 private:
  // Builds or reconfigures the workload for the job of the last
  // registration.
  absl::Status AdoptJob();
  absl::Status TrainPartition(const AcquirePartitionResponse& lease);
  absl::Status EvaluateTask(const AcquirePartitionResponse& lease);
  // The async, overlapped training loop (TrainPartition picks it); params_
  // already holds the first step's parameters.
  absl::Status TrainOverlapped(const std::vector<int64_t>& order);
  // The gradient of a step as it goes out (top-k when the job says so).
  absl::StatusOr<double> ComputeStep(absl::Span<const int64_t> examples, ParameterBatch* grads);
  // Counts a finished step and sleeps the step delay.
  void StepDone(int64_t examples, double loss, absl::Time step_start);

  const TrainerOptions options_;
  const WorkloadFactory workload_factory_;
  WorkerSession session_;

  JobSpec job_;  // the job the workload was configured for
  int64_t adopted_registration_ = 0;
  std::unique_ptr<Workload> workload_;

  // Training-loop state (one thread).
  ParameterBatch params_;
  ParameterBatch grads_;
  // Overlapped loop: the buffers of the PushPull in flight.
  ParameterBatch incoming_params_;
  ParameterBatch outgoing_grads_;
  // The job's top-k sparsification, or null.
  std::unique_ptr<TopKSparsifier> sparsifier_;
  bool said_overlapping_ = false;  // logged once
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_TRAINER_H_
