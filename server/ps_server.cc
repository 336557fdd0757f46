#include "server/ps_server.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/replica.h"
#include "common/rpc/channel.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "proto/coordinator.grpc.pb.h"
#include "server/job_spec.h"
#include "server/replication/witnesses.h"

namespace fulcrum {
namespace {

// " (own optimizers: a: ..., b: ...)" for a job whose tensors or tables
// have optimizers of their own; "" otherwise.
std::string OverridesText(const Job& job) {
  const std::vector<std::string> overrides = job.OptimizerOverrides();
  if (overrides.empty()) return "";
  return absl::StrCat(" (own optimizers: ", absl::StrJoin(overrides, "; "), ")");
}

}  // namespace

absl::StatusOr<std::unique_ptr<ParameterServer>> ParameterServer::Create(
    const ServerOptions& options) {
  FULCRUM_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<ParameterServer> server(new ParameterServer());
  server->options_ = options;
  // The token this process requires is the one it presents to its peers.
  server->options_.peer_security.auth_token = options.auth_token;
  std::random_device entropy;
  server->incarnation_ = (uint64_t{entropy()} << 32 | entropy()) | 1;  // never 0
  if (!options.checkpoint_dir.empty()) {
    CheckpointStoreOptions store_options;
    store_options.dir = options.checkpoint_dir;
    store_options.keep = options.keep_checkpoints;
    store_options.debug_write_delay = options.debug_checkpoint_delay;
    server->checkpoints_ = std::make_unique<CheckpointStore>(store_options);
  }
  if (options.shard_index == 0) {
    server->options_.coordinator_address = CoordinatorToBackUp(server->options_);
  }
  if (server->options_.coordinator_address.empty()) {
    // Known only now: --coordinator may name nothing but this process.
    if (options.job.empty()) {
      return absl::InvalidArgumentError(
          "the coordinator (shard 0) needs a job (--job=FILE or --model=NAME)");
    }
    // The coordinator: its own shard, and the job. It restores a named
    // checkpoint, or the newest in the folder, unless "none"; the other
    // shards then restore their parts of it.
    FULCRUM_ASSIGN_OR_RETURN(
        server->shard_server_,
        ShardServer::Create(server->options_, server->incarnation_, &server->metrics_));
    FULCRUM_ASSIGN_OR_RETURN(
        server->coordinator_server_,
        CoordinatorServer::Create(server->options_, server->options_.job, server->incarnation_,
                                  server->shard_server_->shard(),
                                  server->shard_server_->replication_log(),
                                  server->checkpoints_.get(), &server->metrics_));
    return server;
  }
  // Every other process joins the coordinator: a shard's process (primary
  // or backup), or the coordinator's backup, which is shard 0's backup and
  // stands by to take the job over with it.
  FULCRUM_ASSIGN_OR_RETURN(server->shard_server_,
                           ShardServer::Join(server->options_, server->incarnation_,
                                             &server->metrics_, server->checkpoints_.get()));
  if (options.shard_index == 0) server->StandBy();
  return server;
}

std::string ParameterServer::CoordinatorToBackUp(const ServerOptions& options) {
  // --coordinator names the coordinator this process backs up; its own
  // address there (one command for every pod of a StatefulSet) names
  // nobody else.
  std::vector<std::string> others;
  for (absl::string_view address : absl::StrSplit(options.coordinator_address, ',')) {
    if (!address.empty() && address != options.advertise_address &&
        address != options.listen_address) {
      others.emplace_back(address);
    }
  }
  if (others.empty() && !options.coordinator_backup_address.empty() &&
      BackupServesTheJob(options)) {
    // The backup took over while this process was away: it is the
    // coordinator now, and this process becomes its backup.
    FULCRUM_LOG(INFO) << "the coordinator's backup at " << options.coordinator_backup_address
                      << " serves the job: this process joins it as its backup";
    return options.coordinator_backup_address;
  }
  return absl::StrJoin(others, ",");
}

void ParameterServer::StandBy() {
  // Its Coordinator and ShardRegistry services answer UNAVAILABLE until it
  // takes over. Workers come here when their calls to the coordinator fail:
  // to its Coordinator service, and to its shard's (a pull or push); they
  // are the witnesses of a one-shard job.
  standby_coordinator_service_ = std::make_unique<CoordinatorServiceImpl>(nullptr, nullptr);
  standby_registry_service_ = std::make_unique<ShardRegistryServiceImpl>(nullptr);
  CoordinatorServiceImpl* standby = standby_coordinator_service_.get();
  ParameterShard* shard = shard_server_->shard();
  shard_server_->OnCoordinatorTakenOver(
      [this](const CoordinatorReplica& state) { TakeOverCoordinator(state); },
      [standby, shard](absl::Time silent_since, const CoordinatorReplica& state) {
        absl::flat_hash_set<uint64_t> came = standby->WorkersCalledSince(silent_since);
        for (uint64_t worker : shard->WorkersRefusedSince(silent_since)) came.insert(worker);
        return WorkersWitnessCoordinatorLoss(state.workers(), came);
      });
}

bool ParameterServer::BackupServesTheJob(const ServerOptions& options) {
  // Alive as a backup that has not taken over: it is about to (this process
  // is the coordinator it lost, restarted sooner than failover_after).
  // Serving then would make two coordinators.
  const absl::Time give_up = absl::Now() + std::max(absl::Seconds(5), 10 * options.failover_after);
  bool logged = false;
  while (true) {
    const absl::Status s = CallCoordinator(options.coordinator_backup_address,
                                           options.peer_security, absl::Seconds(1));
    if (s.ok()) return true;
    if (!absl::IsUnavailable(s) || !IsBackupNotServing(s.message())) {
      return false;  // not there: this process is the coordinator
    }
    if (absl::Now() >= give_up) {
      FULCRUM_LOG(WARNING) << "the coordinator's backup at " << options.coordinator_backup_address
                           << " did not take over; this process is the coordinator";
      return false;
    }
    if (!logged) {
      FULCRUM_LOG(INFO) << "the coordinator's backup at " << options.coordinator_backup_address
                        << " is alive and has not taken over yet: waiting for it";
      logged = true;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

void ParameterServer::TakeOverCoordinator(const CoordinatorReplica& state) {
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> created = CoordinatorServer::Create(
      options_, shard_server_->job(), incarnation_, shard_server_->shard(),
      shard_server_->replication_log(), checkpoints_.get(), &metrics_, &state);
  if (!created.ok()) {
    FULCRUM_LOG(ERROR) << "the coordinator's backup cannot take over: " << created.status();
    return;
  }
  CoordinatorServer* coordinator = created->get();
  coordinator->NameSelf(AdvertisedAddress(options_, bound_port_), /*now=*/true);
  {
    absl::MutexLock lock(&coordinator_mu_);
    coordinator_server_ = *std::move(created);
  }
  standby_coordinator_service_->Serve(coordinator->coordinator(),
                                      [coordinator] { return coordinator->Checkpoint(); });
  standby_registry_service_->Serve(coordinator->coordinator());
  coordinator->Start();
  FULCRUM_LOG(WARNING) << "this process is the coordinator now (incarnation "
                       << absl::StrFormat("%016x", state.workers().incarnation())
                       << "), resuming from " << state.progress().completed_size()
                       << " completed partitions and " << state.workers().leases_size()
                       << " leases; workers go on under their ids";
}

ParameterServer::~ParameterServer() { Shutdown(); }

absl::Status ParameterServer::Start() {
  FULCRUM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                           MakeServerCredentials(options_.security, options_.auth_token));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen_address, credentials, &bound_port_);
  if (!options_.unix_socket.empty()) {
    ::unlink(options_.unix_socket.c_str());  // a stale socket from a crash
    builder.AddListeningPort("unix:" + options_.unix_socket, credentials);
  }
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  AddServerKeepaliveArguments(&builder);
  shard_server_->RegisterServices(
      &builder, options_.service_threads > 0
                    ? options_.service_threads
                    : std::max(2, static_cast<int>(std::thread::hardware_concurrency())));
  if (coordinator_server_) coordinator_server_->RegisterServices(&builder);
  if (standby_coordinator_service_) {
    builder.RegisterService(standby_coordinator_service_.get());
    builder.RegisterService(standby_registry_service_.get());
  }
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || bound_port_ == 0) {
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    shard_server_->ShutdownService();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen_address,
                                               " (address in use or not local?)"));
  }
  shard_server_->Start(bound_port_);
  const Job& job = shard_server_->job();
  ParameterShard* shard = shard_server_->shard();
  FULCRUM_LOG(INFO) << "ps_server shard " << options_.shard_index << " of " << options_.num_shards
                    << " listening on port " << bound_port_
                    << (options_.shard_index > 0
                            ? absl::StrCat(" (as ", shard_server_->advertise_address(),
                                           ", coordinator ", options_.coordinator_address, ")")
                            : std::string())
                    << ": model " << (job->model().empty() ? "-" : job->model()) << ", "
                    << shard->store().TotalElements() << " parameters, mode "
                    << ConsistencyMode_Name(job->mode()) << ", "
                    << shard->store().optimizer().Describe() << OverridesText(job)
                    << ", waiting for " << job->num_workers() << " workers; "
                    << (options_.security.tls_cert.empty()        ? "plaintext"
                        : options_.security.tls_client_ca.empty() ? "TLS"
                                                                  : "mutual TLS")
                    << (options_.auth_token.empty() ? "" : ", bearer token required");
  if (options_.metrics_port >= 0) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> metrics =
        MetricsHttpServer::Start(&metrics_, options_.metrics_host, options_.metrics_port);
    if (!metrics.ok()) {
      server_->Shutdown();
      server_.reset();
      return metrics.status();
    }
    metrics_server_ = std::move(*metrics);
    FULCRUM_LOG(INFO) << "metrics at http://" << options_.metrics_host << ":"
                      << metrics_server_->port() << "/metrics";
  }
  if (coordinator_server_) {
    coordinator_server_->NameSelf(AdvertisedAddress(options_, bound_port_),
                                  /*now=*/!options_.coordinator_backup_address.empty());
    coordinator_server_->Start();
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckpointInfo> ParameterServer::Checkpoint() {
  if (coordinator_server_ == nullptr) {
    return absl::FailedPreconditionError("checkpoints are taken by the coordinator (shard 0)");
  }
  return coordinator_server_->Checkpoint();
}

void ParameterServer::Shutdown() {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  // A backup taking over finishes first (its watcher is joined here).
  if (shard_server_) shard_server_->StopReporting();
  if (coordinator_server_) coordinator_server_->StopLoops();
  if (coordinator_server_) coordinator_server_->EndWatches();
  if (metrics_server_) metrics_server_->Stop();
  if (shard_server_) shard_server_->ShutdownShard();  // wakes pulls waiting for a round
  if (coordinator_server_) coordinator_server_->StopSenders();
  if (shard_server_) shard_server_->FinishWaitingCalls();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (shard_server_) shard_server_->ShutdownService();
}

void ParameterServer::Wait() {
  if (server_) server_->Wait();
}

}  // namespace fulcrum
