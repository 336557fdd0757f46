#include "server/replication/shard_replica.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/rpc/channel.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/wire.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "server/checkpoint/checkpoint.h"

namespace fulcrum {
namespace {

// Batches of operations stay well under the default message limits.
constexpr size_t kMaxBatchBytes = 8 << 20;
constexpr char kReplicateMethod[] = "/fulcrum.ShardReplica/Replicate";

}  // namespace

ReplicaSnapshot EncodeReplicaState(const ReplicaState& state, uint32_t shard_index,
                                   uint32_t num_shards, uint64_t incarnation,
                                   uint64_t primary_process) {
  ReplicaSnapshot out;
  out.set_incarnation(incarnation);
  out.set_primary_process_incarnation(primary_process);
  out.set_sequence(state.sequence);
  out.set_shard(EncodeShardFile(state.snapshot, shard_index, num_shards));
  *out.mutable_membership() = state.membership.ToProto();
  for (const auto& [worker, ids] : state.recent_requests) {
    ReplicaSnapshot::Requests* requests = out.add_recent_requests();
    requests->set_worker_id(worker);
    requests->mutable_request_ids()->Add(ids.begin(), ids.end());
  }
  out.set_pushes(state.pushes);
  return out;
}

absl::StatusOr<ReplicaState> DecodeReplicaState(const ReplicaSnapshot& snapshot) {
  ReplicaState state;
  state.sequence = snapshot.sequence();
  absl::StatusOr<ShardSnapshot> shard = DecodeShardFile(snapshot.shard(), "replica snapshot");
  if (!shard.ok()) return shard.status();
  state.snapshot = std::move(*shard);
  state.membership = WorkerMembership::FromProto(snapshot.membership());
  state.pushes = snapshot.pushes();
  for (const ReplicaSnapshot::Requests& r : snapshot.recent_requests()) {
    state.recent_requests.emplace_back(
        r.worker_id(), std::vector<uint64_t>(r.request_ids().begin(), r.request_ids().end()));
  }
  return state;
}

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
