#include "server/replication/replication_log.h"

#include <algorithm>
#include <utility>

namespace fulcrum {
namespace {

// A push as its primary admitted it, for the backup: a serialised ReplicaOp
// (its sequence left to the log) whose dense gradients are float32 payload
// slices, copied once from the push and sent from there.
WireSlices PushOp(const AdmittedPush& admitted) {
  ReplicaPush push;
  push.set_worker_id(admitted.worker.id);
  push.set_coordinator_incarnation(admitted.worker.coordinator_incarnation);
  push.set_request_id(admitted.request_id);
  push.set_clock(admitted.clock);
  for (const SparseGradient& g : admitted.sparse) {
    SparseValues* values = push.add_sparse();
    values->set_table(g.table);
    values->mutable_keys()->Add(g.keys.begin(), g.keys.end());
    values->set_encoding(FLOAT32);
    values->set_data(reinterpret_cast<const char*>(g.values.data()),
                     g.values.size() * sizeof(float));
  }
  WireSlices op = WireSlices::Of(push);
  for (const SliceGradient& g : admitted.dense) {
    DenseValues meta;
    meta.mutable_slice()->set_tensor(g.slice.tensor);
    meta.mutable_slice()->set_offset(g.slice.offset);
    meta.mutable_slice()->set_length(g.slice.length);
    meta.set_encoding(FLOAT32);
    op.Add(DenseEntryHead(ReplicaPush::kDenseFieldNumber, meta, g.values.size() * sizeof(float)));
    if (g.values.empty()) continue;
    FloatPayload payload = FloatPayload::Allocate(g.values.size());
    std::copy(g.values.begin(), g.values.end(), payload.values.begin());
    op.Add(std::move(payload.slice));
  }
  op.Enclose(ReplicaOp::kPushFieldNumber);
  return op;
}

}  // namespace

uint64_t ReplicationLog::Reserve() {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kAttached) return 0;
  const uint64_t sequence = ++last_reserved_;
  pending_.emplace(sequence, std::nullopt);
  return sequence;
}

void ReplicationLog::PutPush(uint64_t sequence, const AdmittedPush& push) {
  if (sequence == 0) return;
  Fill(sequence, PushOp(push));
}

void ReplicationLog::PutRoundClosed(uint64_t sequence, int64_t version) {
  if (sequence == 0) return;
  ReplicaOp op;
  op.set_round_closed(version);
  Fill(sequence, op);
}

void ReplicationLog::PutEviction(uint64_t sequence, absl::Span<const TableEviction> evicted) {
  if (sequence == 0) return;
  ReplicaOp op;
  for (const TableEviction& e : evicted) {
    Eviction::Table* table = op.mutable_evicted()->add_tables();
    table->set_table(e.table);
    table->mutable_keys()->Add(e.keys.begin(), e.keys.end());
  }
  Fill(sequence, op);
}

void ReplicationLog::PutMembership(uint64_t sequence, const WorkerMembership& membership) {
  if (sequence == 0) return;
  ReplicaOp op;
  *op.mutable_membership() = membership.ToProto();
  Fill(sequence, op);
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

absl::Status ReplicationLog::AwaitSafe(uint64_t sequence, absl::Time deadline) {
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
