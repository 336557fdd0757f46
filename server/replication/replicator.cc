#include "server/replication/replicator.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/base/log.h"
#include "common/rpc/channel.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/wire.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "proto/shard_control.grpc.pb.h"
#include "server/replication/replica_snapshot.h"

namespace fulcrum {

namespace {

// Batches of operations stay well under the default message limits.
constexpr size_t kMaxBatchBytes = 8 << 20;
constexpr char kReplicateMethod[] = "/fulcrum.ShardReplica/Replicate";

}  // namespace

ShardReplicator::ShardReplicator(ParameterShard* shard, ReplicationLog* log,
                                 ShardReplicatorOptions options)
    : shard_(shard), log_(log), options_(std::move(options)) {
  thread_ = std::thread([this] { Loop(); });
}

ShardReplicator::~ShardReplicator() { Stop(); }

void ShardReplicator::SetBackup(const std::string& address, uint64_t process) {
  absl::MutexLock lock(&mu_);
  address_ = address;
  process_ = address.empty() ? 0 : process;
}

void ShardReplicator::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  log_->Detach();  // nothing waits on a backup any more (a no-op once stepped down)
}

void ShardReplicator::Loop() {
  int resyncs = 0;
  while (true) {
    std::string address;
    uint64_t process = 0;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]()
                      ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !address_.empty(); };
      if (!wake()) log_->Detach();  // no backup: pushes are answered alone
      mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Seconds(1));
      if (stopping_) return;
      if (address_.empty()) continue;
      address = address_;
      process = process_;
    }
    const absl::Status failed = Follow(address, process);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (address_ != address || process_ != process) continue;  // another backup now
    }
    // The backup wants a snapshot (it joined again, or missed operations):
    // send it one, a few times, before giving up on it.
    if (absl::IsFailedPrecondition(failed) && ++resyncs <= 3) {
      FULCRUM_LOG(INFO) << "shard " << options_.shard_index << ": backup at " << address
                        << " needs this shard's state again (" << failed.message() << ")";
      continue;
    }
    resyncs = 0;
    if (!Drop(process, failed)) return;
  }
}

absl::Status ShardReplicator::Follow(const std::string& address, uint64_t process) {
  auto still_current = [&] {
    absl::MutexLock lock(&mu_);
    return !stopping_ && address_ == address && process_ == process;
  };
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = OpenChannel(address, options_.security);
  if (!channel.ok()) return channel.status();
  std::unique_ptr<ShardReplica::Stub> stub = ShardReplica::NewStub(*channel);
  // A sync round may be in progress: wait for a boundary, for as long as
  // this backup is wanted.
  absl::StatusOr<ReplicaState> state;
  do {
    state = shard_->StartReplica(absl::Now() + options_.rpc_timeout);
  } while (absl::IsDeadlineExceeded(state.status()) && still_current());
  if (!still_current()) return absl::OkStatus();
  if (!state.ok()) return state.status();
  const absl::Time started = absl::Now();
  {
    ReplicaSnapshot snapshot =
        EncodeReplicaState(*state, options_.shard_index, options_.num_shards, options_.incarnation,
                           options_.process_incarnation);
    // Taken after the state: it holds every change whose operation the
    // state dropped (later ones follow as operations).
    if (options_.coordinator_state) *snapshot.mutable_coordinator() = options_.coordinator_state();
    grpc::ClientContext context;
    SetTimeout(options_.install_timeout, &context);
    InstallSnapshotResponse response;
    if (grpc::Status s = stub->InstallSnapshot(&context, snapshot, &response); !s.ok()) {
      return FromGrpcStatus(s);
    }
  }
  log_->Acknowledge(state->sequence);
  FULCRUM_LOG(INFO) << "shard " << options_.shard_index << ": backup at " << address
                    << " has this shard's state (version " << state->snapshot.version << ", "
                    << absl::ToDoubleMilliseconds(absl::Now() - started)
                    << " ms); replicating every update to it";
  // Batches go out as the operations' own bytes (a ReplicateRequest built
  // of slices: the pushes' gradients are not copied again), hence the
  // generic stub.
  grpc::GenericStub generic(*channel);
  while (still_current()) {
    WireSlices request;
    request.Add(VarintFieldBytes(ReplicateRequest::kPrimaryProcessIncarnationFieldNumber,
                                 options_.process_incarnation));
    for (WireSlices& op : log_->Take(kMaxBatchBytes, options_.keepalive)) {
      op.Enclose(ReplicateRequest::kOpsFieldNumber);
      request.Append(std::move(op));
    }
    grpc::ClientContext context;
    SetTimeout(options_.rpc_timeout, &context);
    const grpc::ByteBuffer request_bytes = request.Buffer();
    grpc::ByteBuffer reply;
    grpc::Status status;
    absl::Notification done;
    generic.UnaryCall(&context, kReplicateMethod, grpc::StubOptions(), &request_bytes, &reply,
                      [&](grpc::Status s) {
                        status = std::move(s);
                        done.Notify();
                      });
    done.WaitForNotification();
    if (!status.ok()) return FromGrpcStatus(status);
    ReplicateResponse response;
    if (!grpc::SerializationTraits<ReplicateResponse>::Deserialize(&reply, &response).ok()) {
      return absl::DataLossError("the backup's reply to Replicate does not parse");
    }
    log_->Acknowledge(response.applied());
  }
  return absl::OkStatus();
}

bool ShardReplicator::Drop(uint64_t process, const absl::Status& why) {
  FULCRUM_LOG(WARNING) << "shard " << options_.shard_index << ": backup does not follow (" << why
                       << "); asking the coordinator to drop it";
  const absl::Time since = absl::Now();
  absl::Time logged_at = absl::InfinitePast();
  while (true) {
    const absl::Status dropped = options_.drop_backup(process, since);
    if (dropped.ok()) {
      log_->Detach();
      absl::MutexLock lock(&mu_);
      if (process_ == process) {
        address_.clear();
        process_ = 0;
      }
      return true;
    }
    if (absl::IsFailedPrecondition(dropped)) {
      FULCRUM_LOG(WARNING) << "shard " << options_.shard_index
                           << ": the backup took over; this process stops serving ("
                           << dropped.message() << ")";
      log_->StepDown();
      options_.step_down();
      return false;
    }
    if (absl::Now() - logged_at >= absl::Seconds(5)) {
      FULCRUM_LOG(WARNING) << "shard " << options_.shard_index
                           << ": cannot drop the backup yet, asking again: " << dropped;
      logged_at = absl::Now();
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(200));
    if (stopping_) return false;
  }
}

}  // namespace fulcrum
