// ParameterServer: one ps_server process — a gRPC server composed of a
// ShardServer (its shard of the model and the ParameterService) and, on the
// coordinator (shard 0), a CoordinatorServer (the job: membership, leases,
// status, checkpoints; the Coordinator and ShardRegistry services). Every
// other shard registers with the coordinator, takes the job from it and
// serves ShardControl to it.
//
// A replicated coordinator: a second process for shard 0, started with
// --coordinator naming the first, is its backup (CoordinatorServer). It
// takes over when the coordinator falls silent for failover_after, as the
// same coordinator incarnation, from the job state it holds (workers go on
// under their ids and leases). The first
// process, started again with coordinator_backup_address naming the second,
// finds it serving and becomes its backup in turn.
//
// Lifecycle:
//
//   Create() --> created --Start()--> serving --Shutdown()--> stopped
//                                        |                      ^
//                                        +------Wait() returns--+
//
// Thread-safety: Start, Shutdown and Wait may be called from any thread;
// Shutdown is idempotent. The destructor shuts down.
#ifndef FULCRUM_SERVER_PS_SERVER_H_
#define FULCRUM_SERVER_PS_SERVER_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "common/rpc/security.h"
#include "grpcpp/server.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "server/checkpoint/checkpoint.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator_server.h"
#include "server/server_options.h"
#include "server/shard/parameter_shard.h"
#include "server/shard_server.h"

namespace fulcrum {

class ParameterServer {
 public:
  // INVALID_ARGUMENT for options that do not validate (ServerOptions::
  // Validate) or a bad job (unknown model, optimizer settings); the
  // coordinator: FAILED_PRECONDITION / NOT_FOUND for a checkpoint that
  // cannot be restored; other shards: see ShardServer::Join.
  static absl::StatusOr<std::unique_ptr<ParameterServer>> Create(const ServerOptions& options);
  ~ParameterServer();
  ParameterServer(const ParameterServer&) = delete;
  ParameterServer& operator=(const ParameterServer&) = delete;

  // Binds and starts serving. UNAVAILABLE if the address cannot be bound.
  absl::Status Start();

  // Writes a checkpoint now. FAILED_PRECONDITION on shards but 0 or without
  // a checkpoint folder; the write's error otherwise (recorded in status;
  // training goes on either way).
  absl::StatusOr<CheckpointInfo> Checkpoint();
  // Stops accepting calls, fails waiting pulls, waits for calls in flight.
  void Shutdown();
  // Blocks until Shutdown.
  void Wait();
  // Shards but 0: blocks until the coordinator has said the job is over and
  // has since gone away (or a minute has passed); false at the deadline.
  bool WaitUntilJobOver(absl::Time deadline) { return shard_server_->WaitUntilJobOver(deadline); }

  // The port bound by Start (useful with port 0).
  int bound_port() const { return bound_port_; }
  // The metrics port bound by Start, or -1 when metrics are off.
  int metrics_port() const { return metrics_server_ != nullptr ? metrics_server_->port() : -1; }
  uint64_t incarnation() const { return incarnation_; }
  const Job& job() const { return shard_server_->job(); }
  // Null on shards but 0, and on the coordinator's backup until it takes
  // over.
  JobCoordinator* coordinator() {
    absl::MutexLock lock(&coordinator_mu_);
    return coordinator_server_ ? coordinator_server_->coordinator() : nullptr;
  }
  ParameterShard* shard() { return shard_server_->shard(); }
  // The coordinator: its backup took over the job while the two could not
  // reach each other (CoordinatorServer::superseded). This process serves
  // nothing of the job any more and should exit; started again with
  // --coordinator_backup naming that backup, it becomes the backup's backup.
  bool superseded() {
    absl::MutexLock lock(&coordinator_mu_);
    return coordinator_server_ != nullptr && coordinator_server_->superseded();
  }

 private:
  ParameterServer() = default;
  // Whether the coordinator's backup (options.coordinator_backup_address)
  // serves the job: yes once it has taken over; no when it cannot be
  // reached; while it is alive but has not taken over, waits (for it to).
  static bool BackupServesTheJob(const ServerOptions& options);
  // Shard 0: the coordinator this process is to back up (--coordinator
  // without this process's own address, or the backup that took over while
  // this process was away); "" when this process is the coordinator.
  static std::string CoordinatorToBackUp(const ServerOptions& options);
  // The coordinator's backup, joined: stands by to take the job over.
  void StandBy();
  // The coordinator's backup took over its shard: it becomes the
  // coordinator, resuming the job from `state`.
  void TakeOverCoordinator(const CoordinatorReplica& state);

  ServerOptions options_;
  uint64_t incarnation_ = 0;
  MetricsRegistry metrics_;
  std::unique_ptr<MetricsHttpServer> metrics_server_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<ShardServer> shard_server_;
  // The coordinator (shard 0) only; on its backup, set when it takes over.
  absl::Mutex coordinator_mu_;
  std::unique_ptr<CoordinatorServer> coordinator_server_;
  // The coordinator's backup: its services until it takes over.
  std::unique_ptr<CoordinatorServiceImpl> standby_coordinator_service_;
  std::unique_ptr<ShardRegistryServiceImpl> standby_registry_service_;
  std::unique_ptr<grpc::Server> server_;
  int bound_port_ = 0;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_PS_SERVER_H_
