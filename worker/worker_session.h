// WorkerSession: the worker protocol in one place — registration (again,
// whenever the coordinator declared the worker dead), heartbeats from a
// thread of its own, leases, the clocks each call carries under the job's
// mode, retries and deadlines. The Trainer (RunWorker) and the public
// low-level Session (worker/fulcrum_worker.h) are both built on it, so the
// protocol has one implementation whatever the caller's language.
#ifndef FULCRUM_WORKER_WORKER_SESSION_H_
#define FULCRUM_WORKER_WORKER_SESSION_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/base/retry.h"
#include "common/metrics.h"
#include "common/worker_identity.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "worker/coordinator_client.h"
#include "worker/ps_client.h"
#include "worker/step_clocks.h"

namespace fulcrum {

// The worker's Prometheus metrics (owned by a MetricsRegistry).
struct WorkerMetrics {
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

  static WorkerMetrics Register(MetricsRegistry* registry);
};

struct WorkerSessionOptions {
  // Shown in status; a worker registering with the name of a live one
  // replaces it.
  std::string worker_name;
  std::string host;
  // How long a call keeps being asked again while it times out waiting (the
  // job waiting for its first workers, a slow round).
  absl::Duration start_timeout = absl::Minutes(10);
  // Retries of calls that fail with UNAVAILABLE.
  RetryOptions retry;
  // Re-registrations in a row (without finishing any work between them)
  // before NextTask gives up.
  int max_reregistrations = 10;
  // Null: no metrics. Not owned.
  const WorkerMetrics* metrics = nullptr;
  // Measures latencies, steps and the start timeout. Not owned.
  const Clock* clock = Clock::Real();
};

// Counters of one session's work, for tests and logs.
struct WorkerStats {
  int64_t partitions = 0;
  int64_t evaluations = 0;
  int64_t registrations = 0;
  int64_t steps = 0;
};

// A step's calls, in order: Pull (the step's parameters; a partition's first
// step, or after ABORTED), then PushPull (this step's gradient out, the next
// step's parameters back) or Push (the partition's last step). The session
// keeps the clocks these carry (sync rounds per shard, the ssp clock of the
// lease) so callers never look at the mode.
//
// Errors every call may return: FAILED_PRECONDITION when the coordinator no
// longer knows this worker (declared dead; its lease is gone: NextTask
// registers again); ABORTED when a shard restarted from a checkpoint (the
// step is redone from a fresh Pull; the clocks are already adjusted);
// DEADLINE_EXCEEDED when a wait outlasted start_timeout; UNAVAILABLE when the
// retries ran out.
//
// Thread-safety: one thread makes the calls (but see PushPullNow); the
// heartbeat thread is internal. The clients are not owned and must outlive
// the session.
class WorkerSession {
 public:
  WorkerSession(const WorkerSessionOptions& options, PsClient* ps, CoordinatorClient* coordinator);
  ~WorkerSession();

  // Registers (the first time, or again) and connects to the job's shards;
  // the heartbeat thread starts with the first registration.
  absl::Status Register();
  // The job of the last registration.
  const JobSpec& job() const { return job_; }
  // Who this worker is now (thread-safe).
  WorkerIdentity worker() const;
  WorkerStats stats() const;

  // The next piece of work. Registers again first if the coordinator declared
  // this worker dead (UNAVAILABLE after max_reregistrations in a row without
  // work done). DONE once the job is over or stopped. A TRAIN lease sets the
  // clocks of its partition.
  absl::StatusOr<AcquirePartitionResponse> NextTask();
  // The lease's partition was trained to its end / its evaluation is this.
  absl::Status Complete(const AcquirePartitionResponse& lease);
  absl::Status ReportEval(const AcquirePartitionResponse& lease, const EvalResult& eval);

  absl::StatusOr<ServerVersion> Pull(ParameterBatch* params);
  absl::StatusOr<ServerVersion> PushPull(const ParameterBatch& grads, uint32_t examples,
                                         ParameterBatch* params);
  absl::StatusOr<ServerVersion> Push(const ParameterBatch& grads, uint32_t examples);
  // The current parameters whatever the clocks (evaluation); a shard restart
  // is read through.
  absl::StatusOr<ServerVersion> PullLatest(ParameterBatch* params);
  // Async jobs only: a PushPull at "now" that may run on a second thread
  // while the calling thread computes (nothing else may use the session's
  // PsClient meanwhile).
  absl::StatusOr<ServerVersion> PushPullNow(const ParameterBatch& grads, uint32_t examples,
                                            ParameterBatch* params);
  // Whether the job lets pushes be in flight while the next step computes.
  bool MayOverlap() const { return clocks_.MayOverlap(); }

  // Counts a finished step (its push taken) in status, stats and metrics;
  // `loss` < 0: not known.
  void RecordStep(int64_t examples, double loss, absl::Time step_start);

  // The job was stopped, or this worker declared dead, since the last
  // registration: the work in hand is abandoned.
  bool Interrupted() const { return stopped_ || evicted_; }
  const WorkerSessionOptions& options() const { return options_; }

 private:
  // Runs a call that may wait for rounds or slower workers: UNAVAILABLE is
  // retried with backoff, a wait that times out is asked again until
  // start_timeout; the reply's waits go into the progress.
  template <typename Call>
  absl::StatusOr<ServerVersion> CallWaiting(Histogram* latency, Call call);
  // Notes an error of a step's call: ABORTED adjusts the clocks (pushed:
  // the push may have been taken), FAILED_PRECONDITION marks this worker
  // evicted.
  absl::Status StepFailed(absl::Status status, bool pushed);
  // After Complete's or ReportEval's call: counts the piece of work (in
  // `metric` and stats_.*count) and heartbeats the progress, or notes the
  // error as StepFailed does.
  absl::Status WorkDone(absl::Status reported, Counter* metric, int64_t WorkerStats::*count);
  void HeartbeatLoop();
  // Connects to the shard map a heartbeat brought, if it changed (the
  // calling thread's, before each call to the shards: the PsClient is not
  // thread-safe).
  void RefreshShards();
  // Copies the pushes each shard acknowledged (since this registration) into
  // the progress heartbeats report. The calling thread's.
  void NoteAcknowledged();
  // Sends one heartbeat with the progress so far (also after each piece of
  // work, so status is exact at the end).
  void SendHeartbeat();

  const WorkerSessionOptions options_;
  PsClient* const ps_;
  CoordinatorClient* const coordinator_;

  JobSpec job_;
  int reregistrations_ = 0;  // in a row, without work done between them
  uint64_t next_request_id_ = 1;
  // PsClient::PushesAcknowledged at registration.
  std::vector<uint64_t> acknowledged_base_;
  StepClocks clocks_;  // the calls' clocks under the job's mode
  absl::Duration heartbeat_interval_ = absl::Seconds(1);

  // Serialises heartbeats from the thread and the calling thread.
  absl::Mutex heartbeat_mu_;
  bool heartbeat_warned_ ABSL_GUARDED_BY(heartbeat_mu_) = false;
  // Flags the heartbeat thread raises for the calling thread.
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
  WorkerStats stats_ ABSL_GUARDED_BY(mu_);
  // Where the shards and their backups are, by shard index, as the
  // coordinator said (at registration, in a heartbeat).
  struct ShardMap {
    std::vector<std::string> shards;
    std::vector<std::string> backups;
    bool operator!=(const ShardMap& o) const { return shards != o.shards || backups != o.backups; }
    template <typename Response>
    static ShardMap Of(const Response& r) {
      return {{r.shard_addresses().begin(), r.shard_addresses().end()},
              {r.backup_addresses().begin(), r.backup_addresses().end()}};
    }
  };
  // Shard 0's processes in `map` are the coordinator's: the coordinator
  // client learns them.
  void LearnCoordinator(const ShardMap& map);
  // The shard map connected to, and a newer one a heartbeat brought that
  // RefreshShards has not connected to yet.
  ShardMap shard_map_ ABSL_GUARDED_BY(mu_);
  std::optional<ShardMap> new_shard_map_ ABSL_GUARDED_BY(mu_);
  // Set with new_shard_map_, so calls check it without the lock.
  std::atomic<bool> shard_map_changed_{false};
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_WORKER_SESSION_H_
