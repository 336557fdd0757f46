#include "server/coordinator_server.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/rpc/channel.h"
#include "common/rpc/security.h"
#include "server/replication/witnesses.h"
#include "server/rpc/grpc_remote_shard.h"

namespace fulcrum {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Create(
    const ServerOptions& options, const Job& job, uint64_t incarnation, ParameterShard* local,
    ReplicationLog* log, CheckpointStore* checkpoints, MetricsRegistry* metrics,
    const CoordinatorReplica* took_over) {
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  CoordinatorServer* self = server.get();
  server->options_ = options;
  server->process_incarnation_ = incarnation;
  server->log_ = log;
  // Worker ids, the membership and shard 0's replica set are the
  // coordinator incarnation's: a backup that took over keeps the dead
  // coordinator's, so workers go on as they were.
  const uint64_t coordinator_incarnation =
      took_over != nullptr ? took_over->workers().incarnation() : incarnation;
  ShardGroupOptions group;
  group.num_shards = options.num_shards;
  group.incarnation = coordinator_incarnation;
  group.process_incarnation = incarnation;
  group.job = job;
  group.report_timeout = options.worker_timeout;
  FULCRUM_ASSIGN_OR_RETURN(ChannelOpener opener, ChannelOpener::Create(options.peer_security));
  group.connect = GrpcRemoteShards(opener);
  group.coordinator_backup = [self](const std::string& address, uint64_t process) {
    self->replicator_->SetBackup(address, process);
  };
  server->shards_ = std::make_unique<ShardGroup>(group, local);

  // The coordinator's own shard, with the job state, to its backup.
  ShardReplicatorOptions replicator;
  replicator.shard_index = 0;
  replicator.num_shards = options.num_shards;
  replicator.incarnation = coordinator_incarnation;
  replicator.process_incarnation = incarnation;
  replicator.security = options.peer_security;
  replicator.drop_backup = [self, incarnation, batch_timeout = replicator.rpc_timeout](
                               uint64_t process, absl::Time unreachable_since) {
    FULCRUM_RETURN_IF_ERROR(self->MayGoOnAlone(unreachable_since, batch_timeout));
    DropBackupRequest request;
    request.set_shard_index(0);
    request.set_process_incarnation(incarnation);
    request.set_backup_process_incarnation(process);
    return self->shards_->DropBackup(request);
  };
  replicator.step_down = [self, local] {
    local->StepDown();
    self->superseded_.Notify();
  };
  replicator.coordinator_state = [self] { return self->ReplicaState(); };
  server->replicator_ = std::make_unique<ShardReplicator>(local, log, replicator);

  CoordinatorOptions coordinator_options;
  coordinator_options.job = job;
  coordinator_options.incarnation = coordinator_incarnation;
  coordinator_options.heartbeat_interval = options.heartbeat_interval;
  coordinator_options.worker_timeout = options.worker_timeout;
  coordinator_options.max_workers = options.max_workers;
  coordinator_options.state_changed = [self] { return self->ReplicateState(); };
  server->coordinator_ =
      std::make_unique<JobCoordinator>(coordinator_options, server->shards_.get());

  JobCheckpointerOptions checkpointer_options;
  checkpointer_options.every = options.checkpoint_every;
  checkpointer_options.every_steps = options.checkpoint_every_steps;
  checkpointer_options.full_every = options.checkpoint_full_every;
  server->checkpointer_ =
      std::make_unique<JobCheckpointer>(checkpointer_options, checkpoints,
                                        server->coordinator_.get(), server->shards_.get(), metrics);
  if (took_over == nullptr) {
    FULCRUM_RETURN_IF_ERROR(server->checkpointer_->Restore(options.restore));
  } else {
    FULCRUM_RETURN_IF_ERROR(server->coordinator_->RestoreReplica(*took_over));
    if (took_over->committed().sequence() > 0) {
      server->shards_->SetCommitted(took_over->committed());
      // The shards' folders hold the old coordinator's checkpoints.
      if (checkpoints != nullptr) checkpoints->StartAfter(took_over->committed().sequence());
    }
  }
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

CoordinatorReplica CoordinatorServer::ReplicaState() const {
  CoordinatorReplica state = coordinator_->SaveReplica();
  *state.mutable_committed() = shards_->committed();
  state.set_coordinator_address(shards_->coordinator_address());
  state.set_coordinator_process_incarnation(process_incarnation_);
  for (std::string& address : shards_->OtherShardAddresses()) {
    state.add_witness_addresses(std::move(address));
  }
  for (ShardPair& pair : shards_->Pairs()) *state.add_shard_pairs() = std::move(pair);
  return state;
}

absl::Status CoordinatorServer::MayGoOnAlone(absl::Time unreachable_since,
                                             absl::Duration batch_timeout) {
  // The backup may have taken over on the other side of a cut (found once
  // it is mended): it had its witnesses, this process must yield.
  const std::string backup = shards_->coordinator_backup_address();
  if (!backup.empty() && CallCoordinator(backup, options_.peer_security, kReachTimeout).ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the backup at ", backup, " serves the job as the coordinator now"));
  }
  // Its process gone: nothing can take over there.
  if (!backup.empty() && NothingListensAt(backup, kReachTimeout)) return absl::OkStatus();
  const std::vector<std::string> witnesses = shards_->OtherShardAddresses();
  if (witnesses.empty()) {
    // A worker live when the backup was cut off had heard from here within
    // the worker timeout before; the backup stopped answering up to a
    // batch's deadline before `unreachable_since`.
    return coordinator_->WorkersLetGoOnAlone(unreachable_since,
                                             options_.worker_timeout + batch_timeout);
  }
  return ShardsLetCoordinatorGoOnAlone(PollWitnesses(witnesses, shards_->coordinator_address(),
                                                     process_incarnation_, options_.peer_security,
                                                     2 * kReachTimeout));
}

absl::Status CoordinatorServer::ReplicateState() {
  uint64_t sequence = 0;
  {
    absl::MutexLock lock(&replicate_mu_);
    sequence = log_->Reserve();
    if (sequence == 0) return absl::OkStatus();  // no backup
    ReplicaOp op;
    *op.mutable_coordinator() = ReplicaState();
    log_->Fill(sequence, op);
  }
  // A backup that does not answer is dropped once the witnesses agree (the
  // wait then ends OK); the change stands here either way, and the caller
  // tells the worker to retry when it was not replicated in time.
  const absl::Status replicated =
      log_->AwaitSafe(sequence, absl::Now() + options_.replication_timeout);
  if (!replicated.ok()) {
    FULCRUM_LOG(WARNING) << "job state not replicated to the coordinator's backup: " << replicated;
  }
  return replicated;
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
  if (replicator_) replicator_->Stop();
  if (shards_) shards_->Stop();
}

}  // namespace fulcrum
