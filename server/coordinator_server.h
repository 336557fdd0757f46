// CoordinatorServer: the coordinator's part of a ps_server process (shard
// 0) — the job's coordinator (membership, leases, evaluations, status), the
// shard group it keeps the other shards' membership through, the job's
// checkpoints, and the Coordinator and ShardRegistry services over them.
#ifndef FULCRUM_SERVER_COORDINATOR_SERVER_H_
#define FULCRUM_SERVER_COORDINATOR_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "common/metrics.h"
#include "common/rpc/security.h"
#include "grpcpp/server_builder.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "server/checkpoint/checkpoint.h"
#include "server/checkpoint/job_checkpointer.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator/shard_group.h"
#include "server/replication/replication_log.h"
#include "server/replication/replicator.h"
#include "server/rpc/grpc_services.h"
#include "server/server_options.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

// Replication: a second process started for shard 0 registers here as the
// coordinator's backup (ShardGroup). The coordinator then streams its own
// shard to it (ShardReplicator over `log`) and, with it, its job state
// (CoordinatorReplica: progress, the committed checkpoint, the workers with
// their leases and the membership) after every change but a heartbeat —
// answering the worker only once the backup has it. The backup takes over
// when this process falls silent (server/ps_server.h) as the same
// coordinator incarnation: workers go on under their ids and leases, and
// nothing completed is lost.
//
// Lifecycle: Create (restores the job from a checkpoint, or from the state a
// backup took over with) -> RegisterServices -> (the gRPC server starts) ->
// Start -> StopLoops -> EndWatches -> StopSenders -> (the gRPC server
// stops). Thread-safe between those steps. `local` (this process's shard,
// replicating through `log`), `log`, `checkpoints` (may be null) and
// `metrics` are not owned and must outlive it.
class CoordinatorServer {
 public:
  // FAILED_PRECONDITION / NOT_FOUND when
  // the checkpoint to restore cannot be (see JobCheckpointer::Restore).
  // `incarnation` is this process's. `took_over`: this process was the
  // coordinator's backup and resumes from the state it holds, as that
  // state's coordinator incarnation (no checkpoint is restored).
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Create(
      const ServerOptions& options, const Job& job, uint64_t incarnation, ParameterShard* local,
      ReplicationLog* log, CheckpointStore* checkpoints, MetricsRegistry* metrics,
      const CoordinatorReplica* took_over = nullptr);
  ~CoordinatorServer();
  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  void RegisterServices(grpc::ServerBuilder* builder);
  // Starts declaring silent workers dead and the periodic checkpoints.
  void Start();
  // Stops those.
  void StopLoops();
  // Ends open WatchStatus streams.
  void EndWatches();
  // Ends the membership senders to the other shards.
  void StopSenders();

  // A checkpoint now (see JobCheckpointer::Checkpoint).
  absl::StatusOr<CheckpointInfo> Checkpoint() { return checkpointer_->Checkpoint(); }
  JobCoordinator* coordinator() { return coordinator_.get(); }
  // Where workers reach this coordinator (see ShardGroup::NameCoordinator).
  void NameSelf(const std::string& address, bool now) { shards_->NameCoordinator(address, now); }
  // The job state as the backup gets it.
  CoordinatorReplica ReplicaState() const;
  // Whether the backup took over the job while this process could not reach
  // it (see MayGoOnAlone): its shard refuses calls since, and the process
  // must stop serving (started again, it becomes the backup's backup).
  bool superseded() const { return superseded_.HasBeenNotified(); }

 private:
  CoordinatorServer() = default;
  void RegisterMetrics(MetricsRegistry* metrics);
  // Sends the job state to the backup (if any) and waits until it has it:
  // UNAVAILABLE when it did not in time (the change stands here).
  absl::Status ReplicateState();
  // The backup stopped following at `unreachable_since` (its batches'
  // deadline `batch_timeout`): OK when the
  // witnesses let this process go on without it (server/replication/witnesses.h: a
  // majority of the other shards' processes reach it, or, with none, at
  // least half the live workers called since); FAILED_PRECONDITION when
  // the backup serves the job now; UNAVAILABLE otherwise (ask again; until
  // then pushes to this shard are not answered OK — UNAVAILABLE after
  // replication_timeout — while a job-state change is still answered after
  // that timeout). Blocks up to about a second.
  absl::Status MayGoOnAlone(absl::Time unreachable_since, absl::Duration batch_timeout);

  ServerOptions options_;
  uint64_t process_incarnation_ = 0;  // this process's own id
  ReplicationLog* log_ = nullptr;
  // One job state numbered at a time: the backup's newest is the newest.
  absl::Mutex replicate_mu_;
  std::unique_ptr<ShardReplicator> replicator_;
  std::unique_ptr<ShardGroup> shards_;
  std::unique_ptr<JobCoordinator> coordinator_;
  std::unique_ptr<JobCheckpointer> checkpointer_;
  std::unique_ptr<CoordinatorServiceImpl> coordinator_service_;
  std::unique_ptr<ShardRegistryServiceImpl> shard_registry_service_;
  absl::Notification superseded_;
  absl::Notification stop_reaper_;
  std::thread reaper_;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_COORDINATOR_SERVER_H_
