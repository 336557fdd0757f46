// Trainer: one worker's life in a job — register, heartbeat, and train or
// evaluate whatever the coordinator leases to it until the job is over.
#ifndef FULCRUM_WORKER_TRAINER_H_
#define FULCRUM_WORKER_TRAINER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/base/retry.h"
#include "common/data/idx_dataset.h"
#include "common/metrics.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "worker/coordinator_client.h"
#include "worker/model.h"
#include "worker/ps_client.h"
#include "worker/step_clocks.h"
#include "worker/topk.h"
#include "worker/workload.h"

namespace fulcrum {

// The worker's Prometheus metrics (owned by a MetricsRegistry).
struct TrainerMetrics {
  Counter* steps = nullptr;
  Counter* examples = nullptr;
  Counter* partitions = nullptr;
  Counter* evaluations = nullptr;
  Counter* registrations = nullptr;
  Counter* wait_seconds = nullptr;  // pulls waiting for rounds/slower workers
  Gauge* loss = nullptr;            // last mini-batch's training loss
  Histogram* pull_latency = nullptr;
  Histogram* push_latency = nullptr;
  Histogram* pushpull_latency = nullptr;  // fused push + next pull
  Histogram* step_seconds = nullptr;      // one whole step: pull, compute, push

  static TrainerMetrics Register(MetricsRegistry* registry);
};

struct TrainerOptions {
  // Shown in status; a worker registering with the name of a live one
  // replaces it.
  std::string worker_name;
  std::string host;
  // How long the worker keeps asking while a pull times out waiting (the job
  // waiting for its first workers, a slow round).
  absl::Duration start_timeout = absl::Minutes(10);
  // Retries of calls that fail with UNAVAILABLE.
  RetryOptions retry;
  // Sleep after every training step (for tests and demos of stragglers).
  absl::Duration step_delay = absl::ZeroDuration();
  // Re-registrations in a row (without finishing any work between them)
  // before the worker gives up.
  int max_reregistrations = 10;
  // Null: no metrics. Not owned.
  const TrainerMetrics* metrics = nullptr;
  // Measures latencies, steps and the start timeout. Not owned.
  const Clock* clock = Clock::Real();
};

// Counters of one Trainer's work, for tests and logs.
struct TrainerStats {
  int64_t partitions = 0;
  int64_t evaluations = 0;
  int64_t registrations = 0;
  int64_t steps = 0;
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
  ~Trainer();

  // OK when the job is over (finished or stopped). Errors: an unrecoverable
  // RPC status, or FAILED_PRECONDITION if the data does not fit the model.
  absl::Status Run();

  TrainerStats stats() const;

 private:
  absl::Status Register();
  absl::Status TrainPartition(const AcquirePartitionResponse& lease);
  absl::Status EvaluateTask(const AcquirePartitionResponse& lease);
  absl::StatusOr<ServerVersion> PullWithRetry(absl::Span<const int64_t> clocks,
                                              ParameterBatch* batch);
  absl::StatusOr<ServerVersion> PushWithRetry(absl::Span<const int64_t> clocks, uint32_t examples);
  // Pushes `grads` and pulls into `params` in one call (same request id on
  // every retry). Safe to run on another thread while the training thread
  // computes, as long as nothing else uses the PsClient.
  absl::StatusOr<ServerVersion> PushPullWithRetry(absl::Span<const int64_t> push_clocks,
                                                  uint32_t examples,
                                                  absl::Span<const int64_t> pull_clocks,
                                                  uint64_t request_id, const ParameterBatch& grads,
                                                  ParameterBatch* params);
  // Runs a call that may wait for rounds or slower workers: UNAVAILABLE is
  // retried with backoff, a wait that times out is asked again until
  // start_timeout; the reply's waits go into the progress.
  template <typename Call>
  absl::StatusOr<ServerVersion> CallWaiting(Histogram* latency, Call call);
  // The async, overlapped training loop (TrainPartition picks it); params_
  // already holds the first step's parameters.
  absl::Status TrainOverlapped(const std::vector<int64_t>& order);
  // The gradient of a step as it goes out (top-k when the job says so).
  double ComputeStep(absl::Span<const int64_t> examples, ParameterBatch* grads);
  // Counts a finished step in progress, stats and metrics.
  void RecordStep(int64_t examples, double loss, absl::Time step_start);
  void HeartbeatLoop();
  // Sends one heartbeat with the progress so far (also called after each
  // piece of work and before exiting, so status is exact at the end).
  void SendHeartbeat();
  // True once the job was stopped or this id was declared dead.
  bool Interrupted() const { return stopped_ || evicted_; }

  const TrainerOptions options_;
  PsClient* const ps_;
  CoordinatorClient* const coordinator_;
  const WorkloadFactory workload_factory_;

  // Who this worker is now (set by Register; read by the heartbeat thread
  // and an overlapped push-pull).
  WorkerIdentity worker() const {
    absl::MutexLock lock(&mu_);
    return worker_;
  }
  JobSpec job_;
  std::unique_ptr<Workload> workload_;
  absl::Duration heartbeat_interval_ = absl::Seconds(1);

  // Serialises heartbeats from the thread and the training loop.
  absl::Mutex heartbeat_mu_;
  bool heartbeat_warned_ ABSL_GUARDED_BY(heartbeat_mu_) = false;
  // Flags the heartbeat thread raises for the training loop.
  std::atomic<bool> stopped_{false};
  std::atomic<bool> evicted_{false};
  absl::Notification shutdown_heartbeat_;
  std::thread heartbeat_thread_;

  // Progress under the current worker id, read by heartbeats.
  mutable absl::Mutex mu_;
  WorkerIdentity worker_ ABSL_GUARDED_BY(mu_);
  WorkerProgress progress_ ABSL_GUARDED_BY(mu_);
  double loss_sum_ ABSL_GUARDED_BY(mu_) = 0;  // since the last heartbeat
  int64_t loss_count_ ABSL_GUARDED_BY(mu_) = 0;
  TrainerStats stats_ ABSL_GUARDED_BY(mu_);

  // Training-loop state (one thread).
  ParameterBatch params_;
  ParameterBatch grads_;
  // Overlapped loop: the buffers of the PushPull in flight.
  ParameterBatch incoming_params_;
  ParameterBatch outgoing_grads_;
  // The job's top-k sparsification, or null.
  std::unique_ptr<TopKSparsifier> sparsifier_;
  bool said_overlapping_ = false;  // logged once
  uint64_t next_request_id_ = 1;
  // The clocks the calls carry under the job's mode.
  StepClocks clocks_;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_TRAINER_H_
