// ParameterServer: one ps_server process's gRPC server — the parameter
// service for its shard and, on the coordinator (shard 0), the Coordinator
// service. Every other shard registers with the coordinator, takes the job
// from it, serves ShardControl (membership, checkpoint parts) and reports
// its counters every heartbeat interval.
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
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "proto/job.pb.h"
#include "proto/checkpoint.pb.h"
#include "proto/shard_control.pb.h"
#include "proto/shard_control.grpc.pb.h"
#include "common/metrics.h"
#include "common/security.h"
#include "server/checkpoint.h"
#include "server/coordinator.h"
#include "server/grpc_services.h"
#include "server/parameter_shard.h"
#include "server/parameter_store.h"
#include "server/shard_group.h"

namespace fulcrum {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free one (see bound_port()).
  std::string listen_address = "0.0.0.0:0";
  // Also listen on this Unix domain socket (empty: none), for workers on the
  // same machine: no TCP stack in the way. Same credentials as the TCP port.
  std::string unix_socket;
  // The job. Its tensors are created from job.model unless job.tensors is
  // already filled. Unset fields get defaults: mode SYNC, optimizer ADAM,
  // batch_size 64, epochs 1, num_workers 1, partitions_per_epoch
  // 4 * num_workers.
  JobSpec job;
  // Rows a sparse table may hold unless its spec says (RESOURCE_EXHAUSTED
  // beyond). 2^26 rows of dim 8 with Adagrad are 4 GiB.
  uint64_t max_sparse_rows = uint64_t{1} << 26;
  // Live workers accepted at once (RESOURCE_EXHAUSTED beyond).
  uint32_t max_workers = 1024;
  // Worker liveness (see CoordinatorOptions): heartbeat every
  // heartbeat_interval, dead after worker_timeout of silence.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration worker_timeout = absl::Seconds(5);
  ParameterStoreOptions store;
  // This process serves shard `shard_index` of `num_shards`
  // (common/shard_map.h). Shard 0 is the coordinator. Any other registers
  // with the coordinator at `coordinator_address` and takes the job from it
  // (`job` is then unused).
  uint32_t num_shards = 1;
  uint32_t shard_index = 0;
  std::string coordinator_address;
  // Shards but 0: where workers and the coordinator reach this one. Empty:
  // "<listen host>:<bound port>", or "<hostname>:<bound port>" when
  // listening on every address.
  std::string advertise_address;
  // How this process dials the other ps_servers (TLS CA and client
  // certificate when they serve TLS; plaintext by default).
  ClientSecurityOptions peer_security;
  // Shards but 0: how long Create keeps trying to reach the coordinator.
  absl::Duration coordinator_wait = absl::Minutes(2);
  // Largest gRPC message accepted or sent. 256 MiB holds a 64M-float slice.
  int max_message_bytes = 256 << 20;
  // Threads serving push and pull calls, each polling a completion queue of
  // its own; 0: one per core, at least 2.
  int service_threads = 0;
  // Longest a pull waits for its round or the job start when the client's
  // deadline is later. The worker retries after it.
  absl::Duration max_pull_wait = absl::Seconds(60);

  // Checkpoints (server/checkpoint.h). Empty dir: none are written, and none
  // restored unless `restore` names one.
  std::string checkpoint_dir;
  // Periodic checkpoints: every this long and/or every this many shard
  // versions (rounds in sync, pushes otherwise); zero disables each.
  absl::Duration checkpoint_every = absl::ZeroDuration();
  int64_t checkpoint_every_steps = 0;
  int keep_checkpoints = 3;
  // "" restores the newest complete checkpoint in checkpoint_dir (if any);
  // "none" starts fresh; anything else is the path of a checkpoint folder.
  std::string restore;
  // Test hook: pause halfway through writing each checkpoint.
  absl::Duration debug_checkpoint_delay = absl::ZeroDuration();

  // Prometheus metrics at http://metrics_host:metrics_port/metrics; a
  // negative port serves none, 0 picks a free one (see metrics_port()).
  std::string metrics_host = "0.0.0.0";
  int metrics_port = -1;

  // TLS (optionally mutual) for the gRPC port; plaintext when unset.
  ServerSecurityOptions security;
  // Non-empty: every Fulcrum RPC must carry "authorization: Bearer <token>"
  // (UNAUTHENTICATED otherwise). The gRPC health service stays open.
  std::string auth_token;
};

class ParameterServer {
 public:
  // INVALID_ARGUMENT for a bad job (unknown model, optimizer settings);
  // shards but 0: UNAVAILABLE if the coordinator cannot be reached within
  // coordinator_wait, FAILED_PRECONDITION if it refuses this shard or the
  // checkpoint it names cannot be restored.
  static absl::StatusOr<std::unique_ptr<ParameterServer>> Create(
      const ServerOptions& options);
  ~ParameterServer();
  ParameterServer(const ParameterServer&) = delete;
  ParameterServer& operator=(const ParameterServer&) = delete;

  // Binds and starts serving. UNAVAILABLE if the address cannot be bound.
  absl::Status Start();

  // Writes a checkpoint now. FAILED_PRECONDITION without a checkpoint
  // folder; the write's error otherwise (recorded in status; training goes
  // on either way).
  absl::StatusOr<CheckpointInfo> Checkpoint();
  // Stops accepting calls, fails waiting pulls, waits for calls in flight.
  void Shutdown();
  // Blocks until Shutdown.
  void Wait();
  // Shards but 0: blocks until the coordinator has said the job is over and
  // has since gone away (or a minute has passed); false at the deadline.
  bool WaitUntilJobOver(absl::Time deadline);

  // The port bound by Start (useful with port 0).
  int bound_port() const { return bound_port_; }
  // The metrics port bound by Start, or -1 when metrics are off.
  int metrics_port() const {
    return metrics_server_ != nullptr ? metrics_server_->port() : -1;
  }
  uint64_t incarnation() const { return incarnation_; }
  const JobSpec& job() const { return job_; }
  // Null on shards but 0.
  JobCoordinator* coordinator() { return coordinator_.get(); }
  ParameterShard* shard() { return shard_.get(); }

 private:
  ParameterServer() = default;
  // Builds the shard this process serves, for `job_`.
  absl::Status BuildShard();
  // Shards but 0: asks the coordinator for the job (before serving) and
  // restores the checkpoint it names.
  absl::Status JoinCoordinator();
  // Shards but 0: one registration (with counters) at the coordinator.
  absl::StatusOr<RegisterShardResponse> ReportToCoordinator(bool ready,
                                                            absl::Duration timeout);
  void ReportLoop();
  absl::StatusOr<CheckpointManifest::ShardFile> WriteCheckpointPart(uint64_t sequence);
  void PeriodicCheckpoints();
  void RegisterMetrics();

  ServerOptions options_;
  JobSpec job_;
  std::unique_ptr<TokenAuthenticator> auth_;
  MetricsRegistry metrics_;
  ServiceMetrics service_metrics_;
  Counter* checkpoints_written_ = nullptr;
  Counter* checkpoint_failures_ = nullptr;
  Gauge* checkpoint_seconds_ = nullptr;
  Gauge* checkpoint_bytes_ = nullptr;
  std::unique_ptr<MetricsHttpServer> metrics_server_;
  uint64_t incarnation_ = 0;
  std::unique_ptr<ParameterShard> shard_;
  // The coordinator (shard 0) only.
  std::unique_ptr<ShardGroup> shards_;
  std::unique_ptr<JobCoordinator> coordinator_;
  std::unique_ptr<CoordinatorServiceImpl> coordinator_service_;
  std::unique_ptr<ShardRegistryServiceImpl> shard_registry_service_;
  // Other shards only.
  std::unique_ptr<ShardRegistry::Stub> coordinator_stub_;
  std::unique_ptr<ShardControlServiceImpl> shard_control_service_;
  std::string advertise_address_;
  absl::Notification job_over_;
  std::unique_ptr<ParameterServiceImpl> parameter_service_;
  std::unique_ptr<grpc::Server> server_;
  int bound_port_ = 0;
  std::unique_ptr<CheckpointStore> checkpoints_;
  absl::Mutex checkpoint_mu_;  // one checkpoint at a time
  // Writes periodic checkpoints; runs from Start to Shutdown.
  std::thread checkpointer_;
  // Declares silent workers dead (coordinator), or reports to the
  // coordinator (other shards); runs from Start to Shutdown.
  std::thread reaper_;
  absl::Notification stop_reaper_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

// Fills unset fields of `job` with the documented defaults and its tensors
// from the model; INVALID_ARGUMENT/NOT_FOUND for a bad model or settings.
absl::Status CompleteJobSpec(JobSpec* job);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_PS_SERVER_H_
