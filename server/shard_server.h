// ShardServer: the shard part of a ps_server process — its ParameterShard
// and the ParameterService over it; on a shard other than the coordinator's
// also the registration with the coordinator (which gives it the job and the
// checkpoint part to restore), the ShardControl service the coordinator
// drives it by (membership, checkpoint parts) and the report loop.
//
// Replicas (shards other than the coordinator's): the coordinator makes a
// process its shard's primary or, when that shard's primary is alive, its
// backup. A primary replicates every update to its backup
// (server/replication/replicator.h); a backup whose primary falls silent for
// failover_after asks the coordinator to take over, and then serves workers
// under the primary's incarnation. A primary told it was replaced (or a
// backup told it was dropped) registers again as a backup.
#ifndef FULCRUM_SERVER_SHARD_SERVER_H_
#define FULCRUM_SERVER_SHARD_SERVER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "common/rpc/security.h"
#include "grpcpp/server_builder.h"
#include "proto/job.pb.h"
#include "proto/shard_control.grpc.pb.h"
#include "server/checkpoint/checkpoint.h"
#include "server/checkpoint/shard_part_writer.h"
#include "server/coordinator/registry_client.h"
#include "server/replication/backup_service.h"
#include "server/replication/failover_role.h"
#include "server/replication/replication_log.h"
#include "server/replication/replicator.h"
#include "server/rpc/grpc_services.h"
#include "server/server_options.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

// Where workers reach a process serving on `bound_port` (see
// ServerOptions::advertise_address).
std::string AdvertisedAddress(const ServerOptions& options, int bound_port);

// Lifecycle: Create or Join -> RegisterServices -> (the gRPC server starts)
// -> Start -> StopReporting -> ShutdownShard -> FinishWaitingCalls -> (the
// gRPC server stops) -> ShutdownService. Thread-safe between those steps.
// `metrics` and `checkpoints` are not owned and must outlive it;
// `checkpoints` may be null (no checkpoint folder).
class ShardServer {
 public:
  // The coordinator's own shard (index 0) of `options.job`.
  static absl::StatusOr<std::unique_ptr<ShardServer>> Create(const ServerOptions& options,
                                                             uint64_t incarnation,
                                                             MetricsRegistry* metrics);

  // Another shard: registers with the coordinator at
  // options.coordinator_address (retrying for options.coordinator_wait),
  // takes the job from it and restores its part of the checkpoint the job
  // resumes from. UNAVAILABLE if the coordinator cannot be reached;
  // FAILED_PRECONDITION if it refuses this shard or the part cannot be
  // restored.
  static absl::StatusOr<std::unique_ptr<ShardServer>> Join(const ServerOptions& options,
                                                           uint64_t incarnation,
                                                           MetricsRegistry* metrics,
                                                           CheckpointStore* checkpoints);

  ~ShardServer();
  ShardServer(const ShardServer&) = delete;
  ShardServer& operator=(const ShardServer&) = delete;

  // Adds this shard's services to `builder`, served by `threads` threads.
  void RegisterServices(grpc::ServerBuilder* builder, int threads);
  // Serving on `bound_port`: the parameter service's threads start; another
  // shard starts reporting to the coordinator (as its advertised address).
  void Start(int bound_port);

  void StopReporting();
  // Fails waiting and future calls with UNAVAILABLE.
  void ShutdownShard();
  // Answers the calls still waiting (before the gRPC server stops).
  void FinishWaitingCalls();
  // After the gRPC server stopped: ends the service's threads.
  void ShutdownService();

  // Another shard: blocks until the coordinator has said the job is over and
  // has since gone away (or a minute has passed); false at the deadline.
  bool WaitUntilJobOver(absl::Time deadline);

  ParameterShard* shard() { return shard_.get(); }
  // Whether this process is not its shard's primary now.
  bool is_backup() const { return role_.is_backup(); }

  // The coordinator's backup (shard 0 joined as a backup): once it has
  // taken over its shard (as any backup does: FailoverRole), `on_took_over`
  // runs on a thread of this server with the job state its coordinator
  // replicated, to resume the job from. Set before Start.
  //
  // Its TakeOverAuthority is the witnesses (server/replication/witnesses.h): a strict
  // majority of the other shards' processes must answer that they do not
  // reach the coordinator either, and none that it does (a partition
  // between the two, not a death). In a job with no other shard,
  // `workers_witness` decides, given the time the coordinator went silent
  // and the job's replicated state: OK when enough of the workers came here
  // since (they could not reach it either), an error saying why not
  // otherwise. Unset: the backup of a one-shard job takes over on silence.
  // It never takes over before it holds the job state.
  void OnCoordinatorTakenOver(
      std::function<void(const CoordinatorReplica& state)> on_took_over,
      std::function<absl::Status(absl::Time silent_since, const CoordinatorReplica& state)>
          workers_witness = nullptr) {
    workers_witness_ = std::move(workers_witness);
    on_coordinator_taken_over_ = std::move(on_took_over);
  }
  // The log the shard's updates are numbered in for a backup.
  ReplicationLog* replication_log() { return &replication_log_; }
  const Job& job() const { return job_; }
  // Where workers and the coordinator reach another shard (after Start).
  const std::string& advertise_address() const { return advertise_address_; }

 private:
  ShardServer(const ServerOptions& options, uint64_t incarnation, MetricsRegistry* metrics,
              CheckpointStore* checkpoints);
  // Builds the shard this process serves, for `job_`.
  absl::Status BuildShard();
  absl::Status JoinCoordinator();

  // One registration (with counters) at the coordinator.
  absl::StatusOr<RegisterShardResponse> ReportToCoordinator(bool ready, absl::Duration timeout);
  void ReportLoop();
  // After a report refused: this process no longer holds its role. Stops
  // serving and registers again as a backup.
  void Rejoin(const absl::Status& refused);
  // A backup: takes over once its role says so (FailoverRole::ShouldTakeOver),
  // then serves.
  void WatchPrimary();
  // The authority of another shard's backup: the coordinator, asked to
  // promote it.
  absl::Status CoordinatorPromotes();
  // OK when the coordinator process at `address` answers within
  // kReachTimeout (ShardControl.ReachCoordinator); FAILED_PRECONDITION
  // without calling when this shard reports to a coordinator process other
  // than `process` (0: unknown) now — the backup took over, and this
  // shard's word went to it.
  absl::Status CallCoordinatorAt(const std::string& address, uint64_t process);
  // The coordinator's backup, its coordinator silent since `silent_since`:
  // OK when the witnesses let it take over (the other shards' processes, or
  // in a one-shard job workers_witness_); FAILED_PRECONDITION saying why not
  // otherwise. Sets `ask_again_after` when the next ask should come sooner
  // than failover_after (only the workers to ask).
  absl::Status WitnessesLetTakeOver(absl::Time silent_since, absl::Duration* ask_again_after);
  // The one way a backup starts serving (its role kTakingOver): once every
  // update received is applied, under the replica set's incarnation; then
  // another shard keeps a backup of its own, the coordinator's backup hands
  // the job state on (OnCoordinatorTakenOver).
  void TakeOver();
  // A primary: starts keeping its backup in step.
  void StartReplicatorLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_mu_);
  absl::StatusOr<CheckpointManifest::ShardFile> WriteCheckpointPart(uint64_t sequence,
                                                                    uint64_t delta_of);
  // The service (and its metrics) over the built shard.
  void BuildService();

  const ServerOptions options_;
  const uint64_t incarnation_;
  MetricsRegistry* const metrics_;
  CheckpointStore* const checkpoints_;
  Job job_;
  ServiceMetrics service_metrics_;
  std::unique_ptr<ParameterShard> shard_;
  std::unique_ptr<ParameterServiceImpl> parameter_service_;
  // The coordinator's processes (--coordinator's addresses and those it
  // names); null on the coordinator's own shard.
  std::unique_ptr<RegistryClient> registry_;
  // The coordinator process that answered this shard's last report (0:
  // none yet).
  std::atomic<uint64_t> followed_coordinator_process_{0};
  std::function<void(const CoordinatorReplica&)> on_coordinator_taken_over_;
  std::function<absl::Status(absl::Time, const CoordinatorReplica&)> workers_witness_;
  absl::Notification took_over_coordinator_;
  std::unique_ptr<ShardControlServiceImpl> shard_control_service_;
  std::string advertise_address_;
  absl::Mutex checkpoint_mu_;  // one part written or recorded at a time
  // This shard's parts (made at the first; null again after a restore).
  std::unique_ptr<ShardPartWriter> part_writer_ ABSL_GUARDED_BY(checkpoint_mu_);
  absl::Notification job_over_;
  absl::Notification stop_reporting_;
  std::thread reporter_;

  // Replication (other shards only).
  ReplicationLog replication_log_;
  std::unique_ptr<ShardReplicaService> replica_service_;
  // Who lets this process's backup take over (the coordinator, or for shard
  // 0 the witnesses), then its role.
  std::unique_ptr<TakeOverAuthority> authority_;
  FailoverRole role_;
  // Held while the role changes what serves (promotion, stepping down).
  mutable absl::Mutex role_mu_;
  // The incarnation workers see: this process's own, or the one a backup
  // took over with.
  uint64_t serving_incarnation_ ABSL_GUARDED_BY(role_mu_);
  std::unique_ptr<ShardReplicator> replicator_ ABSL_GUARDED_BY(role_mu_);
  std::thread watcher_;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_SHARD_SERVER_H_
