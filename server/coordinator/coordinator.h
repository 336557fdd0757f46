// JobCoordinator: the job's membership (heartbeats, deaths, joins), the
// partition leases that hand out its training data, evaluation tasks,
// progress and status. Transport-neutral: the gRPC Coordinator service adapts
// it.
#ifndef FULCRUM_SERVER_COORDINATOR_COORDINATOR_H_
#define FULCRUM_SERVER_COORDINATOR_COORDINATOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/worker_identity.h"
#include "proto/checkpoint.pb.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "proto/shard_control.pb.h"
#include "server/coordinator/shard_group.h"
#include "server/job_spec.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

struct CoordinatorOptions {
  // The job every worker receives. It starts once job.num_workers workers
  // have registered; more may join at any time. Each epoch is cut into
  // job.partitions_per_epoch partitions.
  Job job;
  // Random id of this server process, echoed to workers.
  uint64_t incarnation = 0;
  // How often workers heartbeat, and how long a silent worker lives: past
  // worker_timeout it is declared dead and its lease returns to the pool.
  // A shorter timeout reassigns work sooner but risks declaring a worker
  // that is merely slow (a long GC, a swapped host) dead.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration worker_timeout = absl::Seconds(5);
  // Partitions of epoch e + lookahead may be leased while epoch e still has
  // untrained partitions, so fast workers keep going past a straggler.
  // 0 makes every epoch a barrier.
  uint32_t epoch_lookahead = 1;
  // Live workers accepted at once; registering beyond gets
  // RESOURCE_EXHAUSTED.
  uint32_t max_workers = 1024;
  // The time source (tests substitute a ManualClock). Not owned.
  const Clock* clock = Clock::Real();
  // Called after every change SaveReplica shows but a heartbeat's (a worker
  // registered, took or gave back a lease, completed a partition, reported
  // an evaluation, died; a checkpoint; the job stopped), outside the
  // coordinator's lock and before the worker is answered: a replicated
  // coordinator sends its state to its backup there and waits for it. An
  // error (not replicated in time) fails the worker's call with it: the
  // change stands here, and the call retried is answered as the first would
  // have been (the same lease; a completion or evaluation taken already is
  // OK; a registration under the same name replaces the first). Null:
  // nothing.
  std::function<absl::Status()> state_changed;
};

// Thread-safe. `shards` (the coordinator's own shard and any others) is not
// owned and must outlive the coordinator. The coordinator admits registered
// workers into every shard, activates a worker for the span of each training
// lease (the set sync rounds and ssp clocks wait for), removes dead workers,
// and starts the shards when the job starts. Workers register only once
// every shard has.
//
// Work is handed out by AcquirePartition, in this order: evaluation tasks
// (queued when an epoch's partitions are all trained; the last one evaluates
// the finished model), then the untrained partitions of the oldest unfinished
// epoch (and up to epoch_lookahead epochs after it). Each partition is
// completed exactly once per epoch: a lease taken back from a dead worker is
// handed out again from the partition's start, and a completion under a
// revoked lease is refused.
class JobCoordinator {
 public:
  JobCoordinator(const CoordinatorOptions& options, ShardGroup* shards);
  JobCoordinator(const JobCoordinator&) = delete;
  JobCoordinator& operator=(const JobCoordinator&) = delete;

  // Registering under the name of a live worker replaces it (the old id is
  // declared dead). RESOURCE_EXHAUSTED when max_workers are live; UNAVAILABLE
  // while shards have not registered yet.
  absl::StatusOr<RegisterWorkerResponse> RegisterWorker(const RegisterWorkerRequest& request);

  // Heartbeat, AcquirePartition, CompletePartition and ReportEval take a
  // worker id with the incarnation of the coordinator that issued it:
  // FAILED_PRECONDITION (the worker must register again) for an id of
  // another incarnation (an earlier process's ids are reused by this one),
  // an unknown id or a dead worker.
  //
  // INVALID_ARGUMENT for malformed progress.
  absl::StatusOr<HeartbeatResponse> Heartbeat(const HeartbeatRequest& request);

  // The worker's next work. Asking again while holding a lease returns the
  // same lease (a retried call must not lose it).
  absl::StatusOr<AcquirePartitionResponse> AcquirePartition(const AcquirePartitionRequest& request);

  // FAILED_PRECONDITION unless `lease_id` is a training lease this live
  // worker holds (or the one it completed last: a retry is OK).
  absl::Status CompletePartition(const CompletePartitionRequest& request);

  // FAILED_PRECONDITION unless `lease_id` is an evaluation lease this live
  // worker holds (or the one it reported on last: a retry is OK);
  // INVALID_ARGUMENT for an accuracy outside [0, 1].
  absl::Status ReportEval(const ReportEvalRequest& request);

  // A shard's start or heartbeat (see ShardGroup::RegisterShard).
  absl::StatusOr<RegisterShardResponse> RegisterShard(const RegisterShardRequest& request) {
    absl::StatusOr<RegisterShardResponse> response = shards_->RegisterShard(request);
    if (response.ok()) response->set_job_state(state());
    return response;
  }

  // A shard's backup taking over, a primary dropping its backup (see
  // ShardGroup).
  absl::Status PromoteBackup(const PromoteBackupRequest& request) {
    return shards_->PromoteBackup(request);
  }
  absl::Status DropBackup(const DropBackupRequest& request) { return shards_->DropBackup(request); }

  // Ends the job (STOPPED) unless it has finished; workers are told DONE.
  void Stop();

  // Declares workers silent past worker_timeout dead (or, once the job is
  // over, gone). Returns how many. The server calls it periodically.
  int ReapSilentWorkers();

  // The coordinator, its backup unreachable since `since` (this clock's
  // time), in a job with no other shard: OK when at least half of the
  // workers live then — registered before `since` and heard from after
  // `since - lookback` (at least the worker timeout before the backup may
  // have been cut off), those declared dead since included — have
  // heartbeated since (WorkersLetCoordinatorGoOnAlone, server/replication/witnesses.h);
  // UNAVAILABLE saying how many did otherwise. A worker registered since
  // does not count: it may be one the backup counts.
  absl::Status WorkersLetGoOnAlone(absl::Time since, absl::Duration lookback) const;

  // The job's progress for a checkpoint: trained partitions, the oldest
  // unfinished epoch, evaluations owed, examples seen, elapsed time. Leased
  // partitions count as untrained.
  CoordinatorCheckpoint SaveProgress() const;
  // Resumes from a checkpoint's progress, before any worker registers.
  // FAILED_PRECONDITION if it is of another job (model, epochs or partitions
  // differ) or workers have registered already.
  absl::Status RestoreProgress(const CoordinatorCheckpoint& progress);
  // What a backup needs to take over from this coordinator, taken in one
  // step: the progress, the workers with their leases, the membership
  // (`committed` is left to the caller). Heartbeat figures may be stale.
  CoordinatorReplica SaveReplica() const;
  // Takes over a coordinator's replicated state, in place of RestoreProgress
  // and before serving: the same workers under the same ids (this
  // coordinator's incarnation must be the replica's), their leases standing,
  // the membership on every shard. Live workers count as just heard from.
  // FAILED_PRECONDITION as RestoreProgress, or for another incarnation.
  absl::Status RestoreReplica(const CoordinatorReplica& replica);
  // Checkpoint outcomes, for status.
  void RecordCheckpoint(const CheckpointInfo& info);
  void RecordCheckpointFailure(const absl::Status& error);
  void RecordRestore(const CheckpointInfo& info);

  JobStatus GetStatus() const;
  JobState state() const;

  // Waits until the job is FINISHED or STOPPED; false at the deadline.
  bool WaitUntilDone(absl::Time deadline) const;
  // Waits until the job is over and every worker has been told so (or is
  // dead); false at the deadline.
  bool WaitUntilWorkersLeft(absl::Time deadline) const;

  // Waits until every other shard has heard that the job is over (reported
  // since it ended); false at the deadline.
  bool WaitUntilShardsToldOver(absl::Time deadline) const {
    return shards_->WaitUntilReportedSince(options_.clock->Now(), deadline);
  }

  // One human-readable progress line ("RUNNING round=120 epoch=1/5 ...").
  std::string ProgressLine() const;
  // The machine-readable closing line:
  // "result: model=M mode=sync epochs=E test_accuracy=A wall_seconds=S".
  std::string ResultLine() const;

 private:
  CoordinatorCheckpoint SaveProgressLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status StateChanged() const {
    return options_.state_changed ? options_.state_changed() : absl::OkStatus();
  }
  // Training time of the job: since it started running, plus what a
  // restored checkpoint had.
  double ElapsedSecondsLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::StatusOr<RegisterWorkerResponse> RegisterWorkerImpl(const RegisterWorkerRequest& request);
  absl::Status CompletePartitionImpl(const CompletePartitionRequest& request);
  int ReapSilentWorkersImpl();
  absl::Status ReportEvalImpl(const ReportEvalRequest& request);
  // AcquirePartition, before the shards have heard of an activation.
  absl::StatusOr<AcquirePartitionResponse> GrantWork(const AcquirePartitionRequest& request);

  struct Lease {
    uint64_t id = 0;
    uint64_t worker_id = 0;
    bool evaluate = false;  // an evaluation task, not a partition
    uint32_t epoch = 0;     // training: 0-based; evaluation: 1-based
    uint32_t partition = 0;
    bool final = false;
  };
  struct EvalTask {
    uint32_t epoch = 0;  // 1-based
    bool final = false;
  };
  enum class PartitionState { kPending, kLeased, kDone };
  struct WorkerRecord {
    WorkerStatus status;
    absl::Time last_heartbeat;
    absl::Time registered_at;  // or taken over with the job state
    absl::Time rate_since;
    uint64_t rate_examples = 0;
    std::optional<uint64_t> lease_id;
    // The last lease completed or reported on (0: none): the same call
    // again (a retry whose answer was lost, perhaps with the coordinator that
    // took it) is answered OK and changes nothing.
    uint64_t last_finished_lease = 0;
  };

  // The record of a live worker this coordinator incarnation registered;
  // FAILED_PRECONDITION (register again) for any other.
  absl::StatusOr<WorkerRecord*> LiveWorkerLocked(const WorkerIdentity& worker)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A lease on the next partition due (or an evaluation) for `worker`, made
  // active; nullopt when nothing is due now (WAIT).
  std::optional<Lease> NewLeaseLocked(WorkerRecord& worker) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  AcquirePartitionResponse GrantLocked(WorkerRecord& worker, const Lease& lease)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A report that ends a lease (a partition completed, an evaluation): the
  // live worker that sent it, and the lease it ends if it is the worker's
  // lease of that kind. No lease when the report repeats the one that ended
  // the worker's last lease (a retry whose answer was lost): answered OK,
  // it changes nothing. FAILED_PRECONDITION for a worker not live here or a
  // lease it does not hold.
  struct EndedLease {
    WorkerRecord* worker = nullptr;
    std::optional<Lease> lease;
  };
  absl::StatusOr<EndedLease> EndLeaseLocked(const WorkerIdentity& sender, uint64_t lease_id,
                                            bool evaluate) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives the worker's lease back: a partition becomes pending again, an
  // evaluation goes back to the front of the queue.
  void RevokeLeaseLocked(WorkerRecord& worker) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeclareDeadLocked(WorkerRecord& worker, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<PartitionState>& EpochLocked(uint32_t epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves past fully trained epochs, queueing their evaluations.
  void AdvanceEpochsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t LiveWorkersLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  JobStatus GetStatusLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const CoordinatorOptions options_;
  const uint32_t partitions_;                      // per epoch
  const std::vector<std::string> own_optimizers_;  // Job::OptimizerOverrides, for status
  ShardGroup* const shards_;

  mutable absl::Mutex mu_;
  JobState state_ ABSL_GUARDED_BY(mu_) = WAITING_FOR_WORKERS;
  uint64_t next_worker_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_lease_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::btree_map<uint64_t, WorkerRecord> workers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> live_by_name_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
  // Partition states of epochs from oldest_epoch_ on (created when first
  // leased from).
  std::map<uint32_t, std::vector<PartitionState>> epochs_ ABSL_GUARDED_BY(mu_);
  // The order partitions of each epoch are handed out in: a permutation
  // seeded by the job's seed and the epoch, so data order varies between
  // epochs as SGD wants.
  std::map<uint32_t, std::vector<uint32_t>> lease_order_ ABSL_GUARDED_BY(mu_);
  uint32_t oldest_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<EvalTask> eval_queue_ ABSL_GUARDED_BY(mu_);
  std::vector<PartitionRecord> completed_ ABSL_GUARDED_BY(mu_);
  absl::Time started_at_ ABSL_GUARDED_BY(mu_);
  absl::Time finished_at_ ABSL_GUARDED_BY(mu_);
  EvalResult last_eval_ ABSL_GUARDED_BY(mu_);
  // Every evaluation this process took a report of, in order.
  std::vector<EvalResult> evaluations_ ABSL_GUARDED_BY(mu_);
  // Carried over from a restored checkpoint.
  uint64_t restored_examples_ ABSL_GUARDED_BY(mu_) = 0;
  double restored_elapsed_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  bool restored_ ABSL_GUARDED_BY(mu_) = false;
  // Checkpoint status.
  CheckpointInfo last_checkpoint_ ABSL_GUARDED_BY(mu_);
  CheckpointInfo restored_from_ ABSL_GUARDED_BY(mu_);
  uint64_t checkpoint_failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_checkpoint_error_ ABSL_GUARDED_BY(mu_);
};

// Whether the workers that came to the coordinator's backup while the
// coordinator was silent (`came`: worker ids, 0 for a registration) witness
// that it is gone for them too, in a job with no other shard to ask: a
// majority of the live (not dead, not departed) workers in the replicated
// `workers`, or, with none live, any worker at all. FAILED_PRECONDITION
// saying how many came otherwise (the coordinator is then more likely cut
// off from its backup alone: two coordinators would each take workers).
absl::Status WorkersWitnessCoordinatorLoss(const CoordinatorWorkers& workers,
                                           const absl::flat_hash_set<uint64_t>& came);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_COORDINATOR_COORDINATOR_H_
