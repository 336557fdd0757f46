#include "server/shard/parameter_shard.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/payload.h"
#include "common/replica.h"
#include "common/shard_map.h"

namespace fulcrum {
namespace {

// Holds `mu` on its reader side for a scope, or nothing when `mu` is null.
class ABSL_SCOPED_LOCKABLE ReaderLockIf {
 public:
  explicit ReaderLockIf(absl::Mutex* mu) ABSL_NO_THREAD_SAFETY_ANALYSIS : mu_(mu) {
    if (mu_ != nullptr) mu_->ReaderLock();
  }
  ~ReaderLockIf() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (mu_ != nullptr) mu_->ReaderUnlock();
  }
  ReaderLockIf(const ReaderLockIf&) = delete;
  ReaderLockIf& operator=(const ReaderLockIf&) = delete;

 private:
  absl::Mutex* const mu_;
};

}  // namespace

std::vector<std::pair<uint64_t, std::vector<uint64_t>>> ParameterShard::RecentRequests::Export()
    const {
  std::vector<std::pair<uint64_t, std::vector<uint64_t>>> out;
  for (const auto& [worker, ids] : ids_)
    out.emplace_back(worker, std::vector(ids.begin(), ids.end()));
  return out;
}

bool ParameterShard::RecentRequests::Contains(uint64_t worker_id, uint64_t request_id) const {
  auto it = ids_.find(worker_id);
  return it != ids_.end() &&
         std::find(it->second.begin(), it->second.end(), request_id) != it->second.end();
}

void ParameterShard::RecentRequests::Insert(uint64_t worker_id, uint64_t request_id) {
  std::deque<uint64_t>& ids = ids_[worker_id];
  ids.push_back(request_id);
  if (ids.size() > kPerWorker) ids.pop_front();
}

ParameterShard::ParameterShard(std::unique_ptr<ParameterStore> store, ConsistencyMode mode,
                               int64_t staleness, std::vector<std::unique_ptr<SparseTable>> tables,
                               const ShardRole& role, const Clock* clock)
    : store_(std::move(store)),
      // Called under mu_ when a sync round completes: a primary's backup
      // closes it at the same point of the operations.
      policy_(ConsistencyPolicy::Create(mode, staleness,
                                        [this](float scale) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                          store_->ApplyAccumulated(scale);
                                          ApplySparseSums(scale);
                                          if (serving_ == ShardServing::kServing) {
                                            const uint64_t sequence = updates_->Reserve();
                                            updates_->PutRoundClosed(sequence, policy_->Version());
                                            if (sequence != 0) last_close_sequence_ = sequence;
                                            // Rows change only here: evict
                                            // right after the close.
                                            if (has_lifecycle_) EvictDueRowsLocked();
                                          }
                                        })),
      role_(role),
      clock_(clock) {
  for (auto& table : tables) {
    const std::string name = table->name();
    sparse_sums_[name] = std::make_unique<SparseSums>();
    has_lifecycle_ = has_lifecycle_ || table->has_lifecycle();
    tables_[name] = std::move(table);
  }
  // SYNC evicts at a round's close; the others from a thread of their own.
  if (has_lifecycle_ && !policy_->SumsRounds()) evictor_ = std::thread([this] { EvictorLoop(); });
}

ParameterShard::~ParameterShard() {
  {
    absl::MutexLock lock(&evictor_mu_);
    evictor_stop_ = true;
  }
  if (evictor_.joinable()) evictor_.join();
}

void ParameterShard::EvictorLoop() {
  while (true) {
    {
      absl::MutexLock lock(&evictor_mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(evictor_mu_) {
        return eviction_wanted_ || evictor_stop_;
      };
      evictor_mu_.AwaitWithTimeout(absl::Condition(&woken), absl::Seconds(1));
      if (evictor_stop_) return;
      eviction_wanted_ = false;
    }
    EvictDueRows();
  }
}

absl::Status ParameterShard::EvictNow() {
  EvictDueRows();
  // This pass's evictions, and those of a pass the evictor had under way.
  return updates_->AwaitSafe(last_eviction_sequence_.load(), absl::Now() + replication_timeout_);
}

SparseTable* ParameterShard::sparse_table(const std::string& name) const {
  auto it = tables_.find(name);
  return it == tables_.end() ? nullptr : it->second.get();
}

std::vector<SparseTableStatus> ParameterShard::SparseStatus() const {
  std::vector<SparseTableStatus> out;
  for (const auto& [name, table] : tables_) {
    SparseTableStatus s;
    s.set_name(name);
    s.set_dim(table->dim());
    s.set_rows(table->rows());
    s.set_max_rows(table->max_rows());
    s.set_bytes(table->row_bytes());
    // Row storage plus its key, age and index slot.
    s.set_bytes_per_row(table->rows() == 0 ? 0
                                           : double(table->row_bytes()) / table->rows() +
                                                 SparseTable::RowOverheadBytes());
    const SparseTableCounters counters = table->counters();
    s.set_admitted(counters.admitted);
    s.set_refused(counters.refused);
    s.set_evicted(counters.evicted);
    s.set_pending_ids(table->pending_ids());
    s.set_counter_bytes(table->counter_bytes());
    s.set_bloom_false_positive_rate(table->bloom_false_positive_rate());
    out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const SparseTableStatus& a, const SparseTableStatus& b) {
    return a.name() < b.name();
  });
  return out;
}

void ParameterShard::AccumulateSparse(absl::Span<const SparseGradient> sparse) {
  for (const SparseGradient& g : sparse) {
    const uint32_t dim = tables_.at(g.table)->dim();
    SparseSums& sums = *sparse_sums_.at(g.table);
    absl::MutexLock lock(&sums.mu);
    for (size_t i = 0; i < g.keys.size(); ++i) {
      std::vector<float>& row = sums.sums[g.keys[i]];
      if (row.empty()) row.assign(dim, 0.0f);
      for (uint32_t d = 0; d < dim; ++d) row[d] += g.values[i * dim + d];
    }
  }
}

void ParameterShard::ApplySparseSums(float scale) {
  for (auto& [name, sums_ptr] : sparse_sums_) {
    SparseSums& sums = *sums_ptr;
    absl::MutexLock lock(&sums.mu);
    if (sums.sums.empty()) continue;
    SparseTable& table = *tables_.at(name);
    std::vector<uint64_t> keys;
    std::vector<float> values;
    keys.reserve(sums.sums.size());
    values.reserve(sums.sums.size() * table.dim());
    for (auto& [key, row] : sums.sums) {
      keys.push_back(key);
      for (float v : row) values.push_back(v * scale);
    }
    // The round draws probability admission: the same on the backup.
    SparsePushContext context;
    context.draw = static_cast<uint64_t>(policy_->Version());
    context.mirror = serving_ != ShardServing::kServing;
    absl::Status s = table.Push(keys, values, context);
    // Room was checked when the gradients arrived; only a concurrent creator
    // of the last rows can make this fail.
    if (!s.ok()) FULCRUM_LOG(ERROR) << "applying round of " << name << ": " << s;
    sums.sums.clear();
  }
}

bool ParameterShard::started() const {
  absl::ReaderMutexLock lock(&mu_);
  return membership_.started;
}

void ParameterShard::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
}

uint64_t ParameterShard::ApplyMembership(const WorkerMembership& membership) {
  absl::MutexLock lock(&mu_);
  // A backup follows its primary's membership, in the primary's order.
  if (serving_ == ShardServing::kBackup) return membership_.version;
  if (ApplyMembershipLocked(membership)) {
    updates_->PutMembership(updates_->Reserve(), membership_);
  }
  return membership_.version;
}

bool ParameterShard::ApplyMembershipLocked(const WorkerMembership& membership) {
  has_membership_ = true;
  const bool renumbered = membership.coordinator_incarnation != membership_.coordinator_incarnation;
  if (!renumbered && membership.version <= membership_.version) return false;
  // A new coordinator numbers workers from scratch: what this shard
  // remembers of ids (retried request ids, who pushed the round) belongs to
  // other workers now.
  if (renumbered) recent_requests_ = RecentRequests();
  const bool started = membership_.started;
  membership_ = membership;
  membership_.started = started || membership.started;  // a job never un-starts
  policy_->MembershipChangedLocked(membership_, renumbered,
                                   /*decide=*/serving_ != ShardServing::kBackup);
  return true;
}

absl::Status ParameterShard::CheckServingLocked() const {
  switch (serving_) {
    case ShardServing::kServing:
      return absl::OkStatus();
    case ShardServing::kBackup:
      return absl::UnavailableError(absl::StrCat(
          kBackupNotServing, "this process is the backup of shard ", role_.index,
          "; it serves workers only once it takes over from the primary: retry at the primary"));
    case ShardServing::kReplaced:
      return absl::UnavailableError(absl::StrCat("this process no longer serves shard ",
                                                 role_.index,
                                                 ": its backup took over; retry there"));
  }
  return absl::InternalError("unknown serving state");
}

absl::Status ParameterShard::CheckMemberLocked(const WorkerIdentity& worker, bool active,
                                               absl::Time deadline) {
  if (serving_ == ShardServing::kBackup) refused_while_backup_.Note(worker.id);
  auto known = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return shutting_down_ ||
           (membership_.Admits(worker) &&
            (!active || (membership_.started && membership_.IsActive(worker.id))));
  };
  if (!known() && role_.membership_grace > absl::ZeroDuration()) {
    ++waiting_for_membership_;
    mu_.AwaitWithDeadline(absl::Condition(&known),
                          std::min(deadline, absl::Now() + role_.membership_grace));
    --waiting_for_membership_;
  }
  if (shutting_down_) return absl::UnavailableError("parameter server is shutting down");
  FULCRUM_RETURN_IF_ERROR(CheckServingLocked());
  if (!has_membership_) {
    // A shard that has not heard from the coordinator yet (just started, or
    // the coordinator cannot reach it): the worker is not stale, this shard
    // is. It retries; re-registering would not help.
    return absl::UnavailableError(
        "this parameter-server shard has not received the job's membership from the "
        "coordinator yet; retry");
  }
  if (worker.coordinator_incarnation != membership_.coordinator_incarnation) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s is not known here: this shard follows coordinator incarnation %016x "
                        "(the coordinator restarted since the worker registered); register again",
                        DescribeWorker(worker), membership_.coordinator_incarnation));
  }
  if (!membership_.Admits(worker)) {
    return absl::FailedPreconditionError(
        absl::StrCat("unknown worker id ", worker.id, "; register with the coordinator"));
  }
  if (active && !membership_.started) {
    return absl::FailedPreconditionError("job has not started yet");
  }
  if (active && !membership_.IsActive(worker.id)) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker.id, " holds no training lease; acquire a partition"));
  }
  return absl::OkStatus();
}

bool ParameterShard::ReadyFor(const WorkerIdentity& worker, bool push, int64_t clock) const {
  absl::ReaderMutexLock lock(&mu_);
  if (shutting_down_ || serving_ != ShardServing::kServing) return true;  // fails at once
  if (!membership_.Admits(worker) || !membership_.started) return false;
  if (push && !membership_.IsActive(worker.id)) return false;
  if (clock < 0 || policy_->PullReadyLocked(clock, membership_)) return true;
  // After its own push (`push`) a worker's pull no longer waits on itself.
  return !push && policy_->PullWaitsOnPullerLocked(worker.id, clock, membership_);
}

absl::Status ParameterShard::CheckKeysOwned(const std::string& table,
                                            absl::Span<const uint64_t> keys) const {
  if (role_.count <= 1) return absl::OkStatus();
  const ShardMap map(role_.count);
  for (uint64_t key : keys) {
    const uint32_t owner = map.ShardOfKey(key);
    if (owner != role_.index) {
      return absl::InvalidArgumentError(absl::StrCat("key ", key, " of sparse table ", table,
                                                     " is on shard ", owner, ", not shard ",
                                                     role_.index, " of ", role_.count));
    }
  }
  return absl::OkStatus();
}

absl::Status ParameterShard::ValidateAll(const std::vector<SliceGradient>& gradients,
                                         absl::Span<const SparseGradient> sparse) const {
  for (const SparseGradient& g : sparse) {
    SparseTable* table = sparse_table(g.table);
    if (table == nullptr) {
      return absl::NotFoundError(absl::StrCat("unknown sparse table '", g.table, "'"));
    }
    if (g.values.size() != g.keys.size() * table->dim()) {
      return absl::InvalidArgumentError(absl::StrCat("sparse table ", g.table, ": ",
                                                     g.values.size(), " gradient values for ",
                                                     g.keys.size(), " keys of dim ", table->dim()));
    }
    FULCRUM_RETURN_IF_ERROR(CheckKeysOwned(g.table, g.keys));
    if (!table->HasRoomFor(g.keys)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("sparse table ", g.table, " is full (", table->max_rows(),
                       " rows, --max_sparse_rows); nothing was applied"));
    }
  }
  for (const SliceGradient& g : gradients) {
    FULCRUM_RETURN_IF_ERROR(store_->Validate(g.slice));
    if (g.values.size() != g.slice.length) {
      return absl::InvalidArgumentError(absl::StrCat("gradient for ", g.slice.tensor, " has ",
                                                     g.values.size(), " elements, slice has ",
                                                     g.slice.length));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ShardVersion> ParameterShard::Pull(const WorkerIdentity& worker, int64_t clock,
                                                  const std::vector<SliceRef>& slices,
                                                  absl::Span<const absl::Span<float>> out,
                                                  absl::Time deadline,
                                                  absl::Span<const SparseRead> sparse) {
  for (const SparseRead& r : sparse) {
    SparseTable* table = sparse_table(r.table);
    if (table == nullptr) {
      return absl::NotFoundError(absl::StrCat("unknown sparse table '", r.table, "'"));
    }
    if (r.out.size() != r.keys.size() * table->dim()) {
      return absl::InternalError("sparse output sized unlike its keys");
    }
    FULCRUM_RETURN_IF_ERROR(CheckKeysOwned(r.table, r.keys));
  }
  if (out.size() != slices.size()) {
    return absl::InternalError("Pull needs one output span per slice");
  }
  double wait_seconds = 0;
  for (size_t i = 0; i < slices.size(); ++i) {
    FULCRUM_RETURN_IF_ERROR(store_->Validate(slices[i]));
    if (out[i].size() != slices[i].length) {
      return absl::InternalError("output span differs from slice length");
    }
  }

  {
    absl::MutexLock lock(&mu_);
    FULCRUM_RETURN_IF_ERROR(CheckMemberLocked(worker, /*active=*/false, deadline));
    auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return shutting_down_ || (membership_.started &&
                                (clock < 0 || policy_->PullReadyLocked(clock, membership_) ||
                                 policy_->PullWaitsOnPullerLocked(worker.id, clock, membership_)));
    };
    const absl::Time wait_start = clock_->Now();
    ++waiting_pulls_;  // seen by others only while the wait releases mu_
    const bool satisfied = mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    --waiting_pulls_;
    wait_seconds = absl::ToDoubleSeconds(clock_->Now() - wait_start);
    pull_wait_seconds_ += wait_seconds;
    if (shutting_down_) return absl::UnavailableError("parameter server is shutting down");
    if (!satisfied) {
      if (!membership_.started) {
        return absl::DeadlineExceededError(
            "job has not started yet: waiting for its workers to register");
      }
      return absl::DeadlineExceededError(policy_->PullNotReadyLocked(clock, membership_));
    }
  }

  ShardVersion version;
  uint64_t close_sequence = 0;
  {
    // Summed rounds apply under mu_: reading on its reader side sees whole
    // rounds. Otherwise reads go on beside pushes (each stripe consistent).
    ReaderLockIf lock(policy_->SumsRounds() ? &mu_ : nullptr);
    for (size_t i = 0; i < slices.size(); ++i) {
      FULCRUM_RETURN_IF_ERROR(store_->Read(slices[i], out[i]));
    }
    for (const SparseRead& r : sparse) {
      FULCRUM_RETURN_IF_ERROR(tables_.at(r.table)->Pull(r.keys, r.out, r.create));
    }
    version.version = version.round = policy_->Version();
    if (policy_->SumsRounds()) close_sequence = last_close_sequence_;
  }
  // The rounds read are closed on the backup too before the worker has them
  // (at once without a backup, or with every close acknowledged already).
  if (close_sequence != 0) {
    FULCRUM_RETURN_IF_ERROR(
        updates_->AwaitSafe(close_sequence, absl::Now() + replication_timeout_));
  }
  version.wait_seconds = wait_seconds;
  pulls_.fetch_add(1, std::memory_order_relaxed);
  return version;
}

absl::StatusOr<ShardVersion> ParameterShard::Push(const WorkerIdentity& worker, uint64_t request_id,
                                                  int64_t clock,
                                                  const std::vector<SliceGradient>& gradients,
                                                  absl::Span<const SparseGradient> sparse) {
  return PushInternal(worker, request_id, clock, gradients, sparse, /*replayed=*/false);
}

absl::StatusOr<ShardVersion> ParameterShard::PushInternal(
    const WorkerIdentity& worker, uint64_t request_id, int64_t clock,
    const std::vector<SliceGradient>& gradients, absl::Span<const SparseGradient> sparse,
    bool replayed) {
  absl::Status valid = ValidateAll(gradients, sparse);
  if (absl::IsResourceExhausted(valid) && has_lifecycle_ && !replayed) {
    // A table that evicts when full, past its slack (pushes outran the
    // evictor): make room now rather than refuse.
    EvictDueRows();
    valid = ValidateAll(gradients, sparse);
  }
  FULCRUM_RETURN_IF_ERROR(valid);
  // With a backup, the operation whose replication answers this push: its
  // own, or for a push answered without applying it, the newest (its first
  // copy's is at most that).
  uint64_t sequence = 0;
  std::optional<ShardVersion> duplicate;  // a copy of a push already taken
  {
    absl::MutexLock lock(&mu_);
    if (!replayed) {
      FULCRUM_RETURN_IF_ERROR(
          CheckMemberLocked(worker, /*active=*/true, absl::Now() + role_.membership_grace));
    }
    absl::Status admitted = absl::OkStatus();
    if (request_id != 0 && recent_requests_.Contains(worker.id, request_id)) {
      admitted = absl::AlreadyExistsError("a retried push");
    } else {
      // SYNC: ALREADY_EXISTS for the worker's round again (it redid a step
      // after another shard restarted): its first push stands.
      admitted = policy_->AdmitPushLocked(worker.id, clock);
    }
    if (absl::IsAlreadyExists(admitted)) {
      duplicate_pushes_.fetch_add(1, std::memory_order_relaxed);
      duplicate.emplace();
      duplicate->version = duplicate->round = policy_->Version();
      if (!replayed) sequence = updates_->last_reserved();
    } else if (!admitted.ok()) {
      return admitted;
    } else {
      if (request_id != 0) recent_requests_.Insert(worker.id, request_id);
      // SYNC's in-flight pushes hold the round open, which StartReplica
      // waits out; others are counted.
      if (!policy_->SumsRounds()) unapplied_pushes_.fetch_add(1, std::memory_order_relaxed);
      if (!replayed) sequence = updates_->Reserve();
    }
  }
  if (duplicate.has_value()) {
    FULCRUM_RETURN_IF_ERROR(updates_->AwaitSafe(sequence, absl::Now() + replication_timeout_));
    return *duplicate;
  }
  if (sequence != 0) {
    updates_->PutPush(sequence, AdmittedPush{worker, request_id, clock, gradients, sparse});
  }

  ShardVersion v;
  if (policy_->SumsRounds()) {
    // Sum outside the round lock so workers add in parallel (stripe locks).
    // Validated above: Accumulate cannot fail.
    for (const SliceGradient& g : gradients) store_->Accumulate(g.slice, g.values).IgnoreError();
    AccumulateSparse(sparse);
    absl::MutexLock lock(&mu_);
    pushes_.fetch_add(1, std::memory_order_relaxed);
    policy_->PushSummedLocked(membership_, /*decide=*/!replayed);
    v.version = v.round = policy_->Version();
    // The round this push closed, if it did (its close is the newest
    // operation: reserved under mu_, held here), reaches the backup before
    // the worker hears of it.
    if (sequence != 0 && v.round > clock) sequence = updates_->last_reserved();
  } else {
    // Sparse first: a table that filled up since the check fails the push
    // before any dense part is applied.
    absl::Status applied = absl::OkStatus();
    // A push's own draw for probability admission: the same on a retry and
    // on the backup replaying it.
    SparsePushContext context;
    context.draw = Mix64(worker.id ^ Mix64(request_id ^ Mix64(static_cast<uint64_t>(clock))));
    context.mirror = replayed;
    for (const SparseGradient& g : sparse) {
      applied = tables_.at(g.table)->Push(g.keys, g.values, context);
      if (!applied.ok()) break;
    }
    if (applied.ok()) {
      // Validated above: ApplyGradient cannot fail.
      for (const SliceGradient& g : gradients) {
        store_->ApplyGradient(g.slice, g.values).IgnoreError();
      }
      pushes_.fetch_add(1, std::memory_order_relaxed);
      v.version = v.round = policy_->PushApplied();
    }
    unapplied_pushes_.fetch_sub(1, std::memory_order_release);
    if (!applied.ok()) return applied;
    if (has_lifecycle_ && !replayed) {
      bool due = false;
      for (const SparseGradient& g : sparse) due = due || tables_.at(g.table)->EvictionDue();
      if (due) {
        absl::MutexLock lock(&evictor_mu_);
        eviction_wanted_ = true;
      }
    }
  }
  FULCRUM_RETURN_IF_ERROR(updates_->AwaitSafe(sequence, absl::Now() + replication_timeout_));
  if (!replayed && log_first_push_.exchange(false)) {
    FULCRUM_LOG(INFO) << "shard " << role_.index
                      << ": first update applied since taking over (version " << v.version << ")";
  }
  return v;
}

uint64_t ParameterShard::EvictDueRows() {
  absl::MutexLock pass(&eviction_pass_mu_);
  {
    absl::ReaderMutexLock lock(&mu_);
    if (serving_ != ShardServing::kServing || shutting_down_) return 0;
  }
  // Chosen while pushes go on (the scan of the table), ...
  std::vector<std::pair<std::string, std::vector<SparseTable::Victim>>> chosen;
  for (const auto& [name, table] : tables_) {
    if (table->EvictionDue()) chosen.emplace_back(name, table->ChooseEvictions());
  }
  // ... removed in batches with pushes held off: holding mu_ admits none,
  // and those admitted finish applying (without mu_, a moment each), so
  // each batch sits between two pushes of the replicated order. A batch
  // holds pushes off for a few milliseconds.
  constexpr size_t kBatch = 8192;
  uint64_t sequence = 0;
  for (const auto& [name, victims] : chosen) {
    for (size_t from = 0; from < victims.size(); from += kBatch) {
      absl::MutexLock lock(&mu_);
      if (serving_ != ShardServing::kServing || shutting_down_) return sequence;
      while (unapplied_pushes_.load(std::memory_order_acquire) > 0) {
        absl::SleepFor(absl::Microseconds(20));
      }
      std::vector<uint64_t> keys = tables_.at(name)->EvictChosen(
          absl::MakeConstSpan(victims).subspan(from, std::min(kBatch, victims.size() - from)));
      if (keys.empty()) continue;
      const TableEviction evicted[] = {TableEviction{name, std::move(keys)}};
      sequence = RecordEvictionsLocked(evicted);
    }
  }
  return sequence;
}

uint64_t ParameterShard::EvictDueRowsLocked() {
  std::vector<TableEviction> evicted;
  for (const auto& [name, table] : tables_) {
    if (!table->EvictionDue()) continue;
    std::vector<uint64_t> keys = table->EvictDue();
    if (!keys.empty()) evicted.push_back(TableEviction{name, std::move(keys)});
  }
  return RecordEvictionsLocked(evicted);
}

uint64_t ParameterShard::RecordEvictionsLocked(absl::Span<const TableEviction> evicted) {
  if (evicted.empty()) return 0;
  const uint64_t sequence = updates_->Reserve();
  updates_->PutEviction(sequence, evicted);
  if (sequence != 0) last_eviction_sequence_ = sequence;
  return sequence;
}

ShardSnapshot ParameterShard::Snapshot(const ShardMark* since, ShardMark* mark) const {
  // Summed rounds: no round applies while we copy, so the snapshot sits
  // at a round boundary. Otherwise the version is read first (the snapshot
  // holds at least those pushes).
  ReaderLockIf lock(policy_->SumsRounds() ? &mu_ : nullptr);
  return SnapshotLocked(since, mark);
}

ShardSnapshot ParameterShard::SnapshotLocked(const ShardMark* since,
                                             ShardMark* mark) const ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ShardSnapshot snapshot;
  snapshot.version = policy_->Version();
  snapshot.tensors = store_->Snapshot();
  if (mark != nullptr) mark->clear();
  for (const auto& [name, table] : tables_) {
    SparseTableSnapshot t;
    t.name = name;
    t.dim = table->dim();
    t.slots = table->optimizer().num_slots();
    const SparseTable::Mark* table_since = nullptr;
    if (since != nullptr) {
      for (const auto& [marked, m] : *since) {
        if (marked == name) table_since = &m;
      }
    }
    SparseTable::Mark table_mark;
    // A table the mark does not know is written whole within the delta.
    t.contents = table->Snapshot(table_since, mark != nullptr ? &table_mark : nullptr);
    if (mark != nullptr) mark->emplace_back(name, table_mark);
    snapshot.tables.push_back(std::move(t));
  }
  std::sort(snapshot.tables.begin(), snapshot.tables.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return snapshot;
}

void ParameterShard::ForgetEvictionsBefore(const ShardMark& mark) {
  for (const auto& [name, m] : mark) {
    if (SparseTable* table = sparse_table(name)) table->ForgetEvictionsBefore(m.evictions);
  }
}

absl::Status ApplyShardDelta(ShardSnapshot* base, const ShardSnapshot& delta) {
  if (base->tables.size() != delta.tables.size()) {
    return absl::FailedPreconditionError(absl::StrCat("a delta of ", delta.tables.size(),
                                                      " sparse tables on a checkpoint of ",
                                                      base->tables.size()));
  }
  for (size_t i = 0; i < delta.tables.size(); ++i) {
    if (base->tables[i].name != delta.tables[i].name ||
        base->tables[i].dim != delta.tables[i].dim ||
        base->tables[i].slots != delta.tables[i].slots) {
      return absl::FailedPreconditionError(absl::StrCat("a delta's sparse table ",
                                                        delta.tables[i].name, " is not its base's ",
                                                        base->tables[i].name));
    }
    SparseTable::ApplyDelta(&base->tables[i].contents, delta.tables[i].contents);
  }
  base->version = delta.version;
  base->tensors = delta.tensors;
  base->delta_chain = delta.delta_chain;
  return absl::OkStatus();
}

absl::Status ParameterShard::Restore(const ShardSnapshot& snapshot) {
  absl::MutexLock lock(&mu_);
  if (snapshot.tables.size() != tables_.size()) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint holds ", snapshot.tables.size(),
                                                      " sparse tables, the job has ",
                                                      tables_.size()));
  }
  for (const SparseTableSnapshot& t : snapshot.tables) {
    SparseTable* table = sparse_table(t.name);
    if (table == nullptr || table->dim() != t.dim) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint sparse table ", t.name, " (dim ", t.dim, ") is not in the job"));
    }
  }
  FULCRUM_RETURN_IF_ERROR(store_->Restore(snapshot.tensors));
  for (const SparseTableSnapshot& t : snapshot.tables) {
    FULCRUM_RETURN_IF_ERROR(tables_.at(t.name)->Restore(t.contents));
  }
  policy_->RestoreLocked(snapshot.version);
  return absl::OkStatus();
}

void ParameterShard::EnableReplication(UpdateSink* sink, absl::Duration timeout) {
  updates_ = sink;
  replication_timeout_ = timeout;
}

absl::Status ParameterShard::CheckServingFor(const WorkerIdentity& worker) {
  absl::ReaderMutexLock lock(&mu_);
  if (serving_ == ShardServing::kBackup) refused_while_backup_.Note(worker.id);
  return CheckServingLocked();
}

ShardServing ParameterShard::serving() const {
  absl::ReaderMutexLock lock(&mu_);
  return serving_;
}

absl::StatusOr<ReplicaState> ParameterShard::StartReplica(absl::Time deadline) {
  if (updates_ == NoUpdateSink()) return absl::InternalError("replication is not enabled");
  absl::MutexLock lock(&mu_);
  // Pushes admitted but not applied would be in neither the snapshot nor
  // the operations after it; a SYNC round's partial sums are not in a
  // snapshot. Holding mu_ from here on admits nothing new.
  auto between_rounds = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return shutting_down_ || !policy_->RoundInProgressLocked();
  };
  bool quiet = mu_.AwaitWithDeadline(absl::Condition(&between_rounds), deadline);
  // ASYNC/SSP pushes admitted before apply without mu_: a moment each.
  while (quiet && unapplied_pushes_.load(std::memory_order_acquire) > 0) {
    quiet = absl::Now() < deadline;
    absl::SleepFor(absl::Microseconds(50));
  }
  if (!quiet) {
    return absl::DeadlineExceededError(
        "the shard was never between updates (a sync round always in progress) before the "
        "deadline; retrying");
  }
  if (shutting_down_) return absl::UnavailableError("parameter server is shutting down");
  FULCRUM_RETURN_IF_ERROR(CheckServingLocked());
  ReplicaState state;
  state.snapshot = SnapshotLocked();
  state.membership = membership_;
  state.recent_requests = recent_requests_.Export();
  state.pushes = pushes_.load();
  state.sequence = updates_->Attach();
  return state;
}

void ParameterShard::BecomeBackup() {
  absl::MutexLock lock(&mu_);
  serving_ = ShardServing::kBackup;
}

absl::Status ParameterShard::InstallReplica(const ReplicaState& state) {
  absl::MutexLock replay(&replay_mu_);
  {
    absl::ReaderMutexLock lock(&mu_);
    if (serving_ != ShardServing::kBackup) {
      return absl::FailedPreconditionError("only a backup takes its primary's state");
    }
  }
  FULCRUM_RETURN_IF_ERROR(Restore(state.snapshot));
  absl::MutexLock lock(&mu_);
  membership_ = state.membership;
  has_membership_ = true;
  recent_requests_ = RecentRequests();
  for (const auto& [worker, ids] : state.recent_requests) {
    for (uint64_t id : ids) recent_requests_.Insert(worker, id);
  }
  replica_applied_ = state.sequence;
  pushes_.store(state.pushes);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ParameterShard::ApplyReplicaOp(const ReplicaOp& op) {
  absl::MutexLock replay(&replay_mu_);
  {
    absl::ReaderMutexLock lock(&mu_);
    if (serving_ != ShardServing::kBackup) {
      return absl::FailedPreconditionError(absl::StrCat(
          "shard ", role_.index, " is not a backup here (it took over, or never was one)"));
    }
  }
  if (op.sequence() <= replica_applied_) return replica_applied_;  // a resend
  if (op.sequence() != replica_applied_ + 1) {
    return absl::FailedPreconditionError(absl::StrCat("replicated operation ", op.sequence(),
                                                      " follows ", replica_applied_,
                                                      " here: a gap; send a snapshot"));
  }
  if (op.has_membership()) {
    absl::MutexLock lock(&mu_);
    ApplyMembershipLocked(WorkerMembership::FromProto(op.membership()));
  } else if (op.has_evicted()) {
    for (const Eviction::Table& t : op.evicted().tables()) {
      SparseTable* table = sparse_table(t.table());
      if (table == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("replicated eviction ", op.sequence(),
                                                       " names unknown sparse table ", t.table()));
      }
      table->Evict(t.keys());
    }
  } else if (op.op_case() == ReplicaOp::kRoundClosed) {
    absl::MutexLock lock(&mu_);
    FULCRUM_RETURN_IF_ERROR(policy_->CloseRoundLocked(op.round_closed()));
  } else if (op.has_push()) {
    const ReplicaPush& push = op.push();
    std::vector<std::vector<float>> buffers(push.dense_size() + push.sparse_size());
    std::vector<SliceGradient> gradients(push.dense_size());
    std::vector<SparseGradient> sparse(push.sparse_size());
    absl::Status decoded = absl::OkStatus();
    for (int i = 0; i < push.dense_size() && decoded.ok(); ++i) {
      const DenseValues& values = push.dense(i);
      gradients[i].slice =
          SliceRef{values.slice().tensor(), values.slice().offset(), values.slice().length()};
      // The slice first: an unaligned payload is copied into memory of its
      // size.
      decoded = store_->Validate(gradients[i].slice);
      if (!decoded.ok()) break;
      absl::StatusOr<absl::Span<const float>> view =
          Float32View(FLOAT32, values.data(), values.slice().length(), false, &buffers[i]);
      if (view.ok()) gradients[i].values = *view;
      decoded = view.status();
    }
    for (int i = 0; i < push.sparse_size() && decoded.ok(); ++i) {
      const SparseValues& values = push.sparse(i);
      SparseTable* table = sparse_table(values.table());
      if (table == nullptr) {
        decoded = absl::NotFoundError(absl::StrCat("unknown sparse table ", values.table()));
        break;
      }
      absl::StatusOr<absl::Span<const float>> view =
          Float32View(FLOAT32, values.data(), size_t(values.keys_size()) * table->dim(), false,
                      &buffers[push.dense_size() + i]);
      if (view.ok()) {
        sparse[i] = SparseGradient{
            values.table(), absl::MakeConstSpan(values.keys().data(), values.keys_size()), *view};
      }
      decoded = view.status();
    }
    if (!decoded.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("replicated push ", op.sequence(), " does not decode: ", decoded.message()));
    }
    const WorkerIdentity worker{push.worker_id(), push.coordinator_incarnation()};
    absl::StatusOr<ShardVersion> applied =
        PushInternal(worker, push.request_id(), push.clock(), gradients, sparse,
                     /*replayed=*/true);
    // The primary admitted it against the same state; a refusal here means
    // the copies differ (the primary failed it too, e.g. a full table).
    if (!applied.ok()) {
      FULCRUM_LOG(WARNING) << "replicated push " << op.sequence() << " of "
                           << DescribeWorker(worker) << " refused here: " << applied.status();
    }
  }
  replica_applied_ = op.sequence();
  return replica_applied_;
}

void ParameterShard::Promote() {
  absl::MutexLock lock(&mu_);
  if (serving_ != ShardServing::kBackup) return;
  serving_ = ShardServing::kServing;
  log_first_push_ = true;
  // Its primary may have closed a sync round whose close never came: decide
  // here, with what the copy holds.
  policy_->MembershipChangedLocked(membership_, /*renumbered=*/false, /*decide=*/true);
}

void ParameterShard::StepDown() {
  absl::MutexLock lock(&mu_);
  serving_ = ShardServing::kReplaced;
}

ShardVersion ParameterShard::version() const {
  absl::ReaderMutexLock lock(&mu_);
  ShardVersion v;
  v.version = v.round = policy_->Version();
  return v;
}

ShardStats ParameterShard::stats() const {
  ShardStats s;
  s.pushes = pushes_.load();
  s.pulls = pulls_.load();
  s.duplicate_pushes = duplicate_pushes_.load();
  absl::ReaderMutexLock lock(&mu_);
  s.rounds = policy_->Version();
  s.pull_wait_seconds = pull_wait_seconds_;
  s.waiting_pulls = waiting_pulls_;
  s.waiting_for_membership = waiting_for_membership_;
  return s;
}

}  // namespace fulcrum
