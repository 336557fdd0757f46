#include "server/coordinator_server.h"

#include <algorithm>

#include "common/base/status_macros.h"
#include "common/rpc/channel.h"
#include "common/rpc/security.h"
#include "server/grpc_remote_shard.h"

namespace fulcrum {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Create(
    const ServerOptions& options, const JobSpec& job, uint64_t incarnation, ParameterShard* local,
    CheckpointStore* checkpoints, MetricsRegistry* metrics) {
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  server->options_ = options;
  ShardGroupOptions group;
  group.num_shards = options.num_shards;
  group.incarnation = incarnation;
  group.job = job;
  group.report_timeout = options.worker_timeout;
  FULCRUM_ASSIGN_OR_RETURN(ChannelOpener opener, ChannelOpener::Create(options.peer_security));
  group.connect = GrpcRemoteShards(opener, options.auth_token);
  server->shards_ = std::make_unique<ShardGroup>(group, local);

  CoordinatorOptions coordinator_options;
  coordinator_options.job = job;
  coordinator_options.incarnation = incarnation;
  coordinator_options.heartbeat_interval = options.heartbeat_interval;
  coordinator_options.worker_timeout = options.worker_timeout;
  coordinator_options.max_workers = options.max_workers;
  server->coordinator_ =
      std::make_unique<JobCoordinator>(coordinator_options, server->shards_.get());

  JobCheckpointerOptions checkpointer_options;
  checkpointer_options.every = options.checkpoint_every;
  checkpointer_options.every_steps = options.checkpoint_every_steps;
  server->checkpointer_ =
      std::make_unique<JobCheckpointer>(checkpointer_options, checkpoints,
                                        server->coordinator_.get(), server->shards_.get(), metrics);
  FULCRUM_RETURN_IF_ERROR(server->checkpointer_->Restore(options.restore));

  CoordinatorServer* self = server.get();
  server->coordinator_service_ = std::make_unique<CoordinatorServiceImpl>(
      server->coordinator_.get(), [self] { return self->Checkpoint(); });
  server->shard_registry_service_ =
      std::make_unique<ShardRegistryServiceImpl>(server->coordinator_.get());
  server->RegisterMetrics(metrics);
  return server;
}

CoordinatorServer::~CoordinatorServer() {
  StopLoops();
  EndWatches();
  StopSenders();
}

void CoordinatorServer::RegisterMetrics(MetricsRegistry* metrics) {
  JobCoordinator* coordinator = coordinator_.get();
  // One status snapshot per gauge read: cheap next to a scrape interval.
  metrics->AddCallbackGauge("fulcrum_live_workers", "Workers alive in the job.", [coordinator] {
    return double(coordinator->GetStatus().live_workers());
  });
  metrics->AddCallbackGauge("fulcrum_dead_workers", "Workers declared dead.", [coordinator] {
    return double(coordinator->GetStatus().dead_workers());
  });
  metrics->AddCallbackGauge(
      "fulcrum_examples_per_second", "Training throughput over the last seconds.",
      [coordinator] { return coordinator->GetStatus().examples_per_second(); });
  metrics->AddCallbackGauge("fulcrum_examples_seen", "Examples trained in the job.", [coordinator] {
    return double(coordinator->GetStatus().examples_seen());
  });
  metrics->AddCallbackGauge("fulcrum_epoch", "Oldest epoch with untrained partitions (0-based).",
                            [coordinator] { return double(coordinator->GetStatus().epoch()); });
  metrics->AddCallbackGauge("fulcrum_wait_seconds",
                            "Time workers' pulls waited for rounds or slower workers.",
                            [coordinator] { return coordinator->GetStatus().wait_seconds(); });
}

void CoordinatorServer::RegisterServices(grpc::ServerBuilder* builder) {
  builder->RegisterService(coordinator_service_.get());
  builder->RegisterService(shard_registry_service_.get());
}

void CoordinatorServer::Start() {
  reaper_ = std::thread([this] {
    const absl::Duration period = std::max(absl::Milliseconds(50), options_.heartbeat_interval / 2);
    while (!stop_reaper_.WaitForNotificationWithTimeout(period)) {
      coordinator_->ReapSilentWorkers();
    }
  });
  checkpointer_->Start();
}

// The steps below also run from the destructor of a server whose Create
// failed part-way.
void CoordinatorServer::StopLoops() {
  if (!stop_reaper_.HasBeenNotified()) stop_reaper_.Notify();
  if (reaper_.joinable()) reaper_.join();
  if (checkpointer_) checkpointer_->Stop();
}

void CoordinatorServer::EndWatches() {
  if (coordinator_service_) coordinator_service_->Shutdown();
}

void CoordinatorServer::StopSenders() {
  if (shards_) shards_->Stop();
}

}  // namespace fulcrum
