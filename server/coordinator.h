// JobCoordinator: the job's membership, data partitions, progress and status.
// Transport-neutral: the gRPC Coordinator service adapts it.
#ifndef FULCRUM_SERVER_COORDINATOR_H_
#define FULCRUM_SERVER_COORDINATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/fulcrum.pb.h"
#include "server/parameter_shard.h"

namespace fulcrum {

struct CoordinatorOptions {
  // The job every worker receives. job.num_workers workers must register
  // before it starts; each gets partition i of num_workers of the training
  // set. The first to register evaluates.
  JobSpec job;
  // Addresses of every shard, by index; empty when the coordinator's own
  // process is the only shard.
  std::vector<std::string> shard_addresses;
  // Random id of this server process, echoed to workers.
  uint64_t incarnation = 0;
};

// Thread-safe. `shard` (the shard in the coordinator's own process) is not
// owned and must outlive the coordinator; workers are admitted into it when
// they register, deactivated when they finish, and it is started when the
// job starts.
class JobCoordinator {
 public:
  JobCoordinator(const CoordinatorOptions& options, ParameterShard* shard);
  JobCoordinator(const JobCoordinator&) = delete;
  JobCoordinator& operator=(const JobCoordinator&) = delete;

  // RESOURCE_EXHAUSTED once job.num_workers have registered.
  absl::StatusOr<RegisterWorkerResponse> RegisterWorker(
      const RegisterWorkerRequest& request);

  // FAILED_PRECONDITION for an unknown worker id, INVALID_ARGUMENT for a
  // malformed report (negative or non-finite loss, accuracy outside [0, 1]).
  absl::StatusOr<ReportProgressResponse> ReportProgress(
      const ReportProgressRequest& request);

  JobStatus GetStatus() const;
  JobState state() const;

  // Waits until the job is FINISHED or STOPPED; false at the deadline.
  bool WaitUntilDone(absl::Time deadline) const;

  // One human-readable progress line ("round 120 epoch 1/5 ...").
  std::string ProgressLine() const;
  // The machine-readable closing line:
  // "result: model=M mode=sync epochs=E test_accuracy=A wall_seconds=S".
  std::string ResultLine() const;

 private:
  struct WorkerRecord {
    WorkerStatus status;  // progress fields as last reported
    absl::Time last_report;
    absl::Time rate_since;  // start of the examples/s measurement
    uint64_t rate_examples = 0;
  };

  JobStatus GetStatusLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void MaybeFinishTrainingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CoordinatorOptions options_;
  ParameterShard* const shard_;

  mutable absl::Mutex mu_;
  JobState state_ ABSL_GUARDED_BY(mu_) = WAITING_FOR_WORKERS;
  uint64_t next_worker_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::btree_map<uint64_t, WorkerRecord> workers_ ABSL_GUARDED_BY(mu_);
  absl::Time started_at_ ABSL_GUARDED_BY(mu_);
  absl::Time finished_at_ ABSL_GUARDED_BY(mu_);
  EvalResult last_eval_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_COORDINATOR_H_
