#include "server/ps_server.h"

#include <unistd.h>

#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/channel.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/model_spec.h"
#include "common/status_macros.h"
#include "grpcpp/client_context.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace fulcrum {

absl::Status CompleteJobSpec(JobSpec* job) {
  if (job->model().empty()) job->set_model("softmax");
  if (job->mode() == CONSISTENCY_UNSPECIFIED) job->set_mode(SYNC);
  if (job->optimizer().kind() == OPTIMIZER_UNSPECIFIED) {
    job->mutable_optimizer()->set_kind(ADAM);
  }
  if (job->batch_size() == 0) job->set_batch_size(64);
  if (job->epochs() == 0) job->set_epochs(1);
  if (job->num_workers() == 0) job->set_num_workers(1);
  if (job->partitions_per_epoch() == 0) {
    job->set_partitions_per_epoch(4 * job->num_workers());
  }
  if (job->tensors().empty()) {
    FULCRUM_ASSIGN_OR_RETURN(std::vector<TensorSpec> tensors,
                             ModelTensors(job->model()));
    for (TensorSpec& t : tensors) *job->add_tensors() = std::move(t);
    if (job->sparse_tables().empty()) {
      for (SparseTableSpec& t : ModelSparseTables(job->model())) {
        *job->add_sparse_tables() = std::move(t);
      }
    }
  }
  // Validates the optimizer settings.
  return CreateOptimizer(job->optimizer()).status();
}

absl::Status ParameterServer::BuildShard() {
  const JobSpec& job = job_;
  const ServerOptions& options = options_;
  FULCRUM_ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> optimizer,
                           CreateOptimizer(job.optimizer()));
  ParameterStoreOptions store_options = options.store;
  store_options.seed = job.seed();
  store_options.shard_index = options.shard_index;
  store_options.num_shards = options.num_shards;
  FULCRUM_ASSIGN_OR_RETURN(
      std::unique_ptr<ParameterStore> store,
      ParameterStore::Create(store_options, std::move(optimizer),
                             {job.tensors().begin(), job.tensors().end()}));
  std::vector<std::unique_ptr<SparseTable>> tables;
  for (const SparseTableSpec& spec : job.sparse_tables()) {
    if (spec.name().empty() || store->TensorSize(spec.name()).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sparse table name '", spec.name(), "' is empty or names a dense tensor"));
    }
    for (const auto& t : tables) {
      if (t->name() == spec.name()) {
        return absl::InvalidArgumentError(absl::StrCat("duplicate sparse table ", spec.name()));
      }
    }
    SparseTableOptions table_options;
    table_options.name = spec.name();
    table_options.dim = spec.dim();
    table_options.initializer = spec.initializer();
    table_options.scale = spec.scale();
    table_options.seed = job.seed();
    table_options.max_rows = spec.max_rows() > 0 ? spec.max_rows() : options.max_sparse_rows;
    FULCRUM_ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> table_optimizer,
                             CreateOptimizer(job.optimizer()));
    FULCRUM_ASSIGN_OR_RETURN(std::unique_ptr<SparseTable> table,
                             SparseTable::Create(table_options, std::move(table_optimizer)));
    tables.push_back(std::move(table));
  }
  ShardRole role;
  role.index = options.shard_index;
  role.count = options.num_shards;
  // Other shards hear of membership changes a network hop after workers do.
  if (options.shard_index > 0) role.membership_grace = options.worker_timeout;
  shard_ = std::make_unique<ParameterShard>(std::move(store), job.mode(), job.staleness(),
                                            std::move(tables), role);
  return absl::OkStatus();
}

absl::StatusOr<RegisterShardResponse> ParameterServer::ReportToCoordinator(
    bool ready, absl::Duration timeout) {
  RegisterShardRequest request;
  request.set_shard_index(options_.shard_index);
  request.set_num_shards(options_.num_shards);
  request.set_address(advertise_address_);
  request.set_incarnation(incarnation_);
  request.set_ready(ready);
  if (shard_ != nullptr) *request.mutable_status() = ShardGroup::Describe(*shard_);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  AttachToken(options_.auth_token, &context);
  RegisterShardResponse response;
  FULCRUM_RETURN_IF_ERROR(
      FromGrpcStatus(coordinator_stub_->RegisterShard(&context, request, &response)));
  return response;
}

absl::Status ParameterServer::JoinCoordinator() {
  FULCRUM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                           OpenChannel(options_.coordinator_address, options_.peer_security));
  coordinator_stub_ = ShardRegistry::NewStub(channel);
  const absl::Time give_up = absl::Now() + options_.coordinator_wait;
  absl::StatusOr<RegisterShardResponse> joined;
  bool logged = false;
  while (true) {
    joined = ReportToCoordinator(/*ready=*/false, absl::Seconds(5));
    if (joined.ok() || !(absl::IsUnavailable(joined.status()) ||
                         absl::IsDeadlineExceeded(joined.status()))) {
      break;
    }
    if (absl::Now() >= give_up) {
      return absl::UnavailableError(absl::StrCat(
          "cannot reach the coordinator at ", options_.coordinator_address, " (--coordinator): ",
          joined.status().message()));
    }
    if (!logged) {
      FULCRUM_LOG(INFO) << "waiting for the coordinator at " << options_.coordinator_address;
      logged = true;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  if (!joined.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the coordinator at ", options_.coordinator_address, " refused shard ",
        options_.shard_index, ": ", joined.status().message()));
  }
  job_ = joined->job();
  FULCRUM_RETURN_IF_ERROR(BuildShard());
  if (joined->has_restore() && joined->restore().sequence() > 0) {
    const CheckpointManifest& manifest = joined->restore();
    if (checkpoints_ == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the job resumes from checkpoint ", manifest.sequence(), "; shard ",
          options_.shard_index, " needs the --checkpoint_dir holding its part"));
    }
    absl::StatusOr<ShardSnapshot> part = checkpoints_->LoadPart(manifest, options_.shard_index);
    absl::Status restored = part.ok() ? shard_->Restore(*part) : part.status();
    if (!restored.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot restore shard ", options_.shard_index, "'s part of checkpoint ",
          manifest.sequence(), " from ", options_.checkpoint_dir, ": ", restored.message()));
    }
    FULCRUM_LOG(INFO) << "restored shard " << options_.shard_index << " of checkpoint "
                      << manifest.sequence() << " at version " << part->version;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ParameterServer>> ParameterServer::Create(
    const ServerOptions& options) {
  std::unique_ptr<ParameterServer> server(new ParameterServer());
  server->options_ = options;
  if (options.num_shards == 0 || options.shard_index >= options.num_shards) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--shard_index=", options.shard_index, " does not fit --num_shards=",
        options.num_shards));
  }
  if (options.shard_index > 0 && options.coordinator_address.empty()) {
    return absl::InvalidArgumentError(
        "a shard other than 0 needs --coordinator (the address of shard 0)");
  }
  std::random_device entropy;
  server->incarnation_ =
      (uint64_t{entropy()} << 32 | entropy()) | 1;  // never 0
  server->auth_ = std::make_unique<TokenAuthenticator>(options.auth_token);
  if (!options.checkpoint_dir.empty()) {
    CheckpointStoreOptions store_opts;
    store_opts.dir = options.checkpoint_dir;
    store_opts.keep = options.keep_checkpoints;
    store_opts.debug_write_delay = options.debug_checkpoint_delay;
    server->checkpoints_ = std::make_unique<CheckpointStore>(store_opts);
  }
  ParameterServer* self = server.get();

  if (options.shard_index > 0) {
    FULCRUM_RETURN_IF_ERROR(server->JoinCoordinator());
    server->shard_control_service_ = std::make_unique<ShardControlServiceImpl>(
        server->shard_.get(),
        [self](uint64_t sequence) { return self->WriteCheckpointPart(sequence); },
        server->auth_.get());
  } else {
    server->job_ = options.job;
    FULCRUM_RETURN_IF_ERROR(CompleteJobSpec(&server->job_));
    FULCRUM_RETURN_IF_ERROR(server->BuildShard());
    const JobSpec& job = server->job_;
    ShardGroupOptions group;
    group.num_shards = options.num_shards;
    group.incarnation = server->incarnation_;
    group.job = job;
    group.report_timeout = options.worker_timeout;
    FULCRUM_ASSIGN_OR_RETURN(group.credentials, MakeChannelCredentials(options.peer_security));
    group.channel_args = DefaultChannelArguments();
    AddSecurityChannelArguments(options.peer_security, &group.channel_args);
    group.auth_token = options.auth_token;
    server->shards_ = std::make_unique<ShardGroup>(group, server->shard_.get());

    CoordinatorOptions coordinator_options;
    coordinator_options.job = job;
    coordinator_options.incarnation = server->incarnation_;
    coordinator_options.heartbeat_interval = options.heartbeat_interval;
    coordinator_options.worker_timeout = options.worker_timeout;
    coordinator_options.max_workers = options.max_workers;
    server->coordinator_ = std::make_unique<JobCoordinator>(
        coordinator_options, server->shards_.get());
    server->coordinator_service_ = std::make_unique<CoordinatorServiceImpl>(
        server->coordinator_.get(), [self] { return self->Checkpoint(); },
        server->auth_.get());
    server->shard_registry_service_ =
        std::make_unique<ShardRegistryServiceImpl>(server->coordinator_.get(), server->auth_.get());
  }
  server->RegisterMetrics();
  server->parameter_service_ = std::make_unique<ParameterServiceImpl>(
      server->shard_.get(), server->incarnation_, options.max_pull_wait,
      static_cast<uint64_t>(options.max_message_bytes), &server->service_metrics_,
      server->auth_.get());
  if (options.shard_index > 0) return server;

  // The coordinator restores a named checkpoint, or the newest in the
  // folder, unless "none"; the other shards then restore their parts of it.
  if (options.restore != "none") {
    absl::StatusOr<LoadedCheckpoint> loaded;
    if (!options.restore.empty()) {
      CheckpointStore reader(CheckpointStoreOptions{});
      loaded = reader.Load(options.restore, 0, options.num_shards);
    } else if (server->checkpoints_ != nullptr) {
      loaded = server->checkpoints_->LoadNewest(0, options.num_shards);
      if (absl::IsNotFound(loaded.status())) {
        FULCRUM_LOG(INFO) << "no checkpoint to restore in "
                          << options.checkpoint_dir << "; starting fresh";
      }
    } else {
      loaded = absl::NotFoundError("no checkpoint folder");
    }
    if (loaded.ok()) {
      absl::Status restored = server->shard_->Restore(loaded->shard);
      if (restored.ok()) restored = server->coordinator_->RestoreProgress(loaded->coordinator);
      if (!restored.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot restore ", loaded->info.path(), ": ", restored.message(),
            " (start with --restore=none or another --checkpoint_dir)"));
      }
      server->coordinator_->RecordRestore(loaded->info);
      server->shards_->SetCommitted(loaded->manifest);
      FULCRUM_LOG(INFO) << "restored checkpoint " << loaded->info.path()
                        << " at version " << loaded->info.round() << ", "
                        << loaded->coordinator.completed_size()
                        << " partitions trained";
    } else if (!options.restore.empty()) {
      return loaded.status();
    }
  }
  return server;
}

ParameterServer::~ParameterServer() { Shutdown(); }

void ParameterServer::RegisterMetrics() {
  service_metrics_ = ServiceMetrics::Register(&metrics_);
  ParameterShard* shard = shard_.get();
  JobCoordinator* coordinator = coordinator_.get();
  metrics_.AddCallbackGauge("fulcrum_shard_version",
                            "Updates applied: rounds (sync) or pushes.",
                            [shard] { return double(shard->version().version); });
  metrics_.AddCallbackGauge("fulcrum_shard_pushes", "Pushes this shard applied or summed.",
                            [shard] { return double(shard->stats().pushes); });
  metrics_.AddCallbackGauge("fulcrum_shard_pulls", "Pulls this shard served.",
                            [shard] { return double(shard->stats().pulls); });
  if (coordinator != nullptr) {
  // One status snapshot per gauge read: cheap next to a scrape interval.
  metrics_.AddCallbackGauge("fulcrum_live_workers", "Workers alive in the job.",
                            [coordinator] { return double(coordinator->GetStatus().live_workers()); });
  metrics_.AddCallbackGauge("fulcrum_dead_workers", "Workers declared dead.",
                            [coordinator] { return double(coordinator->GetStatus().dead_workers()); });
  metrics_.AddCallbackGauge("fulcrum_examples_per_second",
                            "Training throughput over the last seconds.",
                            [coordinator] { return coordinator->GetStatus().examples_per_second(); });
  metrics_.AddCallbackGauge("fulcrum_examples_seen", "Examples trained in the job.",
                            [coordinator] { return double(coordinator->GetStatus().examples_seen()); });
  metrics_.AddCallbackGauge("fulcrum_epoch", "Oldest epoch with untrained partitions (0-based).",
                            [coordinator] { return double(coordinator->GetStatus().epoch()); });
  metrics_.AddCallbackGauge("fulcrum_wait_seconds",
                            "Time workers' pulls waited for rounds or slower workers.",
                            [coordinator] { return coordinator->GetStatus().wait_seconds(); });
  }
  checkpoints_written_ = metrics_.AddCounter("fulcrum_checkpoints_total", "Checkpoints written.");
  checkpoint_failures_ = metrics_.AddCounter("fulcrum_checkpoint_failures_total",
                                             "Checkpoint writes that failed.");
  checkpoint_seconds_ = metrics_.AddGauge("fulcrum_checkpoint_duration_seconds",
                                          "Duration of the last checkpoint.");
  checkpoint_bytes_ = metrics_.AddGauge("fulcrum_checkpoint_bytes", "Size of the last checkpoint.");
}

absl::Status ParameterServer::Start() {
  FULCRUM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                           MakeServerCredentials(options_.security));
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
  parameter_service_->Register(
      &builder, options_.service_threads > 0
                    ? options_.service_threads
                    : std::max(2, static_cast<int>(std::thread::hardware_concurrency())));
  if (coordinator_service_) builder.RegisterService(coordinator_service_.get());
  if (shard_registry_service_) builder.RegisterService(shard_registry_service_.get());
  if (shard_control_service_) builder.RegisterService(shard_control_service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || bound_port_ == 0) {
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    parameter_service_->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen_address,
                     " (address in use or not local?)"));
  }
  parameter_service_->Start();
  if (options_.shard_index > 0) {
    advertise_address_ = options_.advertise_address;
    if (advertise_address_.empty()) {
      std::string host = options_.listen_address.substr(0, options_.listen_address.rfind(':'));
      if (host == "0.0.0.0" || host == "[::]" || host.empty()) {
        char name[256] = "localhost";
        gethostname(name, sizeof(name) - 1);
        host = name;
      }
      advertise_address_ = absl::StrCat(host, ":", bound_port_);
    }
  }
  FULCRUM_LOG(INFO) << "ps_server shard " << options_.shard_index << " of "
                    << options_.num_shards << " listening on port " << bound_port_
                    << (options_.shard_index > 0
                            ? absl::StrCat(" (as ", advertise_address_, ", coordinator ",
                                           options_.coordinator_address, ")")
                            : std::string())
                    << ": model " << job_.model() << ", "
                    << shard_->store().TotalElements() << " parameters, mode "
                    << ConsistencyMode_Name(job_.mode()) << ", "
                    << shard_->store().optimizer().Describe() << ", waiting for "
                    << job_.num_workers() << " workers; "
                    << (options_.security.tls_cert.empty()
                            ? "plaintext"
                            : options_.security.tls_client_ca.empty() ? "TLS"
                                                                      : "mutual TLS")
                    << (auth_->enabled() ? ", bearer token required" : "");
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
  if (options_.shard_index > 0) {
    reaper_ = std::thread([this] { ReportLoop(); });
    return absl::OkStatus();
  }
  reaper_ = std::thread([this] {
    const absl::Duration period =
        std::max(absl::Milliseconds(50), options_.heartbeat_interval / 2);
    while (!stop_reaper_.WaitForNotificationWithTimeout(period)) {
      coordinator_->ReapSilentWorkers();
    }
  });
  if (checkpoints_ != nullptr && (options_.checkpoint_every > absl::ZeroDuration() ||
                                  options_.checkpoint_every_steps > 0)) {
    checkpointer_ = std::thread([this] { PeriodicCheckpoints(); });
  }
  return absl::OkStatus();
}

bool ParameterServer::WaitUntilJobOver(absl::Time deadline) {
  return job_over_.WaitForNotificationWithDeadline(deadline);
}

void ParameterServer::ReportLoop() {
  bool warned = false;
  uint64_t recorded = 0;
  absl::Time over_since = absl::InfiniteFuture();
  do {
    absl::StatusOr<RegisterShardResponse> response =
        ReportToCoordinator(/*ready=*/true, std::max(absl::Seconds(1), options_.heartbeat_interval));
    if (over_since != absl::InfiniteFuture() &&
        (!response.ok() || absl::Now() - over_since > absl::Minutes(1)) &&
        !job_over_.HasBeenNotified()) {
      job_over_.Notify();  // the coordinator finished (and left)
    }
    if (response.ok() && over_since == absl::InfiniteFuture() &&
        (response->job_state() == FINISHED || response->job_state() == STOPPED)) {
      over_since = absl::Now();
    }
    if (!response.ok()) {
      if (!warned) {
        FULCRUM_LOG(WARNING) << "cannot report to the coordinator at "
                             << options_.coordinator_address << ": " << response.status()
                             << " (still serving; retrying)";
        warned = true;
      }
      continue;
    }
    if (warned) FULCRUM_LOG(INFO) << "reporting to the coordinator again";
    warned = false;
    const CheckpointManifest& committed = response->committed();
    if (checkpoints_ != nullptr && committed.sequence() > recorded) {
      absl::MutexLock lock(&checkpoint_mu_);
      absl::Status s = checkpoints_->RecordCommitted(committed);
      if (s.ok()) {
        recorded = committed.sequence();
      } else {
        FULCRUM_LOG(WARNING) << "recording checkpoint " << committed.sequence() << ": " << s;
      }
    }
  } while (!stop_reaper_.WaitForNotificationWithTimeout(options_.heartbeat_interval));
}

absl::StatusOr<CheckpointManifest::ShardFile> ParameterServer::WriteCheckpointPart(
    uint64_t sequence) {
  if (checkpoints_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shard ", options_.shard_index, " has no --checkpoint_dir"));
  }
  absl::MutexLock lock(&checkpoint_mu_);
  const ShardSnapshot snapshot = shard_->Snapshot();
  return checkpoints_->WritePart(sequence, snapshot, options_.shard_index,
                                 options_.num_shards);
}

void ParameterServer::PeriodicCheckpoints() {
  absl::Time last_time = absl::Now();
  int64_t last_version = shard_->version().version;
  bool final_written = false;
  while (!stop_reaper_.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    const JobState state = coordinator_->state();
    if (state == WAITING_FOR_WORKERS) continue;
    const int64_t version = shard_->version().version;
    const bool over = state == FINISHED || state == STOPPED;
    const bool due =
        (options_.checkpoint_every > absl::ZeroDuration() &&
         absl::Now() - last_time >= options_.checkpoint_every) ||
        (options_.checkpoint_every_steps > 0 &&
         version - last_version >= options_.checkpoint_every_steps);
    if (over ? final_written : (!due || version == last_version)) continue;
    Checkpoint().IgnoreError();  // failures are logged and in status
    last_time = absl::Now();
    last_version = version;
    if (over) final_written = true;
  }
}

absl::StatusOr<CheckpointInfo> ParameterServer::Checkpoint() {
  if (coordinator_ == nullptr) {
    return absl::FailedPreconditionError("checkpoints are taken by the coordinator (shard 0)");
  }
  if (checkpoints_ == nullptr) {
    return absl::FailedPreconditionError(
        "this ps_server has no --checkpoint_dir");
  }
  absl::MutexLock lock(&checkpoint_mu_);
  const absl::Time started = absl::Now();
  absl::StatusOr<CheckpointInfo> info = [&]() -> absl::StatusOr<CheckpointInfo> {
    FULCRUM_ASSIGN_OR_RETURN(const uint64_t sequence, checkpoints_->NextSequence());
    // Progress first: partitions it counts as trained are in the snapshots.
    const CoordinatorCheckpoint progress = coordinator_->SaveProgress();
    const ShardSnapshot snapshot = shard_->Snapshot();
    // The other shards write their parts meanwhile.
    absl::StatusOr<std::vector<CheckpointManifest::ShardFile>> files;
    std::thread remote([&] { files = shards_->WriteRemoteParts(sequence); });
    absl::StatusOr<CheckpointManifest::ShardFile> own =
        checkpoints_->WritePart(sequence, snapshot, 0, options_.num_shards);
    remote.join();
    if (!own.ok()) return own.status();
    if (!files.ok()) {
      checkpoints_->Abandon(sequence);
      return files.status();
    }
    (*files)[0] = *own;
    CheckpointManifest manifest;
    manifest.set_format_version(kCheckpointFormatVersion);
    manifest.set_sequence(sequence);
    manifest.set_unix_seconds(absl::ToDoubleSeconds(started - absl::UnixEpoch()));
    manifest.set_round(snapshot.version);
    manifest.set_num_shards(options_.num_shards);
    for (const CheckpointManifest::ShardFile& file : *files) *manifest.add_shards() = file;
    *manifest.mutable_coordinator() = progress;
    FULCRUM_ASSIGN_OR_RETURN(CheckpointInfo written, checkpoints_->Commit(manifest, started));
    shards_->SetCommitted(manifest);
    return written;
  }();
  if (!info.ok()) {
    FULCRUM_LOG(ERROR) << "checkpoint failed (training goes on): " << info.status();
    coordinator_->RecordCheckpointFailure(info.status());
    checkpoint_failures_->Increment();
    return info.status();
  }
  coordinator_->RecordCheckpoint(*info);
  checkpoints_written_->Increment();
  checkpoint_seconds_->Set(info->duration_seconds());
  checkpoint_bytes_->Set(info->bytes());
  FULCRUM_LOG(INFO) << "checkpoint " << info->path() << " at version "
                    << info->round() << ": " << info->bytes() << " bytes in "
                    << absl::StrFormat("%.3f", info->duration_seconds()) << " s";
  return info;
}

void ParameterServer::Shutdown() {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  stop_reaper_.Notify();
  if (reaper_.joinable()) reaper_.join();
  if (checkpointer_.joinable()) checkpointer_.join();
  if (coordinator_service_) coordinator_service_->Shutdown();  // ends watches
  if (metrics_server_) metrics_server_->Stop();
  if (shard_) shard_->Shutdown();  // wakes pulls waiting for a round
  if (shards_) shards_->Stop();  // ends the membership senders
  if (parameter_service_) parameter_service_->FinishWaitingCalls();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() +
                                 std::chrono::seconds(5));
  if (parameter_service_) parameter_service_->Shutdown();
}

void ParameterServer::Wait() {
  if (server_) server_->Wait();
}

}  // namespace fulcrum
