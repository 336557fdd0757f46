#include "server/shard_server.h"

#include <unistd.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "server/coordinator/shard_group.h"
#include "server/replication/witnesses.h"
#include "server/rpc/grpc_registry_client.h"

namespace fulcrum {
namespace {

// A TakeOverAuthority that is a function.
class AuthorityFunction final : public TakeOverAuthority {
 public:
  using Function = std::function<absl::Status(absl::Time, absl::Duration*)>;
  explicit AuthorityFunction(Function function) : function_(std::move(function)) {}
  absl::Status MayTakeOver(absl::Time silent_since, absl::Duration* ask_again_after) override {
    return function_(silent_since, ask_again_after);
  }

 private:
  const Function function_;
};

FailoverRoleOptions RoleOptions(const ServerOptions& options) {
  FailoverRoleOptions role;
  role.name = options.shard_index == 0 ? "shard 0 (the coordinator)"
                                       : absl::StrCat("shard ", options.shard_index);
  role.failover_after = options.failover_after;
  return role;
}

}  // namespace

ShardServer::ShardServer(const ServerOptions& options, uint64_t incarnation,
                         MetricsRegistry* metrics, CheckpointStore* checkpoints)
    : options_(options),
      incarnation_(incarnation),
      metrics_(metrics),
      checkpoints_(checkpoints),
      // Who may let this process's backup take over is what differs between
      // shard 0 and the others, decided here once.
      authority_(std::make_unique<AuthorityFunction>(
          options.shard_index == 0
              ? AuthorityFunction::Function([this](absl::Time silent_since, absl::Duration* again) {
                  return WitnessesLetTakeOver(silent_since, again);
                })
              : AuthorityFunction::Function(
                    [this](absl::Time, absl::Duration*) { return CoordinatorPromotes(); }))),
      role_(RoleOptions(options), FailoverRole::State::kPrimary, authority_.get()),
      serving_incarnation_(incarnation) {}

ShardServer::~ShardServer() {
  StopReporting();
  if (shard_) shard_->Shutdown();
}

absl::StatusOr<std::unique_ptr<ShardServer>> ShardServer::Create(const ServerOptions& options,
                                                                 uint64_t incarnation,
                                                                 MetricsRegistry* metrics) {
  std::unique_ptr<ShardServer> server(
      new ShardServer(options, incarnation, metrics, /*checkpoints=*/nullptr));
  server->job_ = options.job;
  FULCRUM_RETURN_IF_ERROR(server->BuildShard());
  server->shard_->EnableReplication(&server->replication_log_, options.replication_timeout);
  server->BuildService();
  return server;
}

absl::StatusOr<std::unique_ptr<ShardServer>> ShardServer::Join(const ServerOptions& options,
                                                               uint64_t incarnation,
                                                               MetricsRegistry* metrics,
                                                               CheckpointStore* checkpoints) {
  std::unique_ptr<ShardServer> server(new ShardServer(options, incarnation, metrics, checkpoints));
  FULCRUM_RETURN_IF_ERROR(server->JoinCoordinator());
  ShardServer* self = server.get();
  server->shard_control_service_ = std::make_unique<ShardControlServiceImpl>(
      server->shard_.get(),
      [self](uint64_t sequence, uint64_t delta_of) {
        return self->WriteCheckpointPart(sequence, delta_of);
      },
      [self](const std::string& address, uint64_t process) {
        return self->CallCoordinatorAt(address, process);
      });
  server->replica_service_ =
      std::make_unique<ShardReplicaService>(server->shard_.get(), options.debug_replication_delay);
  server->BuildService();
  return server;
}

void ShardServer::BuildService() {
  service_metrics_ = ServiceMetrics::Register(metrics_);
  ParameterShard* shard = shard_.get();
  metrics_->AddCallbackGauge("fulcrum_shard_version", "Updates applied: rounds (sync) or pushes.",
                             [shard] { return double(shard->version().version); });
  metrics_->AddCallbackGauge("fulcrum_shard_pushes", "Pushes this shard applied or summed.",
                             [shard] { return double(shard->stats().pushes); });
  metrics_->AddCallbackGauge("fulcrum_shard_pulls", "Pulls this shard served.",
                             [shard] { return double(shard->stats().pulls); });
  // Per sparse table: its size and the life of its features.
  struct TableMetric {
    const char* name;
    const char* help;
    const char* type;
    double (*read)(const SparseTableStatus&);
  };
  static constexpr TableMetric kTableMetrics[] = {
      {"fulcrum_table_rows", "Rows a sparse table holds on this shard.", "gauge",
       [](const SparseTableStatus& t) { return double(t.rows()); }},
      {"fulcrum_table_bytes", "Row storage (values and slots) of a sparse table.", "gauge",
       [](const SparseTableStatus& t) { return double(t.bytes()); }},
      {"fulcrum_table_admitted_total", "Ids given a row by admission.", "counter",
       [](const SparseTableStatus& t) { return double(t.admitted()); }},
      {"fulcrum_table_refused_total", "Ids whose gradients were dropped for want of a row.",
       "counter", [](const SparseTableStatus& t) { return double(t.refused()); }},
      {"fulcrum_table_evicted_total", "Rows evicted (TTL or a full table).", "counter",
       [](const SparseTableStatus& t) { return double(t.evicted()); }},
      {"fulcrum_table_counter_bytes", "Memory of a table's admission counters.", "gauge",
       [](const SparseTableStatus& t) { return double(t.counter_bytes()); }},
  };
  if (!shard->SparseStatus().empty()) {
    for (const TableMetric& m : kTableMetrics) {
      metrics_->AddCallbackFamily(m.name, m.help, m.type, "table", [shard, read = m.read] {
        MetricsRegistry::LabeledValues values;
        for (const SparseTableStatus& t : shard->SparseStatus()) {
          values.emplace_back(t.name(), read(t));
        }
        return values;
      });
    }
  }
  parameter_service_ = std::make_unique<ParameterServiceImpl>(
      shard_.get(), serving_incarnation_, options_.max_pull_wait,
      static_cast<uint64_t>(options_.max_message_bytes), &service_metrics_);
}

absl::Status ShardServer::BuildShard() {
  const JobSpec& job = job_.spec();
  const ServerOptions& options = options_;
  FULCRUM_ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> optimizer, CreateOptimizer(job.optimizer()));
  ParameterStoreOptions store_options = options.store;
  store_options.seed = job.seed();
  store_options.shard_index = options.shard_index;
  store_options.num_shards = options.num_shards;
  FULCRUM_ASSIGN_OR_RETURN(std::unique_ptr<ParameterStore> store,
                           ParameterStore::Create(store_options, std::move(optimizer),
                                                  {job.tensors().begin(), job.tensors().end()}));
  std::vector<std::unique_ptr<SparseTable>> tables;
  for (const SparseTableSpec& spec : job.sparse_tables()) {
    if (spec.name().empty() || store->TensorSize(spec.name()).ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sparse table name '", spec.name(), "' is empty or names a dense tensor"));
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
    table_options.admission = spec.admission();
    table_options.eviction = spec.eviction();
    // Job::Complete resolved a table's own optimizer into a whole one.
    FULCRUM_ASSIGN_OR_RETURN(
        std::unique_ptr<Optimizer> table_optimizer,
        CreateOptimizer(spec.has_optimizer() ? spec.optimizer() : job.optimizer()));
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

absl::StatusOr<RegisterShardResponse> ShardServer::ReportToCoordinator(bool ready,
                                                                       absl::Duration timeout) {
  RegisterShardRequest request;
  request.set_shard_index(options_.shard_index);
  request.set_num_shards(options_.num_shards);
  request.set_address(advertise_address_.empty() ? options_.advertise_address : advertise_address_);
  {
    absl::MutexLock lock(&role_mu_);  // the role changes under it too
    request.set_incarnation(serving_incarnation_);
    request.set_backup(role_.is_backup());
  }
  request.set_process_incarnation(incarnation_);
  request.set_ready(ready);
  if (shard_ != nullptr) *request.mutable_status() = ShardGroup::Describe(*shard_);
  // A replicated coordinator: when the process called last is unreachable,
  // each other once (its backup may have taken over).
  FULCRUM_ASSIGN_OR_RETURN(RegisterShardResponse response, registry_->Register(request, timeout));
  if (response.coordinator_process_incarnation() != 0) {
    followed_coordinator_process_.store(response.coordinator_process_incarnation());
  }
  return response;
}

absl::Status ShardServer::JoinCoordinator() {
  registry_ = NewGrpcRegistryClient(options_.peer_security);
  FULCRUM_RETURN_IF_ERROR(registry_->Learn(absl::StrSplit(options_.coordinator_address, ',')));
  const absl::Time give_up = absl::Now() + options_.coordinator_wait;
  absl::StatusOr<RegisterShardResponse> joined;
  bool logged = false;
  while (true) {
    joined = ReportToCoordinator(/*ready=*/false, absl::Seconds(5));
    if (joined.ok() ||
        !(absl::IsUnavailable(joined.status()) || absl::IsDeadlineExceeded(joined.status()))) {
      break;
    }
    if (absl::Now() >= give_up) {
      return absl::UnavailableError(absl::StrCat("cannot reach the coordinator at ",
                                                 options_.coordinator_address,
                                                 " (--coordinator): ", joined.status().message()));
    }
    if (!logged) {
      FULCRUM_LOG(INFO) << "waiting for the coordinator at " << options_.coordinator_address;
      logged = true;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  if (!joined.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the coordinator at ", options_.coordinator_address, " refused shard ",
                     options_.shard_index, ": ", joined.status().message()));
  }
  // The coordinator's job, checked as any input from the network.
  absl::StatusOr<Job> job = Job::Complete(joined->job());
  if (!job.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the coordinator at ", options_.coordinator_address,
                     " gave a job this shard refuses: ", job.status().message()));
  }
  job_ = *std::move(job);
  FULCRUM_RETURN_IF_ERROR(BuildShard());
  shard_->EnableReplication(&replication_log_, options_.replication_timeout);
  if (joined->role() == BACKUP) {
    // The primary sends its state once this process serves.
    shard_->BecomeBackup();
    absl::MutexLock lock(&role_mu_);
    role_.BecameBackup();
    FULCRUM_LOG(INFO) << "shard " << options_.shard_index
                      << " has a live primary: this process is its backup";
    return absl::OkStatus();
  }
  if (joined->has_restore() && joined->restore().sequence() > 0) {
    const CheckpointManifest& manifest = joined->restore();
    if (checkpoints_ == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("the job resumes from checkpoint ", manifest.sequence(), "; shard ",
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
    absl::MutexLock lock(&checkpoint_mu_);
    part_writer_.reset();  // its marks were of the state before
  }
  return absl::OkStatus();
}

void ShardServer::RegisterServices(grpc::ServerBuilder* builder, int threads) {
  parameter_service_->Register(builder, threads);
  if (shard_control_service_) builder->RegisterService(shard_control_service_.get());
  if (replica_service_) builder->RegisterService(replica_service_.get());
}

std::string AdvertisedAddress(const ServerOptions& options, int bound_port) {
  if (!options.advertise_address.empty()) return options.advertise_address;
  std::string host = options.listen_address.substr(0, options.listen_address.rfind(':'));
  if (host == "0.0.0.0" || host == "[::]" || host.empty()) {
    char name[256] = "localhost";
    gethostname(name, sizeof(name) - 1);
    host = name;
  }
  return absl::StrCat(host, ":", bound_port);
}

void ShardServer::Start(int bound_port) {
  parameter_service_->Start();
  advertise_address_ = AdvertisedAddress(options_, bound_port);
  if (registry_ == nullptr) return;  // the coordinator's own shard
  {
    absl::MutexLock lock(&role_mu_);
    if (!role_.is_backup()) StartReplicatorLocked();
  }
  reporter_ = std::thread([this] { ReportLoop(); });
  watcher_ = std::thread([this] { WatchPrimary(); });
}

void ShardServer::StopReporting() {
  if (!stop_reporting_.HasBeenNotified()) stop_reporting_.Notify();
  if (reporter_.joinable()) reporter_.join();
  if (watcher_.joinable()) watcher_.join();
  std::unique_ptr<ShardReplicator> replicator;
  {
    absl::MutexLock lock(&role_mu_);
    replicator = std::move(replicator_);
  }
  replicator.reset();  // joins its thread
}

void ShardServer::StartReplicatorLocked() {
  ShardReplicatorOptions options;
  options.shard_index = options_.shard_index;
  options.num_shards = options_.num_shards;
  options.incarnation = serving_incarnation_;
  options.process_incarnation = incarnation_;
  options.security = options_.peer_security;
  options.drop_backup = [this](uint64_t process, absl::Time) -> absl::Status {
    DropBackupRequest request;
    request.set_shard_index(options_.shard_index);
    request.set_process_incarnation(incarnation_);
    request.set_backup_process_incarnation(process);
    return registry_->DropBackup(request, absl::Seconds(2));
  };
  options.step_down = [this] { shard_->StepDown(); };
  replicator_ = std::make_unique<ShardReplicator>(shard_.get(), &replication_log_, options);
}

absl::Status ShardServer::CallCoordinatorAt(const std::string& address, uint64_t process) {
  const uint64_t followed = followed_coordinator_process_.load();
  if (process != 0 && followed != 0 && followed != process) {
    return absl::FailedPreconditionError(
        "this shard reports to another coordinator process now (the backup took over)");
  }
  return CallCoordinator(address, options_.peer_security, kReachTimeout);
}

absl::Status ShardServer::WitnessesLetTakeOver(absl::Time silent_since,
                                               absl::Duration* ask_again_after) {
  const std::optional<CoordinatorReplica> state = replica_service_->coordinator();
  if (!state.has_value()) {
    return absl::FailedPreconditionError("this backup never received the job state");
  }
  if (state->coordinator_address().empty()) return absl::OkStatus();
  if (state->witness_addresses().empty()) {
    // A one-shard job: the workers decide. Asking them again costs nothing
    // (they come as their calls fail): soon.
    if (!workers_witness_) return absl::OkStatus();
    *ask_again_after = absl::Milliseconds(100);
    if (absl::Status workers = workers_witness_(silent_since, *state); !workers.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("there is no other shard to ask, and ", workers.message()));
    }
    return absl::OkStatus();
  }
  // Its own call to the coordinator, then the answer.
  const ReachPoll poll =
      PollWitnesses({state->witness_addresses().begin(), state->witness_addresses().end()},
                    state->coordinator_address(), state->coordinator_process_incarnation(),
                    options_.peer_security, 2 * kReachTimeout);
  return ShardsLetBackupTakeOver(poll, state->coordinator_address());
}

absl::Status ShardServer::CoordinatorPromotes() {
  PromoteBackupRequest request;
  request.set_shard_index(options_.shard_index);
  request.set_process_incarnation(incarnation_);
  request.set_address(advertise_address_);
  return registry_->PromoteBackup(request, absl::Seconds(2));
}

void ShardServer::WatchPrimary() {
  const absl::Duration tick = std::min(options_.failover_after / 5, absl::Milliseconds(100));
  while (!stop_reporting_.WaitForNotificationWithTimeout(tick)) {
    if (!replica_service_->installed()) continue;
    if (!role_.ShouldTakeOver(replica_service_->last_contact())) continue;
    TakeOver();
    if (took_over_coordinator_.HasBeenNotified()) return;  // its watch is the coordinator's now
  }
}

void ShardServer::TakeOver() {
  // The job state a coordinator's backup holds makes it the coordinator.
  const std::optional<CoordinatorReplica> job_state = replica_service_->coordinator();
  if (job_state.has_value()) took_over_coordinator_.Notify();  // no more reports to it
  // Every update the primary had acknowledged is applied before a worker
  // is served.
  replica_service_->Drain();
  {
    absl::MutexLock lock(&role_mu_);
    serving_incarnation_ = replica_service_->incarnation();
    parameter_service_->set_incarnation(serving_incarnation_);
    replication_log_.Reset();
    shard_->Promote();
    role_.TookOver();
    // Another shard keeps a backup of its own; the coordinator's shard is
    // replicated with the job state, by the coordinator.
    replicator_.reset();
    if (!job_state.has_value()) StartReplicatorLocked();
  }
  FULCRUM_LOG(WARNING) << "shard " << options_.shard_index << ": this backup took over at version "
                       << shard_->version().version;
  if (job_state.has_value() && on_coordinator_taken_over_) on_coordinator_taken_over_(*job_state);
}

void ShardServer::Rejoin(const absl::Status& refused) {
  FULCRUM_LOG(WARNING) << "shard " << options_.shard_index << ": " << refused.message()
                       << "; this process joins again as a backup";
  std::unique_ptr<ShardReplicator> replicator;
  {
    absl::MutexLock lock(&role_mu_);
    // It registers as a backup only from now on: its state may be stale.
    if (role_.Superseded()) {
      shard_->StepDown();
      replication_log_.StepDown();
    }
    replicator = std::move(replicator_);
  }
  replicator.reset();
  // Its state is stale until the primary sends its own.
  replica_service_->Forget();
  absl::StatusOr<RegisterShardResponse> joined =
      ReportToCoordinator(/*ready=*/false, absl::Seconds(5));
  if (!joined.ok()) {
    FULCRUM_LOG(WARNING) << "shard " << options_.shard_index
                         << ": cannot join again as a backup yet: " << joined.status();
    return;  // the next report is refused again, and this is tried again
  }
  shard_->BecomeBackup();
  replication_log_.Reset();
  {
    absl::MutexLock lock(&role_mu_);
    role_.BecameBackup();
  }
  FULCRUM_LOG(INFO) << "shard " << options_.shard_index << ": this process is its backup now";
}

void ShardServer::ShutdownShard() { shard_->Shutdown(); }

void ShardServer::FinishWaitingCalls() { parameter_service_->FinishWaitingCalls(); }

void ShardServer::ShutdownService() { parameter_service_->Shutdown(); }

bool ShardServer::WaitUntilJobOver(absl::Time deadline) {
  return job_over_.WaitForNotificationWithDeadline(deadline);
}

void ShardServer::ReportLoop() {
  bool warned = false;
  uint64_t recorded = 0;
  absl::Time over_since = absl::InfiniteFuture();
  // After a failed report the next comes sooner: a coordinator's backup that
  // took over needs every shard's report before workers may register again.
  absl::Duration next = options_.heartbeat_interval;
  do {
    if (took_over_coordinator_.HasBeenNotified()) return;  // it is the coordinator now
    absl::StatusOr<RegisterShardResponse> response = ReportToCoordinator(
        /*ready=*/true, std::max(absl::Seconds(1), options_.heartbeat_interval));
    next = response.ok() ? options_.heartbeat_interval
                         : std::min(options_.heartbeat_interval, absl::Milliseconds(100));
    if (over_since != absl::InfiniteFuture() &&
        (!response.ok() || absl::Now() - over_since > absl::Minutes(1)) &&
        !job_over_.HasBeenNotified()) {
      job_over_.Notify();  // the coordinator finished (and left)
    }
    if (response.ok() && over_since == absl::InfiniteFuture() &&
        (response->job_state() == FINISHED || response->job_state() == STOPPED)) {
      over_since = absl::Now();
    }
    if (response.ok()) {
      registry_
          ->Learn(
              {response->coordinator_addresses().begin(), response->coordinator_addresses().end()})
          .IgnoreError();  // one that cannot be dialled is not called
    }
    if (absl::IsFailedPrecondition(response.status()) && over_since == absl::InfiniteFuture()) {
      Rejoin(response.status());
      continue;
    }
    {
      absl::MutexLock lock(&role_mu_);
      if (response.ok() && replicator_ != nullptr) {
        replicator_->SetBackup(response->backup_address(), response->backup_process_incarnation());
      }
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
  } while (!stop_reporting_.WaitForNotificationWithTimeout(next));
}

absl::StatusOr<CheckpointManifest::ShardFile> ShardServer::WriteCheckpointPart(uint64_t sequence,
                                                                               uint64_t delta_of) {
  if (checkpoints_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", options_.shard_index, " has no --checkpoint_dir"));
  }
  absl::MutexLock lock(&checkpoint_mu_);
  if (part_writer_ == nullptr) {
    part_writer_ = std::make_unique<ShardPartWriter>(shard_.get(), checkpoints_,
                                                     options_.shard_index, options_.num_shards);
  }
  return part_writer_->Write(sequence, delta_of);
}

}  // namespace fulcrum
