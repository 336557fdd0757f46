#include "server/ps_server.h"

#include <unistd.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/model_spec.h"
#include "common/status_macros.h"
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

absl::StatusOr<std::unique_ptr<ParameterServer>> ParameterServer::Create(
    const ServerOptions& options) {
  std::unique_ptr<ParameterServer> server(new ParameterServer());
  server->options_ = options;
  server->job_ = options.job;
  FULCRUM_RETURN_IF_ERROR(CompleteJobSpec(&server->job_));
  const JobSpec& job = server->job_;

  std::random_device entropy;
  server->incarnation_ =
      (uint64_t{entropy()} << 32 | entropy()) | 1;  // never 0

  FULCRUM_ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> optimizer,
                           CreateOptimizer(job.optimizer()));
  ParameterStoreOptions store_options = options.store;
  store_options.seed = job.seed();
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
  server->shard_ = std::make_unique<ParameterShard>(std::move(store), job.mode(),
                                                    job.staleness(), std::move(tables));

  CoordinatorOptions coordinator_options;
  coordinator_options.job = job;
  coordinator_options.shard_addresses = options.shard_addresses;
  coordinator_options.incarnation = server->incarnation_;
  coordinator_options.heartbeat_interval = options.heartbeat_interval;
  coordinator_options.worker_timeout = options.worker_timeout;
  coordinator_options.max_workers = options.max_workers;
  server->coordinator_ = std::make_unique<JobCoordinator>(
      coordinator_options, server->shard_.get());
  server->RegisterMetrics();
  server->auth_ = std::make_unique<TokenAuthenticator>(options.auth_token);
  server->parameter_service_ = std::make_unique<ParameterServiceImpl>(
      server->shard_.get(), server->incarnation_, options.max_pull_wait,
      static_cast<uint64_t>(options.max_message_bytes), &server->service_metrics_,
      server->auth_.get());
  ParameterServer* self = server.get();
  server->coordinator_service_ = std::make_unique<CoordinatorServiceImpl>(
      server->coordinator_.get(), [self] { return self->Checkpoint(); },
      server->auth_.get());

  // Restore: a named checkpoint, or the newest in the folder, unless "none".
  if (!options.checkpoint_dir.empty()) {
    CheckpointStoreOptions store_opts;
    store_opts.dir = options.checkpoint_dir;
    store_opts.keep = options.keep_checkpoints;
    store_opts.debug_write_delay = options.debug_checkpoint_delay;
    server->checkpoints_ = std::make_unique<CheckpointStore>(store_opts);
  }
  if (options.restore != "none") {
    absl::StatusOr<LoadedCheckpoint> loaded;
    if (!options.restore.empty()) {
      CheckpointStore reader(CheckpointStoreOptions{});
      loaded = reader.Load(options.restore);
    } else if (server->checkpoints_ != nullptr) {
      loaded = server->checkpoints_->LoadNewest();
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
  builder.RegisterService(parameter_service_.get());
  builder.RegisterService(coordinator_service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || bound_port_ == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen_address,
                     " (address in use or not local?)"));
  }
  FULCRUM_LOG(INFO) << "ps_server listening on port " << bound_port_
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
  if (checkpoints_ == nullptr) {
    return absl::FailedPreconditionError(
        "this ps_server has no --checkpoint_dir");
  }
  absl::MutexLock lock(&checkpoint_mu_);
  const absl::Time started = absl::Now();
  // Progress first: partitions it counts as trained are in the snapshot.
  const CoordinatorCheckpoint progress = coordinator_->SaveProgress();
  const ShardSnapshot snapshot = shard_->Snapshot();
  absl::StatusOr<CheckpointInfo> info =
      checkpoints_->Write(snapshot, progress, started);
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
  if (server_) server_->Shutdown(std::chrono::system_clock::now() +
                                 std::chrono::seconds(5));
}

void ParameterServer::Wait() {
  if (server_) server_->Wait();
}

}  // namespace fulcrum
