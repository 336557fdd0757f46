#include "server/parameter_shard.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/shard_map.h"
#include "common/status_macros.h"

namespace fulcrum {

bool ParameterShard::RecentRequests::Contains(uint64_t worker_id,
                                              uint64_t request_id) const {
  auto it = ids_.find(worker_id);
  return it != ids_.end() &&
         std::find(it->second.begin(), it->second.end(), request_id) !=
             it->second.end();
}

void ParameterShard::RecentRequests::Insert(uint64_t worker_id,
                                            uint64_t request_id) {
  std::deque<uint64_t>& ids = ids_[worker_id];
  ids.push_back(request_id);
  if (ids.size() > kPerWorker) ids.pop_front();
}

ParameterShard::ParameterShard(std::unique_ptr<ParameterStore> store,
                               ConsistencyMode mode, int64_t staleness,
                               std::vector<std::unique_ptr<SparseTable>> tables,
                               const ShardRole& role)
    : store_(std::move(store)), mode_(mode), staleness_(staleness), role_(role) {
  for (auto& table : tables) {
    const std::string name = table->name();
    sparse_sums_[name] = std::make_unique<SparseSums>();
    tables_[name] = std::move(table);
  }
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
    // Row storage plus the index's slot (key, row number, control byte,
    // at the flat hash map's load factor of at most 7/8).
    s.set_bytes_per_row(table->rows() == 0
                            ? 0
                            : double(table->row_bytes()) / table->rows() + 13.0 * 8 / 7);
    out.push_back(s);
  }
  std::sort(out.begin(), out.end(),
            [](const SparseTableStatus& a, const SparseTableStatus& b) { return a.name() < b.name(); });
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
    absl::Status s = table.Push(keys, values);
    // Room was checked when the gradients arrived; only a concurrent creator
    // of the last rows can make this fail.
    if (!s.ok()) FULCRUM_LOG(ERROR) << "applying round of " << name << ": " << s;
    sums.sums.clear();
  }
}

void ParameterShard::Start() {
  absl::MutexLock lock(&mu_);
  started_ = true;
}

bool ParameterShard::started() const {
  absl::ReaderMutexLock lock(&mu_);
  return started_;
}

void ParameterShard::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
}

void ParameterShard::AdmitWorker(uint64_t worker_id) {
  absl::MutexLock lock(&mu_);
  admitted_.insert(worker_id);
}

void ParameterShard::ActivateWorker(uint64_t worker_id, int64_t clock) {
  absl::MutexLock lock(&mu_);
  if (!admitted_.contains(worker_id)) return;
  active_[worker_id] = clock;
}

void ParameterShard::DeactivateWorker(uint64_t worker_id) {
  absl::MutexLock lock(&mu_);
  active_.erase(worker_id);
  if (mode_ == SYNC) MaybeCompleteRoundLocked();
}

void ParameterShard::RemoveWorker(uint64_t worker_id) {
  absl::MutexLock lock(&mu_);
  admitted_.erase(worker_id);
  active_.erase(worker_id);
  if (mode_ == SYNC) MaybeCompleteRoundLocked();
}

uint64_t ParameterShard::ApplyMembership(const Membership& membership) {
  absl::MutexLock lock(&mu_);
  if (membership.coordinator_incarnation() == membership_incarnation_ &&
      membership.version() <= membership_version_) {
    return membership_version_;
  }
  if (membership.coordinator_incarnation() != membership_incarnation_) {
    // A new coordinator numbers workers from scratch: what this shard
    // remembers of ids (retried request ids, who pushed the round) belongs
    // to other workers now. The round in progress is applied with the
    // gradients it has, and the new workers start a fresh one.
    recent_requests_ = RecentRequests();
    if (mode_ == SYNC && !pushed_.empty() && pushes_in_flight_ == 0) CompleteRoundLocked();
  }
  admitted_.clear();
  admitted_.insert(membership.admitted().begin(), membership.admitted().end());
  active_.clear();
  for (const Membership::Active& a : membership.active()) {
    if (admitted_.contains(a.worker_id())) active_[a.worker_id()] = a.clock();
  }
  if (membership.started()) started_ = true;
  // As RemoveWorker: a gradient already summed into the round stays in it.
  if (mode_ == SYNC) MaybeCompleteRoundLocked();
  membership_incarnation_ = membership.coordinator_incarnation();
  membership_version_ = membership.version();
  return membership_version_;
}

int64_t ParameterShard::MinActiveClockLocked() const {
  int64_t min = std::numeric_limits<int64_t>::max();
  for (const auto& [id, clock] : active_) min = std::min(min, clock);
  return min;
}

absl::Status ParameterShard::CheckMemberLocked(const WorkerIdentity& worker, bool active,
                                               absl::Time deadline) {
  auto ours = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return worker.coordinator_incarnation == membership_incarnation_ &&
           admitted_.contains(worker.id);
  };
  auto known = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return shutting_down_ ||
           (ours() && (!active || (started_ && active_.contains(worker.id))));
  };
  if (!known() && role_.membership_grace > absl::ZeroDuration()) {
    mu_.AwaitWithDeadline(absl::Condition(&known),
                          std::min(deadline, absl::Now() + role_.membership_grace));
  }
  if (shutting_down_) return absl::UnavailableError("parameter server is shutting down");
  if (worker.coordinator_incarnation != membership_incarnation_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not known here: this shard follows coordinator incarnation %016x "
        "(the coordinator restarted since the worker registered); register again",
        DescribeWorker(worker), membership_incarnation_));
  }
  if (!admitted_.contains(worker.id)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "unknown worker id ", worker.id, "; register with the coordinator"));
  }
  if (active && !started_) {
    return absl::FailedPreconditionError("job has not started yet");
  }
  if (active && !active_.contains(worker.id)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker ", worker.id, " holds no training lease; acquire a partition"));
  }
  return absl::OkStatus();
}

bool ParameterShard::ReadyFor(const WorkerIdentity& worker, bool push, int64_t clock) const {
  absl::ReaderMutexLock lock(&mu_);
  if (shutting_down_) return true;  // fails at once
  if (worker.coordinator_incarnation != membership_incarnation_ ||
      !admitted_.contains(worker.id) || !started_) {
    return false;
  }
  if (push && !active_.contains(worker.id)) return false;
  if (clock < 0) return true;
  if (mode_ == SYNC) return round_ >= clock;
  if (mode_ == SSP) return MinActiveClockLocked() >= clock - staleness_;
  return true;
}

absl::Status ParameterShard::CheckKeysOwned(const std::string& table,
                                            absl::Span<const uint64_t> keys) const {
  if (role_.count <= 1) return absl::OkStatus();
  const ShardMap map(role_.count);
  for (uint64_t key : keys) {
    const uint32_t owner = map.ShardOfKey(key);
    if (owner != role_.index) {
      return absl::InvalidArgumentError(absl::StrCat(
          "key ", key, " of sparse table ", table, " is on shard ", owner,
          ", not shard ", role_.index, " of ", role_.count));
    }
  }
  return absl::OkStatus();
}

absl::Status ParameterShard::ValidateAll(
    const std::vector<SliceGradient>& gradients,
    absl::Span<const SparseGradient> sparse) const {
  for (const SparseGradient& g : sparse) {
    SparseTable* table = sparse_table(g.table);
    if (table == nullptr) {
      return absl::NotFoundError(absl::StrCat("unknown sparse table '", g.table, "'"));
    }
    if (g.values.size() != g.keys.size() * table->dim()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sparse table ", g.table, ": ", g.values.size(), " gradient values for ",
          g.keys.size(), " keys of dim ", table->dim()));
    }
    FULCRUM_RETURN_IF_ERROR(CheckKeysOwned(g.table, g.keys));
    if (!table->HasRoomFor(g.keys)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sparse table ", g.table, " is full (", table->max_rows(),
          " rows, --max_sparse_rows); nothing was applied"));
    }
  }
  for (const SliceGradient& g : gradients) {
    FULCRUM_RETURN_IF_ERROR(store_->Validate(g.slice));
    if (g.values.size() != g.slice.length) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gradient for ", g.slice.tensor, " has ", g.values.size(),
          " elements, slice has ", g.slice.length));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ShardVersion> ParameterShard::Pull(
    const WorkerIdentity& worker, int64_t clock, const std::vector<SliceRef>& slices,
    absl::Span<const absl::Span<float>> out, absl::Time deadline,
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
    const bool sync_wait = mode_ == SYNC && clock >= 0;
    const bool ssp_wait = mode_ == SSP && clock >= 0;
    auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return shutting_down_ ||
             (started_ && (!sync_wait || round_ >= clock) &&
              (!ssp_wait || MinActiveClockLocked() >= clock - staleness_));
    };
    const absl::Time wait_start = absl::Now();
    const bool satisfied = mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    wait_seconds = absl::ToDoubleSeconds(absl::Now() - wait_start);
    pull_wait_seconds_ += wait_seconds;
    if (shutting_down_) return absl::UnavailableError("parameter server is shutting down");
    if (!satisfied) {
      if (!started_) {
        return absl::DeadlineExceededError(
            "job has not started yet: waiting for its workers to register");
      }
      if (ssp_wait) {
        return absl::DeadlineExceededError(absl::StrCat(
            "clock ", clock, " is more than ", staleness_,
            " ahead of the slowest worker (clock ", MinActiveClockLocked(),
            ") past the deadline"));
      }
      return absl::DeadlineExceededError(absl::StrCat(
          "round ", clock, " not complete before the deadline (shard at round ",
          round_, ")"));
    }
  }

  ShardVersion version;
  if (mode_ == SYNC) {
    // Reader side of the round lock: no round is applied while we copy.
    absl::ReaderMutexLock lock(&mu_);
    for (size_t i = 0; i < slices.size(); ++i) {
      FULCRUM_RETURN_IF_ERROR(store_->Read(slices[i], out[i]));
    }
    for (const SparseRead& r : sparse) {
      FULCRUM_RETURN_IF_ERROR(tables_.at(r.table)->Pull(r.keys, r.out, r.create));
    }
    version.version = version.round = round_;
  } else {
    for (size_t i = 0; i < slices.size(); ++i) {
      FULCRUM_RETURN_IF_ERROR(store_->Read(slices[i], out[i]));
    }
    for (const SparseRead& r : sparse) {
      FULCRUM_RETURN_IF_ERROR(tables_.at(r.table)->Pull(r.keys, r.out, r.create));
    }
    version.version = version.round = async_version_.load();
  }
  version.wait_seconds = wait_seconds;
  pulls_.fetch_add(1, std::memory_order_relaxed);
  return version;
}

absl::StatusOr<ShardVersion> ParameterShard::Push(
    const WorkerIdentity& worker, uint64_t request_id, int64_t clock,
    const std::vector<SliceGradient>& gradients,
    absl::Span<const SparseGradient> sparse) {
  FULCRUM_RETURN_IF_ERROR(ValidateAll(gradients, sparse));
  {
    absl::MutexLock lock(&mu_);
    FULCRUM_RETURN_IF_ERROR(CheckMemberLocked(
        worker, /*active=*/true, absl::Now() + role_.membership_grace));
    if (request_id != 0 && recent_requests_.Contains(worker.id, request_id)) {
      duplicate_pushes_.fetch_add(1, std::memory_order_relaxed);
      ShardVersion v;
      v.version = v.round = mode_ == SYNC ? round_ : async_version_.load();
      return v;
    }
    if (mode_ == SYNC) {
      if (clock != round_) {
        return absl::FailedPreconditionError(absl::StrCat(
            "push for round ", clock, " but the shard is collecting round ",
            round_, "; pull again"));
      }
      if (!pushed_.insert(worker.id).second) {
        return absl::FailedPreconditionError(absl::StrCat(
            "worker ", worker.id, " already pushed round ", round_));
      }
      ++pushes_in_flight_;
    }
    if (request_id != 0) recent_requests_.Insert(worker.id, request_id);
  }

  if (mode_ == SYNC) {
    // Sum outside the round lock so workers add in parallel (stripe locks).
    for (const SliceGradient& g : gradients) {
      absl::Status s = store_->Accumulate(g.slice, g.values);
      if (!s.ok()) return absl::InternalError(s.ToString());  // validated above
    }
    AccumulateSparse(sparse);
    absl::MutexLock lock(&mu_);
    --pushes_in_flight_;
    pushes_.fetch_add(1, std::memory_order_relaxed);
    MaybeCompleteRoundLocked();
    ShardVersion v;
    v.version = v.round = round_;
    return v;
  }

  // Sparse first: a table that filled up since the check fails the push
  // before any dense part is applied.
  for (const SparseGradient& g : sparse) {
    FULCRUM_RETURN_IF_ERROR(tables_.at(g.table)->Push(g.keys, g.values));
  }
  for (const SliceGradient& g : gradients) {
    absl::Status s = store_->ApplyGradient(g.slice, g.values);
    if (!s.ok()) return absl::InternalError(s.ToString());  // validated above
  }
  pushes_.fetch_add(1, std::memory_order_relaxed);
  ShardVersion v;
  v.version = v.round = async_version_.fetch_add(1) + 1;
  return v;
}

void ParameterShard::MaybeCompleteRoundLocked() {
  if (pushes_in_flight_ > 0 || pushed_.empty()) return;
  for (const auto& [id, clock] : active_) {
    if (!pushed_.contains(id)) return;
  }
  CompleteRoundLocked();
}

void ParameterShard::CompleteRoundLocked() {
  // The mean gradient over the round's pushes: one big mini-batch.
  store_->ApplyAccumulated(1.0f / static_cast<float>(pushed_.size()));
  ApplySparseSums(1.0f / static_cast<float>(pushed_.size()));
  pushed_.clear();
  ++round_;
}

ShardSnapshot ParameterShard::Snapshot() const {
  ShardSnapshot snapshot;
  if (mode_ == SYNC) {
    absl::MutexLock lock(&mu_);  // no round applies while we copy
    snapshot.version = round_;
    snapshot.tensors = store_->Snapshot();
  } else {
    snapshot.version = async_version_.load();
    snapshot.tensors = store_->Snapshot();
  }
  for (const auto& [name, table] : tables_) {
    SparseTableSnapshot t;
    t.name = name;
    t.dim = table->dim();
    t.slots = table->optimizer().num_slots();
    t.rows = table->Snapshot();
    snapshot.tables.push_back(std::move(t));
  }
  std::sort(snapshot.tables.begin(), snapshot.tables.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return snapshot;
}

absl::Status ParameterShard::Restore(const ShardSnapshot& snapshot) {
  absl::MutexLock lock(&mu_);
  if (snapshot.tables.size() != tables_.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint holds ", snapshot.tables.size(), " sparse tables, the job has ",
        tables_.size()));
  }
  for (const SparseTableSnapshot& t : snapshot.tables) {
    SparseTable* table = sparse_table(t.name);
    if (table == nullptr || table->dim() != t.dim) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint sparse table ", t.name, " (dim ", t.dim, ") is not in the job"));
    }
  }
  FULCRUM_RETURN_IF_ERROR(store_->Restore(snapshot.tensors));
  for (const SparseTableSnapshot& t : snapshot.tables) {
    FULCRUM_RETURN_IF_ERROR(tables_.at(t.name)->Restore(t.rows));
  }
  pushed_.clear();
  round_ = snapshot.version;
  async_version_ = snapshot.version;
  return absl::OkStatus();
}

ShardVersion ParameterShard::version() const {
  ShardVersion v;
  if (mode_ == SYNC) {
    absl::MutexLock lock(&mu_);
    v.version = v.round = round_;
  } else {
    v.version = v.round = async_version_.load();
  }
  return v;
}

ShardStats ParameterShard::stats() const {
  ShardStats s;
  s.pushes = pushes_.load();
  s.pulls = pulls_.load();
  s.duplicate_pushes = duplicate_pushes_.load();
  absl::MutexLock lock(&mu_);
  s.rounds = mode_ == SYNC ? round_ : async_version_.load();
  s.pull_wait_seconds = pull_wait_seconds_;
  return s;
}

}  // namespace fulcrum
