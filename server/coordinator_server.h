// CoordinatorServer: the coordinator's part of a ps_server process (shard
// 0) — the job's coordinator (membership, leases, evaluations, status), the
// shard group it keeps the other shards' membership through, the job's
// checkpoints, and the Coordinator and ShardRegistry services over them.
#ifndef FULCRUM_SERVER_COORDINATOR_SERVER_H_
#define FULCRUM_SERVER_COORDINATOR_SERVER_H_

#include <cstdint>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "common/metrics.h"
#include "common/rpc/security.h"
#include "grpcpp/server_builder.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "server/checkpoint.h"
#include "server/coordinator.h"
#include "server/grpc_services.h"
#include "server/job_checkpointer.h"
#include "server/parameter_shard.h"
#include "server/server_options.h"
#include "server/shard_group.h"

namespace fulcrum {

// Lifecycle: Create (restores the job from a checkpoint) -> RegisterServices
// -> (the gRPC server starts) -> Start -> StopLoops -> EndWatches ->
// StopSenders -> (the gRPC server stops). Thread-safe between those steps.
// `local` (this process's shard), `checkpoints` (may be null) and
// `metrics` are not owned and must outlive it.
class CoordinatorServer {
 public:
  // `job` is complete (CompleteJobSpec). FAILED_PRECONDITION / NOT_FOUND when
  // the checkpoint to restore cannot be (see JobCheckpointer::Restore).
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Create(
      const ServerOptions& options, const JobSpec& job, uint64_t incarnation, ParameterShard* local,
      CheckpointStore* checkpoints, MetricsRegistry* metrics);
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

 private:
  CoordinatorServer() = default;
  void RegisterMetrics(MetricsRegistry* metrics);

  ServerOptions options_;
  std::unique_ptr<ShardGroup> shards_;
  std::unique_ptr<JobCoordinator> coordinator_;
  std::unique_ptr<JobCheckpointer> checkpointer_;
  std::unique_ptr<CoordinatorServiceImpl> coordinator_service_;
  std::unique_ptr<ShardRegistryServiceImpl> shard_registry_service_;
  absl::Notification stop_reaper_;
  std::thread reaper_;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_COORDINATOR_SERVER_H_
