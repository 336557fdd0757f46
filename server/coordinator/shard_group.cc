#include "server/coordinator/shard_group.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"

namespace fulcrum {

void ShardGroup::Rate::Update(absl::Time now, int64_t pushes_now, int64_t pulls_now) {
  if (since == absl::Time()) {
    since = now;
    pushes = pushes_now;
    pulls = pulls_now;
    return;
  }
  const double seconds = absl::ToDoubleSeconds(now - since);
  if (pushes_now < pushes || pulls_now < pulls) {  // the shard restarted
    *this = Rate();
    Update(now, pushes_now, pulls_now);
    return;
  }
  if (seconds < 1.0) return;  // keep a window of at least a second
  pushes_per_second = (pushes_now - pushes) / seconds;
  pulls_per_second = (pulls_now - pulls) / seconds;
  since = now;
  pushes = pushes_now;
  pulls = pulls_now;
}

ShardGroup::ShardGroup(const ShardGroupOptions& options, ParameterShard* local)
    : options_(options), local_(local) {
  absl::MutexLock lock(&mu_);
  remotes_.resize(std::max<uint32_t>(1, options_.num_shards));
  membership_.coordinator_incarnation = options_.incarnation;
  // The local shard follows this coordinator from the start (its ids are
  // this incarnation's).
  local_->ApplyMembership(membership_);
}

ShardGroup::~ShardGroup() { Stop(); }

void ShardGroup::Stop() {
  std::vector<std::thread> senders;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& remote : remotes_) {
      if (remote != nullptr && remote->sender.joinable()) {
        senders.push_back(std::move(remote->sender));
      }
    }
  }
  for (std::thread& t : senders) t.join();
}

void ShardGroup::ChangedLocked() {
  ++membership_.version;
  // In order: changes are made and applied under mu_.
  local_->ApplyMembership(membership_);
}

void ShardGroup::Start() {
  absl::MutexLock lock(&mu_);
  membership_.started = true;
  ChangedLocked();
}

void ShardGroup::AdmitWorker(uint64_t worker_id) {
  absl::MutexLock lock(&mu_);
  membership_.Admit(worker_id);
  ChangedLocked();
}

void ShardGroup::ActivateWorker(uint64_t worker_id, int64_t clock) {
  absl::MutexLock lock(&mu_);
  if (!membership_.admitted.contains(worker_id)) return;
  membership_.Activate(worker_id, clock);
  ChangedLocked();
}

void ShardGroup::DeactivateWorker(uint64_t worker_id) {
  absl::MutexLock lock(&mu_);
  membership_.Deactivate(worker_id);
  ChangedLocked();
}

void ShardGroup::RemoveWorker(uint64_t worker_id) {
  absl::MutexLock lock(&mu_);
  membership_.Remove(worker_id);
  ChangedLocked();
}

Membership ShardGroup::MembershipNow() const {
  absl::MutexLock lock(&mu_);
  return membership_.ToProto();
}

void ShardGroup::TakeOverMembership(const Membership& membership) {
  // Changes the dead coordinator sent to shards after its last replicated
  // state were at most one per call it answered since: far fewer than this.
  constexpr uint64_t kVersionsPassed = uint64_t{1} << 32;
  absl::MutexLock lock(&mu_);
  membership_ = WorkerMembership::FromProto(membership);
  membership_.coordinator_incarnation = options_.incarnation;
  membership_.version += kVersionsPassed;
  ChangedLocked();
}

int64_t ShardGroup::SlowestActiveClock() const {
  absl::MutexLock lock(&mu_);
  return membership_.SlowestActiveClock();
}

absl::Status ShardGroup::AwaitAcknowledged(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const uint64_t version = membership_.version;
  uint32_t behind_shard = 0;
  auto caught_up = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    if (stopping_) return true;
    for (uint32_t i = 1; i < remotes_.size(); ++i) {
      const Remote* r = remotes_[i].get();
      // Every remote registered before workers could: one missing has not
      // reported to this coordinator, which took over from another, yet.
      if (r == nullptr || (r->ready && r->acked < version)) {
        behind_shard = i;
        return false;
      }
    }
    return true;
  };
  if (mu_.AwaitWithTimeout(absl::Condition(&caught_up), timeout)) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("parameter-server shard ", behind_shard,
                                             " has not taken the membership change; retry"));
}

void ShardGroup::SetCommitted(const CheckpointManifest& manifest) {
  absl::MutexLock lock(&mu_);
  committed_ = manifest;
  committed_.clear_coordinator();  // shards need the file records only
}

absl::StatusOr<RegisterShardResponse> ShardGroup::RegisterShard(
    const RegisterShardRequest& request) {
  if (request.num_shards() != options_.num_shards) {
    return absl::FailedPreconditionError(absl::StrCat("this job has ", options_.num_shards,
                                                      " shards (--num_shards), the shard says ",
                                                      request.num_shards()));
  }
  if (request.shard_index() >= options_.num_shards) {
    return absl::FailedPreconditionError(absl::StrCat("shard index ", request.shard_index(),
                                                      " does not fit a job of ",
                                                      options_.num_shards, " shards"));
  }
  if (request.ready() && request.address().empty()) {
    return absl::InvalidArgumentError("a serving shard must say where workers reach it");
  }
  const uint32_t index = request.shard_index();
  const uint64_t process =
      request.process_incarnation() != 0 ? request.process_incarnation() : request.incarnation();
  if (index == 0) return CoordinatorBackupReport(request, process);
  if (request.backup() && request.ready()) return BackupReport(request, process);
  if (!request.ready()) {
    FULCRUM_ASSIGN_OR_RETURN(ReplicaRole role, AssignRole(index, process, request.address(),
                                                          /*backup_only=*/request.backup()));
    if (role == BACKUP) return BackupReport(request, process);
  }
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Remote>& remote = remotes_[index];
  if (remote == nullptr) {
    remote = std::make_unique<Remote>();
    FULCRUM_LOG(INFO) << "shard " << index << " registered at " << request.address();
  }
  if (!request.ready()) {
    remote->primary_process = process;
  } else if (remote->primary_process == 0) {
    remote->primary_process = process;  // serving since before this coordinator
  } else if (remote->primary_process != process) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this process no longer serves shard ", index, ": ",
        remote->failovers > 0 ? "its backup took over" : "another process took its place", " (at ",
        remote->status.address(), ")"));
  }
  if (remote->status.incarnation() != request.incarnation() && remote->status.incarnation() != 0) {
    FULCRUM_LOG(INFO) << "shard " << index << " restarted (process " << process << ")";
    remote->NewProcess();
    remote->rate = Rate();
  }
  if (!request.address().empty() && options_.connect &&
      (remote->connection == nullptr || remote->connection_address != request.address())) {
    remote->connection = options_.connect(request.address());
    remote->connection_address = request.address();
  }
  // A process registering before it serves has no address yet: workers
  // keep the one they have (a restarted shard's is usually the same). Listed
  // as "" they would take shard `index` for the coordinator's.
  const std::string address =
      request.address().empty() ? remote->status.address() : request.address();
  remote->status = request.status();
  remote->status.set_index(index);
  remote->status.set_address(address);
  remote->status.set_incarnation(request.incarnation());
  remote->ready = request.ready();
  remote->last_report = now;
  remote->rate.Update(now, request.status().pushes(), request.status().pulls());
  if (!remote->sender.joinable() && !stopping_) {
    remote->sender = std::thread([this, index] { SendLoop(index); });
  }

  RegisterShardResponse response;
  *response.mutable_job() = options_.job.spec();
  response.set_coordinator_incarnation(options_.incarnation);
  response.set_coordinator_process_incarnation(options_.process_incarnation);
  if (committed_.sequence() > 0) {
    *response.mutable_committed() = committed_;
    // A shard starting now restores the newest committed checkpoint.
    if (!request.ready()) *response.mutable_restore() = committed_;
  }
  response.set_role(PRIMARY);
  response.set_backup_address(remote->backup_address);
  response.set_backup_process_incarnation(remote->backup_process);
  AddCoordinatorAddressesLocked(&response);
  return response;
}

void ShardGroup::AddCoordinatorAddressesLocked(RegisterShardResponse* response) const {
  if (!coordinator_named_) return;
  for (const std::string* address : {&coordinator_address_, &coordinator_backup_address_}) {
    if (!address->empty()) response->add_coordinator_addresses(*address);
  }
}

absl::StatusOr<RegisterShardResponse> ShardGroup::CoordinatorBackupReport(
    const RegisterShardRequest& request, uint64_t process) {
  const absl::Time now = options_.clock->Now();
  RegisterShardResponse response;
  {
    absl::MutexLock lock(&mu_);
    if (coordinator_backup_process_ != process) {
      if (coordinator_backup_process_ != 0 &&
          now - coordinator_backup_last_report_ <= options_.report_timeout) {
        return absl::FailedPreconditionError(
            absl::StrCat("the coordinator has a backup already (at ", coordinator_backup_address_,
                         "); a third process for shard 0 is refused"));
      }
      if (request.ready()) {
        // Dropped (unreachable for a while): its state is stale.
        return absl::FailedPreconditionError(
            "this process is no longer the coordinator's backup (dropped); it joins again");
      }
      FULCRUM_LOG(INFO) << "the coordinator's backup registered at " << request.address();
    }
    coordinator_backup_address_ = request.address();
    coordinator_backup_process_ = process;
    coordinator_named_ = true;
    coordinator_backup_last_report_ = now;
    *response.mutable_job() = options_.job.spec();
    response.set_coordinator_incarnation(options_.incarnation);
    response.set_coordinator_process_incarnation(options_.process_incarnation);
    if (committed_.sequence() > 0) *response.mutable_committed() = committed_;
    response.set_role(BACKUP);
  }
  // Its address is known once it serves (its first report has none).
  if (options_.coordinator_backup && !request.address().empty()) {
    options_.coordinator_backup(request.address(), process);
  }
  return response;
}

bool ShardGroup::PrimaryAnswers(uint32_t index) {
  std::shared_ptr<RemoteShard> connection;
  WorkerMembership membership;
  {
    absl::MutexLock lock(&mu_);
    const Remote* remote = remotes_[index].get();
    if (remote == nullptr || remote->connection == nullptr) return false;
    connection = remote->connection;
    membership = membership_;
  }
  // Any call would do; the membership is one the shard takes harmlessly.
  return connection->SetMembership(membership, options_.probe_timeout).ok();
}

absl::StatusOr<ReplicaRole> ShardGroup::AssignRole(uint32_t index, uint64_t process,
                                                   const std::string& address, bool backup_only) {
  const absl::Status no_primary = absl::FailedPreconditionError(
      absl::StrCat("shard ", index, " has no live primary for this process to back up"));
  {
    absl::MutexLock lock(&mu_);
    const Remote* remote = remotes_[index].get();
    if (remote == nullptr || remote->primary_process == 0 || remote->primary_process == process) {
      if (backup_only) return no_primary;
      return PRIMARY;
    }
  }
  const bool primary_answers = PrimaryAnswers(index);
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  Remote* remote = remotes_[index].get();
  const bool backup_up =
      remote->backup_process != 0 && now - remote->backup_last_report <= options_.report_timeout;
  if (primary_answers) {
    if (backup_up && remote->backup_process != process) {
      return absl::FailedPreconditionError(
          absl::StrCat("shard ", index, " has a primary (", remote->status.address(),
                       ") and a backup (", remote->backup_address, ") already"));
    }
    remote->backup_address = address;  // "" until it serves and reports
    remote->backup_process = process;
    remote->backup_last_report = now;
    FULCRUM_LOG(INFO) << "shard " << index << ": a backup joins (primary at "
                      << remote->status.address() << ")";
    return BACKUP;
  }
  if (backup_up) {
    return absl::UnavailableError(absl::StrCat("shard ", index,
                                               "'s primary does not answer and its backup (",
                                               remote->backup_address, ") is taking over; retry"));
  }
  // A backup promoted moments ago may not answer yet (a new connection to
  // it, the operations it still applies): a process starting now must not
  // take its place with an older checkpoint.
  if (remote->failovers > 0 && now - remote->promoted_at < options_.report_timeout) {
    return absl::UnavailableError(absl::StrCat("shard ", index, "'s backup took over ",
                                               absl::FormatDuration(now - remote->promoted_at),
                                               " ago and does not answer yet; retry"));
  }
  if (backup_only) return no_primary;
  remote->backup_address.clear();
  remote->backup_process = 0;
  return PRIMARY;
}

absl::StatusOr<RegisterShardResponse> ShardGroup::BackupReport(const RegisterShardRequest& request,
                                                               uint64_t process) {
  const uint32_t index = request.shard_index();
  absl::MutexLock lock(&mu_);
  Remote* remote = remotes_[index].get();
  if (remote == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("shard ", index, "'s primary has not registered with this coordinator yet"));
  }
  // Not this shard's backup (any more, or not known to this coordinator,
  // which may have restarted): it registers again, and its primary sends it
  // its state afresh.
  if (remote->backup_process != process) {
    return absl::FailedPreconditionError(
        absl::StrCat("this process is no longer the backup of shard ", index,
                     " (its primary dropped it, or another took its place); restart it to join "
                     "again"));
  }
  if (request.ready()) remote->backup_address = request.address();
  remote->backup_last_report = options_.clock->Now();
  RegisterShardResponse response;
  *response.mutable_job() = options_.job.spec();
  response.set_coordinator_incarnation(options_.incarnation);
  response.set_coordinator_process_incarnation(options_.process_incarnation);
  response.set_role(BACKUP);
  AddCoordinatorAddressesLocked(&response);
  return response;
}

absl::Status ShardGroup::PromoteBackup(const PromoteBackupRequest& request) {
  const uint32_t index = request.shard_index();
  if (index == 0 || index >= options_.num_shards) {
    return absl::FailedPreconditionError(absl::StrCat("no shard ", index, " has backups"));
  }
  auto is_backup = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Remote* remote = remotes_[index].get();
    return remote != nullptr && remote->backup_process != 0 &&
           remote->backup_process == request.process_incarnation();
  };
  {
    absl::MutexLock lock(&mu_);
    if (!is_backup()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the caller is not shard ", index, "'s backup"));
    }
  }
  if (PrimaryAnswers(index)) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", index, "'s primary answers; it stays the primary"));
  }
  absl::MutexLock lock(&mu_);
  if (!is_backup()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the caller is not shard ", index, "'s backup any more"));
  }
  Remote* remote = remotes_[index].get();
  FULCRUM_LOG(WARNING) << "shard " << index << ": primary at " << remote->status.address()
                       << " does not answer; its backup at " << remote->backup_address
                       << " takes over";
  const std::string address =
      request.address().empty() ? remote->backup_address : request.address();
  remote->primary_process = request.process_incarnation();
  remote->status.set_address(address);
  if (options_.connect) remote->connection = options_.connect(address);
  remote->connection_address = address;
  remote->NewProcess();  // sent the membership afresh
  remote->ready = true;
  remote->last_report = options_.clock->Now();
  remote->backup_address.clear();
  remote->backup_process = 0;
  ++remote->failovers;
  remote->promoted_at = options_.clock->Now();
  return absl::OkStatus();
}

absl::Status ShardGroup::DropBackup(const DropBackupRequest& request) {
  const uint32_t index = request.shard_index();
  if (index == 0) {
    {
      absl::MutexLock lock(&mu_);
      if (coordinator_backup_process_ == 0 ||
          coordinator_backup_process_ != request.backup_process_incarnation()) {
        return absl::OkStatus();
      }
      FULCRUM_LOG(WARNING) << "the coordinator cannot reach its backup at "
                           << coordinator_backup_address_ << "; it goes on alone";
      coordinator_backup_address_.clear();
      coordinator_backup_process_ = 0;
    }
    if (options_.coordinator_backup) options_.coordinator_backup("", 0);
    return absl::OkStatus();
  }
  if (index >= options_.num_shards) {
    return absl::FailedPreconditionError(absl::StrCat("no shard ", index, " has backups"));
  }
  absl::MutexLock lock(&mu_);
  Remote* remote = remotes_[index].get();
  if (remote == nullptr || remote->primary_process != request.process_incarnation()) {
    return absl::FailedPreconditionError(absl::StrCat("the caller is not shard ", index,
                                                      "'s primary any more: its backup took over"));
  }
  if (remote->backup_process != 0 &&
      remote->backup_process == request.backup_process_incarnation()) {
    FULCRUM_LOG(WARNING) << "shard " << index << ": primary cannot reach its backup at "
                         << remote->backup_address << "; it goes on alone";
    remote->backup_address.clear();
    remote->backup_process = 0;
  }
  return absl::OkStatus();
}

void ShardGroup::SendLoop(uint32_t index) {
  while (true) {
    WorkerMembership membership;
    std::shared_ptr<RemoteShard> connection;
    uint64_t generation = 0;
    {
      absl::MutexLock lock(&mu_);
      Remote* remote = remotes_[index].get();
      auto behind = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || (remote->ready && remote->connection != nullptr &&
                             remote->acked < membership_.version);
      };
      mu_.AwaitWithTimeout(absl::Condition(&behind), absl::Seconds(1));
      if (stopping_) return;
      if (!behind()) continue;
      membership = membership_;
      connection = remote->connection;
      generation = remote->process_generation;
    }
    absl::StatusOr<uint64_t> acked = connection->SetMembership(membership, options_.rpc_timeout);
    absl::MutexLock lock(&mu_);
    Remote* remote = remotes_[index].get();
    if (acked.ok()) {
      // Unless another process took the shard over meanwhile (a restart, a
      // promoted backup): a primary that acked and then died kept its
      // successor from ever being sent that membership.
      if (remote->process_generation == generation) {
        remote->acked = std::max(remote->acked, *acked);
      }
    } else {
      FULCRUM_LOG(WARNING) << "membership to shard " << index << " failed: " << acked.status()
                           << "; retrying";
      // Back off a little so a dead shard does not spin the thread.
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(200));
      if (stopping_) return;
    }
  }
}

absl::Status ShardGroup::CheckAllReady() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> missing;
  for (uint32_t i = 1; i < options_.num_shards; ++i) {
    if (remotes_[i] == nullptr || !remotes_[i]->ready) missing.push_back(absl::StrCat(i));
  }
  if (missing.empty()) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat("waiting for parameter-server shard(s) ", absl::StrJoin(missing, ", "), " of ",
                   options_.num_shards, " to register with the coordinator"));
}

bool ShardGroup::WaitUntilReportedSince(absl::Time since, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto reported = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    for (uint32_t i = 1; i < remotes_.size(); ++i) {
      if (remotes_[i] != nullptr && remotes_[i]->last_report <= since) return false;
    }
    return true;
  };
  return mu_.AwaitWithDeadline(absl::Condition(&reported), deadline);
}

CheckpointManifest ShardGroup::committed() const {
  absl::MutexLock lock(&mu_);
  return committed_;
}

void ShardGroup::NameCoordinator(const std::string& address, bool now) {
  absl::MutexLock lock(&mu_);
  coordinator_address_ = address;
  coordinator_named_ = coordinator_named_ || now;
}

std::string ShardGroup::coordinator_address() const {
  absl::MutexLock lock(&mu_);
  return coordinator_address_;
}

std::vector<std::string> ShardGroup::OtherShardAddresses() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (uint32_t i = 1; i < remotes_.size(); ++i) {
    if (remotes_[i] == nullptr) continue;
    const Remote& remote = *remotes_[i];
    if (!remote.status.address().empty()) out.push_back(remote.status.address());
    if (!remote.backup_address.empty()) out.push_back(remote.backup_address);
  }
  return out;
}

std::vector<ShardPair> ShardGroup::Pairs() const {
  absl::MutexLock lock(&mu_);
  std::vector<ShardPair> out;
  for (uint32_t i = 1; i < remotes_.size(); ++i) {
    if (remotes_[i] == nullptr || remotes_[i]->primary_process == 0) continue;
    const Remote& remote = *remotes_[i];
    ShardPair& pair = out.emplace_back();
    pair.set_index(i);
    pair.set_primary_address(remote.status.address());
    pair.set_primary_process_incarnation(remote.primary_process);
    pair.set_backup_address(remote.backup_address);
    pair.set_backup_process_incarnation(remote.backup_process);
  }
  return out;
}

void ShardGroup::TakeOverPairs(const std::vector<ShardPair>& pairs) {
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  for (const ShardPair& pair : pairs) {
    if (pair.index() == 0 || pair.index() >= remotes_.size() || remotes_[pair.index()] != nullptr) {
      continue;
    }
    auto remote = std::make_unique<Remote>();
    remote->primary_process = pair.primary_process_incarnation();
    remote->status.set_index(pair.index());
    remote->status.set_address(pair.primary_address());
    remote->backup_address = pair.backup_address();
    remote->backup_process = pair.backup_process_incarnation();
    remote->backup_last_report = now;
    // Not ready (nor connected) until the primary reports here.
    remotes_[pair.index()] = std::move(remote);
  }
}

std::vector<std::string> ShardGroup::WorkerAddresses() const {
  absl::MutexLock lock(&mu_);
  if (options_.num_shards <= 1 && !coordinator_named_) return {};
  std::vector<std::string> out(options_.num_shards);
  if (coordinator_named_) out[0] = coordinator_address_;
  for (uint32_t i = 1; i < options_.num_shards; ++i) {
    if (remotes_[i] != nullptr) out[i] = remotes_[i]->status.address();
  }
  return out;
}

std::string ShardGroup::coordinator_backup_address() const {
  absl::MutexLock lock(&mu_);
  return coordinator_backup_address_;
}

std::vector<std::string> ShardGroup::BackupAddresses() const {
  absl::MutexLock lock(&mu_);
  if (options_.num_shards <= 1 && !coordinator_named_) return {};
  std::vector<std::string> out(options_.num_shards);
  out[0] = coordinator_backup_address_;
  for (uint32_t i = 1; i < options_.num_shards; ++i) {
    if (remotes_[i] != nullptr) out[i] = remotes_[i]->backup_address;
  }
  return out;
}

ShardStatus ShardGroup::Describe(const ParameterShard& shard) {
  ShardStatus s;
  s.set_index(shard.role().index);
  const ParameterStore& store = shard.store();
  s.set_tensors(store.TensorNames().size());
  s.set_elements(store.TotalElements());
  uint64_t bytes = store.TotalElements() * 4 * (1 + store.optimizer().num_slots());
  uint64_t rows = 0;
  const std::vector<SparseTableStatus> tables = shard.SparseStatus();
  for (const SparseTableStatus& t : tables) {
    rows += t.rows();
    bytes += t.bytes();
  }
  s.set_tables(tables.size());
  s.set_rows(rows);
  s.set_bytes(bytes);
  s.set_version(shard.version().version);
  const ShardStats stats = shard.stats();
  s.set_pushes(stats.pushes);
  s.set_pulls(stats.pulls);
  return s;
}

std::vector<ShardStatus> ShardGroup::Status() const {
  ShardStatus own = Describe(*local_);
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  local_rate_.Update(now, own.pushes(), own.pulls());
  own.set_up(true);
  own.set_pushes_per_second(local_rate_.pushes_per_second);
  own.set_pulls_per_second(local_rate_.pulls_per_second);
  own.set_address(coordinator_address_);
  own.set_backup_address(coordinator_backup_address_);
  own.set_backup_up(coordinator_backup_process_ != 0 &&
                    now - coordinator_backup_last_report_ <= options_.report_timeout);
  std::vector<ShardStatus> out{own};
  for (uint32_t i = 1; i < options_.num_shards; ++i) {
    ShardStatus s;
    s.set_index(i);
    if (remotes_[i] != nullptr) {
      const Remote& r = *remotes_[i];
      s = r.status;
      const absl::Duration silence = now - r.last_report;
      s.set_seconds_since_report(absl::ToDoubleSeconds(silence));
      s.set_up(r.ready && silence <= options_.report_timeout);
      s.set_pushes_per_second(r.rate.pushes_per_second);
      s.set_pulls_per_second(r.rate.pulls_per_second);
      s.set_backup_address(r.backup_address);
      s.set_backup_up(r.backup_process != 0 &&
                      now - r.backup_last_report <= options_.report_timeout);
      s.set_failovers(r.failovers);
    }
    out.push_back(s);
  }
  return out;
}

absl::StatusOr<std::vector<std::shared_ptr<RemoteShard>>> ShardGroup::ReadyRemotes() const {
  const uint32_t n = options_.num_shards;
  std::vector<std::shared_ptr<RemoteShard>> connections(n);
  absl::MutexLock lock(&mu_);
  for (uint32_t i = 1; i < n; ++i) {
    if (remotes_[i] == nullptr || !remotes_[i]->ready || remotes_[i]->connection == nullptr) {
      return absl::UnavailableError(absl::StrCat("shard ", i, " is not registered"));
    }
    connections[i] = remotes_[i]->connection;
  }
  return connections;
}

}  // namespace fulcrum
