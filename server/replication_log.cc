#include "server/replication_log.h"

#include <utility>

namespace fulcrum {

uint64_t ReplicationLog::Reserve() {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kAttached) return 0;
  const uint64_t sequence = ++last_reserved_;
  pending_.emplace(sequence, std::nullopt);
  return sequence;
}

void ReplicationLog::Fill(uint64_t sequence, const ReplicaOp& op) {
  if (sequence == 0) return;
  Fill(sequence, WireSlices::Of(op));
}

void ReplicationLog::Fill(uint64_t sequence, WireSlices op) {
  if (sequence == 0) return;
  // Fields may come in any order.
  op.Prepend(VarintFieldBytes(ReplicaOp::kSequenceFieldNumber, sequence));
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(sequence);
  if (it == pending_.end()) return;  // dropped by an Attach since
  it->second = std::move(op);
}

uint64_t ReplicationLog::last_reserved() const {
  absl::MutexLock lock(&mu_);
  return last_reserved_;
}

absl::Status ReplicationLog::AwaitReplicated(uint64_t sequence, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return state_ != State::kAttached || acknowledged_ >= sequence;
  };
  mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
  if (state_ == State::kSteppedDown) {
    return absl::UnavailableError(
        "this shard's backup has taken over: the update may not be in the model; retry (at the "
        "shard's other address)");
  }
  if (!done()) {
    return absl::UnavailableError(
        "the update was not replicated to the shard's backup in time; retry");
  }
  return absl::OkStatus();
}

uint64_t ReplicationLog::Attach() {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kSteppedDown) return last_reserved_;
  state_ = State::kAttached;
  pending_.clear();
  last_taken_ = last_reserved_;
  return last_reserved_;
}

std::vector<WireSlices> ReplicationLog::Take(size_t max_bytes, absl::Duration wait) {
  absl::MutexLock lock(&mu_);
  auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    auto it = pending_.find(last_taken_ + 1);
    return state_ != State::kAttached || (it != pending_.end() && it->second.has_value());
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
  std::vector<WireSlices> ops;
  size_t bytes = 0;
  while (state_ == State::kAttached && bytes < max_bytes) {
    auto it = pending_.find(last_taken_ + 1);
    if (it == pending_.end() || !it->second.has_value()) break;
    bytes += it->second->size();
    ops.push_back(std::move(*it->second));
    pending_.erase(it);
    ++last_taken_;
  }
  return ops;
}

void ReplicationLog::Acknowledge(uint64_t sequence) {
  absl::MutexLock lock(&mu_);
  if (sequence > acknowledged_) acknowledged_ = sequence;
}

void ReplicationLog::Detach() {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kSteppedDown) return;
  state_ = State::kDetached;
  pending_.clear();
  last_taken_ = last_reserved_;
}

void ReplicationLog::StepDown() {
  absl::MutexLock lock(&mu_);
  state_ = State::kSteppedDown;
  pending_.clear();
}

void ReplicationLog::Reset() {
  absl::MutexLock lock(&mu_);
  state_ = State::kDetached;
  pending_.clear();
  last_taken_ = last_reserved_;
}

bool ReplicationLog::stepped_down() const {
  absl::MutexLock lock(&mu_);
  return state_ == State::kSteppedDown;
}

}  // namespace fulcrum
