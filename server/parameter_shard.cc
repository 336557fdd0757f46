#include "server/parameter_shard.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
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
                               ConsistencyMode mode, int64_t staleness)
    : store_(std::move(store)), mode_(mode), staleness_(staleness) {}

void ParameterShard::Start() {
  absl::MutexLock lock(&mu_);
  started_ = true;
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

int64_t ParameterShard::MinActiveClockLocked() const {
  int64_t min = std::numeric_limits<int64_t>::max();
  for (const auto& [id, clock] : active_) min = std::min(min, clock);
  return min;
}

absl::Status ParameterShard::CheckAdmittedLocked(uint64_t worker_id) const {
  if (shutting_down_) return absl::UnavailableError("parameter server is shutting down");
  if (!admitted_.contains(worker_id)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "unknown worker id ", worker_id, "; register with the coordinator"));
  }
  return absl::OkStatus();
}

absl::Status ParameterShard::ValidateAll(
    const std::vector<SliceGradient>& gradients) const {
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
    uint64_t worker_id, int64_t clock, const std::vector<SliceRef>& slices,
    absl::Span<const absl::Span<float>> out, absl::Time deadline) {
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
    FULCRUM_RETURN_IF_ERROR(CheckAdmittedLocked(worker_id));
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
    version.version = version.round = round_;
  } else {
    for (size_t i = 0; i < slices.size(); ++i) {
      FULCRUM_RETURN_IF_ERROR(store_->Read(slices[i], out[i]));
    }
    version.version = version.round = async_version_.load();
  }
  version.wait_seconds = wait_seconds;
  pulls_.fetch_add(1, std::memory_order_relaxed);
  return version;
}

absl::StatusOr<ShardVersion> ParameterShard::Push(
    uint64_t worker_id, uint64_t request_id, int64_t clock,
    const std::vector<SliceGradient>& gradients) {
  FULCRUM_RETURN_IF_ERROR(ValidateAll(gradients));
  {
    absl::MutexLock lock(&mu_);
    FULCRUM_RETURN_IF_ERROR(CheckAdmittedLocked(worker_id));
    if (!started_) {
      return absl::FailedPreconditionError("job has not started yet");
    }
    if (!active_.contains(worker_id)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker ", worker_id, " holds no training lease; acquire a partition"));
    }
    if (request_id != 0 && recent_requests_.Contains(worker_id, request_id)) {
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
      if (!pushed_.insert(worker_id).second) {
        return absl::FailedPreconditionError(absl::StrCat(
            "worker ", worker_id, " already pushed round ", round_));
      }
      ++pushes_in_flight_;
    }
    if (request_id != 0) recent_requests_.Insert(worker_id, request_id);
  }

  if (mode_ == SYNC) {
    // Sum outside the round lock so workers add in parallel (stripe locks).
    for (const SliceGradient& g : gradients) {
      absl::Status s = store_->Accumulate(g.slice, g.values);
      if (!s.ok()) return absl::InternalError(s.ToString());  // validated above
    }
    absl::MutexLock lock(&mu_);
    --pushes_in_flight_;
    pushes_.fetch_add(1, std::memory_order_relaxed);
    MaybeCompleteRoundLocked();
    ShardVersion v;
    v.version = v.round = round_;
    return v;
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
  // The mean gradient over the round's pushes: one big mini-batch.
  store_->ApplyAccumulated(1.0f / static_cast<float>(pushed_.size()));
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
  return snapshot;
}

absl::Status ParameterShard::Restore(const ShardSnapshot& snapshot) {
  absl::MutexLock lock(&mu_);
  FULCRUM_RETURN_IF_ERROR(store_->Restore(snapshot.tensors));
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
