#include "server/replication/backup_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/rpc/grpc_status.h"
#include "server/replication/replica_snapshot.h"

namespace fulcrum {

// Operations received but not yet applied stay under this many bytes (the
// primary waits for its acknowledgements meanwhile).
constexpr size_t kMaxQueuedBytes = size_t{256} << 20;

ShardReplicaService::ShardReplicaService(ParameterShard* shard, absl::Duration debug_delay)
    : shard_(shard), debug_delay_(debug_delay), last_contact_(absl::Now()) {
  applier_ = std::thread([this] { ApplyLoop(); });
}

ShardReplicaService::~ShardReplicaService() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  applier_.join();
}

grpc::Status ShardReplicaService::InstallSnapshot(grpc::ServerContext* context,
                                                  const ReplicaSnapshot* request,
                                                  InstallSnapshotResponse* response) {
  absl::StatusOr<ReplicaState> state = DecodeReplicaState(*request);
  if (!state.ok()) return ToGrpcStatus(state.status());
  // The operations of an earlier stream are in the snapshot, or moot.
  absl::MutexLock apply(&apply_mu_);
  {
    absl::MutexLock lock(&mu_);
    queue_.clear();
    queued_bytes_ = 0;
  }
  if (absl::Status s = shard_->InstallReplica(*state); !s.ok()) return ToGrpcStatus(s);
  absl::MutexLock lock(&mu_);
  installed_ = true;
  diverged_ = false;
  received_ = state->sequence;
  if (request->has_coordinator()) coordinator_ = request->coordinator();
  incarnation_ = request->incarnation();
  primary_process_ = request->primary_process_incarnation();
  last_contact_ = absl::Now();
  FULCRUM_LOG(INFO) << "backup of shard " << shard_->role().index
                    << ": took the primary's state at "
                    << "operation " << state->sequence << " (version " << state->snapshot.version
                    << ")";
  return grpc::Status::OK;
}

grpc::Status ShardReplicaService::Replicate(grpc::ServerContext* context,
                                            const ReplicateRequest* request,
                                            ReplicateResponse* response) {
  if (debug_delay_ > absl::ZeroDuration() && request->ops_size() > 0) {
    absl::SleepFor(debug_delay_);
  }
  absl::MutexLock lock(&mu_);
  if (!installed_ || diverged_ || request->primary_process_incarnation() != primary_process_) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        "this backup has no current state from that primary; send a snapshot"));
  }
  last_contact_ = absl::Now();
  auto room = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopping_ || queued_bytes_ < kMaxQueuedBytes;
  };
  mu_.Await(absl::Condition(&room));
  // The operations are moved out of the request, not copied (a push holds
  // its whole gradient): gRPC's sync API hands the request over as const,
  // but it belongs to this call and is not read after the handler returns.
  auto* ops = const_cast<ReplicateRequest*>(request)->mutable_ops();
  for (ReplicaOp& op : *ops) {
    if (op.sequence() <= received_) continue;  // a resend
    if (op.sequence() != received_ + 1) {
      return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
          "replicated operation ", op.sequence(), " follows ", received_, " here: a gap")));
    }
    queued_bytes_ += op.ByteSizeLong();
    received_ = op.sequence();
    queue_.push_back(std::move(op));
  }
  response->set_applied(received_);
  return grpc::Status::OK;
}

void ShardReplicaService::ApplyLoop() {
  while (true) {
    ReplicaOp op;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      applying_ = true;
    }
    absl::MutexLock apply(&apply_mu_);
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) {  // a snapshot replaced them meanwhile
        applying_ = false;
        continue;
      }
      op = std::move(queue_.front());
      queue_.pop_front();
    }
    const size_t bytes = op.ByteSizeLong();
    absl::StatusOr<uint64_t> applied = shard_->ApplyReplicaOp(op);
    absl::MutexLock lock(&mu_);
    queued_bytes_ -= std::min(queued_bytes_, bytes);
    applying_ = false;
    if (applied.ok() && op.has_coordinator()) coordinator_ = std::move(*op.mutable_coordinator());
    if (!applied.ok()) {
      FULCRUM_LOG(WARNING) << "backup of shard " << shard_->role().index << ": operation "
                           << op.sequence() << " not applied (" << applied.status()
                           << "); asking the primary for its state again";
      diverged_ = true;
      queue_.clear();
      queued_bytes_ = 0;
    }
  }
}

void ShardReplicaService::Drain() {
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopping_ || (queue_.empty() && !applying_);
  };
  mu_.Await(absl::Condition(&drained));
}

std::optional<CoordinatorReplica> ShardReplicaService::coordinator() const {
  absl::MutexLock lock(&mu_);
  return coordinator_;
}

bool ShardReplicaService::installed() const {
  absl::MutexLock lock(&mu_);
  return installed_;
}

void ShardReplicaService::Forget() {
  absl::MutexLock lock(&mu_);
  installed_ = false;
  queue_.clear();
  queued_bytes_ = 0;
}

uint64_t ShardReplicaService::incarnation() const {
  absl::MutexLock lock(&mu_);
  return incarnation_;
}

absl::Time ShardReplicaService::last_contact() const {
  absl::MutexLock lock(&mu_);
  return last_contact_;
}

}  // namespace fulcrum
