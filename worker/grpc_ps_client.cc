#include "worker/grpc_ps_client.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/model_spec.h"
#include "common/payload.h"
#include "common/replica.h"
#include "common/rpc/channel.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/security.h"
#include "common/rpc/wire.h"
#include "common/shard_map.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/impl/codegen/proto_utils.h"

namespace fulcrum {
namespace {

// `status`, naming the shard it came from when there are several.
absl::Status FromShard(size_t shard, size_t shards, absl::Status status) {
  if (status.ok() || shards == 1) return status;
  return absl::Status(status.code(), absl::StrCat("shard ", shard, ": ", status.message()));
}

}  // namespace

// Starts every shard's call at once on cq_ and waits for all of them: the
// calling thread polls the queue itself (no hop to a callback thread). The
// first error (by shard), naming the shard when there are several — but
// ABORTED before any other: a shard that restarted is spoken to as a new one
// from now on (its incarnation forgotten), so this reply is the caller's only
// news of it and another shard's error (a pull that timed out waiting for its
// round, say) must not hide it. Restarted shards are kept until taken.
template <typename Response, typename Request, typename Start>
absl::Status GrpcPsClient::CallAll(const std::vector<Request>& requests,
                                   std::vector<Response>* responses, Start start) {
  const size_t n = requests.size();
  responses->resize(n);
  std::vector<grpc::ClientContext> contexts(n);
  std::vector<grpc::Status> statuses(n);
  std::vector<std::unique_ptr<grpc::ClientAsyncResponseReader<Response>>> calls(n);
  for (size_t s = 0; s < n; ++s) {
    contexts[s].set_deadline(absl::ToChronoTime(absl::Now() + rpc_timeout_));
    calls[s] = start(shards_[s], &contexts[s], requests[s]);
    calls[s]->Finish(&(*responses)[s], &statuses[s], reinterpret_cast<void*>(s));
  }
  // One shard's failure fails the call: the others' calls are cancelled, not
  // waited for. (In sync mode the other shard may be holding a pull for a
  // round that waits on a worker that in turn waits on this worker's retry
  // of the failed part — a dead primary's, say: waiting would stall them all
  // until the pull's deadline.) A cancelled push may have been applied; its
  // retry carries the same request id.
  bool cancelled = false;
  for (size_t done = 0; done < n; ++done) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq_->Next(&tag, &ok)) return absl::InternalError("completion queue shut down");
    const size_t s = reinterpret_cast<size_t>(tag);
    if (!cancelled && s < n && !statuses[s].ok()) {
      cancelled = true;
      for (size_t i = 0; i < n; ++i) {
        if (i != s) contexts[i].TryCancel();
      }
    }
  }
  // The errors that caused the cancelling speak for the call, not the
  // cancellations.
  auto cancelled_here = [&](size_t i) {
    return cancelled && statuses[i].error_code() == grpc::StatusCode::CANCELLED;
  };
  size_t first_error = n;
  for (size_t i = 0; i < n; ++i) {
    if (statuses[i].error_code() != grpc::StatusCode::ABORTED) continue;
    shards_[i].last_incarnation = 0;
    if (std::find(restarted_.begin(), restarted_.end(), i) == restarted_.end()) {
      restarted_.push_back(i);
    }
    if (first_error == n) first_error = i;
  }
  for (size_t i = 0; i < n; ++i) {
    shards_[i].last_call_ok = statuses[i].ok();
    RedialIfNotConnected(i, statuses[i]);
    MoveIfUnavailable(i, statuses[i]);
  }
  for (size_t i = 0; i < n && first_error == n; ++i) {
    if (!statuses[i].ok() && !cancelled_here(i)) first_error = i;
  }
  for (size_t i = 0; i < n && first_error == n; ++i) {
    if (!statuses[i].ok()) first_error = i;
  }
  if (first_error == n) return absl::OkStatus();
  return FromShard(first_error, n, FromGrpcStatus(statuses[first_error]));
}

namespace {

int64_t ClockFor(absl::Span<const int64_t> clocks, size_t shard) {
  if (clocks.empty()) return -1;
  return clocks.size() == 1 ? clocks[0] : clocks[shard];
}

void FillHeader(const WorkerIdentity& worker, int64_t clock, uint64_t incarnation,
                RequestHeader* header) {
  SetSender(worker, header);
  header->set_clock(clock);
  header->set_incarnation(incarnation);
}

}  // namespace

GrpcPsClient::GrpcPsClient(std::shared_ptr<grpc::Channel> coordinator, absl::Duration rpc_timeout,
                           ClientSecurityOptions security)
    : coordinator_(std::move(coordinator)),
      rpc_timeout_(rpc_timeout),
      security_(std::move(security)),
      cq_(std::make_unique<grpc::CompletionQueue>()) {
  Connect({}, {}).IgnoreError();  // the coordinator alone cannot fail
}

GrpcPsClient::~GrpcPsClient() {
  cq_->Shutdown();
  void* tag;
  bool ok;
  while (cq_->Next(&tag, &ok)) {
  }
}

absl::Status GrpcPsClient::Connect(const std::vector<std::string>& shard_addresses,
                                   const std::vector<std::string>& backup_addresses) {
  const size_t n = std::max<size_t>(1, shard_addresses.size());
  std::vector<Shard> shards(n);
  for (size_t i = 0; i < n; ++i) {
    std::string address = i < shard_addresses.size() ? shard_addresses[i] : "";
    // Only shard 0 may be the coordinator's channel (""): a shard listed
    // without an address (not serving yet) stays where it was.
    if (address.empty() && i > 0 && i < shards_.size()) address = shards_[i].address;
    const std::string backup = i < backup_addresses.size() ? backup_addresses[i] : "";
    Shard& shard = shards[i];
    // Keep the connections (and the incarnation seen) of a shard that stays.
    if (i < shards_.size() && shards_[i].address == address && shards_[i].other_address == backup) {
      shard = std::move(shards_[i]);
      continue;
    }
    shard.address = address;
    // The same process (or the backup calls had moved to, now the primary)
    // under a new map: its incarnation stays known.
    if (i < shards_.size()) {
      if (shards_[i].address == address || shards_[i].other_address == address) {
        shard.last_incarnation = shards_[i].last_incarnation;
      }
      shard.pushes_acknowledged = shards_[i].pushes_acknowledged;
      shard.last_acknowledged_request = shards_[i].last_acknowledged_request;
    }
    std::shared_ptr<grpc::Channel> channel = coordinator_;
    if (!address.empty()) {
      FULCRUM_ASSIGN_OR_RETURN(channel, OpenChannel(address, security_));
    }
    shard.channel = channel;
    shard.generic = std::make_unique<grpc::GenericStub>(channel);
    if (!backup.empty()) {
      FULCRUM_ASSIGN_OR_RETURN(shard.other_channel, OpenChannel(backup, security_));
      shard.other_address = backup;
      shard.other = std::make_unique<grpc::GenericStub>(shard.other_channel);
    }
  }
  shards_ = std::move(shards);
  return absl::OkStatus();
}

std::vector<uint64_t> GrpcPsClient::PushesAcknowledged() const {
  std::vector<uint64_t> out;
  for (const Shard& shard : shards_) out.push_back(shard.pushes_acknowledged);
  return out;
}

void GrpcPsClient::CountAcknowledged(uint64_t request_id) {
  for (Shard& shard : shards_) {
    // Request ids grow: a retry of one already counted is not counted again.
    if (!shard.last_call_ok || request_id <= shard.last_acknowledged_request) continue;
    ++shard.pushes_acknowledged;
    shard.last_acknowledged_request = request_id;
  }
}

void GrpcPsClient::RedialIfNotConnected(size_t index, const grpc::Status& status) {
  Shard& shard = shards_[index];
  if ((status.error_code() != grpc::StatusCode::UNAVAILABLE &&
       status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) ||
      shard.address.empty()) {
    return;
  }
  const grpc_connectivity_state state = shard.channel->GetState(/*try_to_connect=*/false);
  if (state == GRPC_CHANNEL_READY || state == GRPC_CHANNEL_IDLE) return;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = OpenChannel(shard.address, security_);
  if (!channel.ok()) return;
  FULCRUM_LOG(INFO) << "shard " << index << " at " << shard.address
                    << " not connected; dialling it afresh";
  shard.channel = *channel;
  shard.generic = std::make_unique<grpc::GenericStub>(shard.channel);
}

void GrpcPsClient::MoveIfUnavailable(size_t index, const grpc::Status& status) {
  Shard& shard = shards_[index];
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE || shard.other == nullptr) return;
  // A backup takes over within about a second of its primary's death: stay
  // with it that long before trying the primary again.
  constexpr absl::Duration kTakeover = absl::Seconds(2);
  const absl::Time now = absl::Now();
  if (IsBackupNotServing(status.error_message()) && now - shard.moved_at < kTakeover) return;
  std::swap(shard.channel, shard.other_channel);
  std::swap(shard.generic, shard.other);
  std::swap(shard.address, shard.other_address);
  shard.moved_at = now;
  FULCRUM_LOG(INFO) << "shard " << index << " unavailable (" << status.error_message()
                    << "); calling its other process at "
                    << (shard.address.empty() ? "the coordinator" : shard.address);
}

void GrpcPsClient::PlaceKeys(const ParameterBatch& batch,
                             std::vector<KeyPlacement>* placements) const {
  const ShardMap map(shards_.size());
  placements->resize(batch.sparse.size());
  for (size_t t = 0; t < batch.sparse.size(); ++t) {
    const std::vector<uint64_t>& keys = batch.sparse[t].keys;
    KeyPlacement& p = (*placements)[t];
    p.shard.resize(keys.size());
    p.position.resize(keys.size());
    std::vector<uint32_t> count(shards_.size(), 0);
    for (size_t k = 0; k < keys.size(); ++k) {
      const uint32_t s = shards_.size() == 1 ? 0 : map.ShardOfKey(keys[k]);
      p.shard[k] = s;
      p.position[k] = count[s]++;
    }
  }
}

void GrpcPsClient::BuildPullRequests(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                                     const ParameterBatch& batch,
                                     const std::vector<KeyPlacement>& placements,
                                     std::vector<PullRequest>* requests) const {
  const size_t n = shards_.size();
  const ShardMap map(n);
  requests->resize(n);
  for (size_t s = 0; s < n; ++s) {
    PullRequest& request = (*requests)[s];
    FillHeader(worker, ClockFor(clocks, s), shards_[s].last_incarnation, request.mutable_header());
    request.set_encoding(FLOAT32);
    for (const TensorSpec& t : batch.tensors) {
      const ElementRange range = map.DenseRange(ElementCount(t), s);
      if (range.empty()) continue;
      DenseSlice* slice = request.add_dense();
      slice->set_tensor(t.name());
      slice->set_offset(range.begin);
      slice->set_length(range.size());
    }
    for (const SparseRows& rows : batch.sparse) {
      SparseKeys* keys = request.add_sparse();
      keys->set_table(rows.table);
      keys->set_read_only(rows.read_only);
    }
  }
  for (size_t t = 0; t < batch.sparse.size(); ++t) {
    const SparseRows& rows = batch.sparse[t];
    for (size_t k = 0; k < rows.keys.size(); ++k) {
      (*requests)[placements[t].shard[k]].mutable_sparse(t)->add_keys(rows.keys[k]);
    }
  }
}

void GrpcPsClient::SizeOutputs(ParameterBatch* batch) {
  batch->dense.resize(batch->tensors.size());
  for (size_t i = 0; i < batch->tensors.size(); ++i) {
    batch->dense[i].resize(ElementCount(batch->tensors[i]));
  }
  for (SparseRows& rows : batch->sparse) rows.values.resize(rows.keys.size() * rows.dim);
}

std::vector<absl::Span<float>> GrpcPsClient::DenseTargets(const PullRequest& request,
                                                          ParameterBatch* batch) {
  std::vector<absl::Span<float>> targets;
  // Slices were asked for tensor by tensor, skipping empty ranges.
  size_t tensor = 0;
  for (const DenseSlice& slice : request.dense()) {
    while (batch->tensors[tensor].name() != slice.tensor()) ++tensor;
    targets.push_back(absl::MakeSpan(batch->dense[tensor]).subspan(slice.offset(), slice.length()));
  }
  return targets;
}

absl::StatusOr<ServerVersion> GrpcPsClient::ReadPullResponses(
    const std::vector<PullReply>& replies, const std::vector<KeyPlacement>& placements,
    ParameterBatch* batch) {
  const size_t n = shards_.size();
  ServerVersion version;
  version.rounds.resize(n);
  std::vector<float> scratch;
  for (size_t s = 0; s < n; ++s) {
    const PullRequest& request = *replies[s].request;
    const PullResponse& response = replies[s].response;
    if (response.dense_size() != request.dense_size() ||
        response.sparse_size() != static_cast<int>(batch->sparse.size())) {
      return absl::DataLossError(
          absl::StrCat("shard ", s, " returned other slices or tables than asked for"));
    }
    for (int d = 0; d < response.dense_size(); ++d) {
      if (replies[s].in_place[d]) continue;
      absl::Status decoded = DecodeFloat32(response.dense(d).encoding(), response.dense(d).data(),
                                           replies[s].targets[d], /*require_finite=*/false);
      if (!decoded.ok()) {
        return absl::DataLossError(
            absl::StrCat("pull of ", request.dense(d).tensor(), ": ", decoded.message()));
      }
    }
    for (size_t t = 0; t < batch->sparse.size(); ++t) {
      SparseRows& rows = batch->sparse[t];
      const SparseValues& values = response.sparse(t);
      const size_t count = request.sparse(t).keys_size();
      if (n == 1) {  // rows arrive in the order asked: decode in place
        absl::Status decoded =
            DecodeFloat32(values.encoding(), values.data(), absl::MakeSpan(rows.values), false);
        if (!decoded.ok()) {
          return absl::DataLossError(
              absl::StrCat("pull of table ", rows.table, ": ", decoded.message()));
        }
        continue;
      }
      absl::StatusOr<absl::Span<const float>> view =
          Float32View(values.encoding(), values.data(), count * rows.dim, false, &scratch);
      if (!view.ok()) {
        return absl::DataLossError(
            absl::StrCat("pull of table ", rows.table, ": ", view.status().message()));
      }
      const KeyPlacement& p = placements[t];
      for (size_t k = 0; k < rows.keys.size(); ++k) {
        if (p.shard[k] != s) continue;
        std::copy_n(view->data() + size_t{p.position[k]} * rows.dim, rows.dim,
                    rows.values.data() + k * rows.dim);
      }
    }
    const ResponseHeader& header = response.header();
    shards_[s].last_incarnation = header.incarnation();
    version.rounds[s] = header.round();
    version.wait_seconds = std::max(version.wait_seconds, header.wait_seconds());
  }
  version.version = replies[0].response.header().version();
  version.round = replies[0].response.header().round();
  version.incarnation = replies[0].response.header().incarnation();
  return version;
}

absl::Status GrpcPsClient::BuildPushRequests(const WorkerIdentity& worker,
                                             absl::Span<const int64_t> clocks, uint64_t request_id,
                                             const ParameterBatch& batch, uint32_t batch_examples,
                                             std::vector<PushRequest>* requests,
                                             std::vector<DenseViews>* views) const {
  if (batch.dense.size() != batch.tensors.size()) {
    return absl::InvalidArgumentError("gradient set does not match its tensors");
  }
  // float32 gradients are sent from their own memory (common/rpc/wire.h).
  const bool zero_copy = gradient_encoding_ == FLOAT32;
  views->clear();
  if (zero_copy) views->resize(shards_.size());
  std::vector<KeyPlacement> placements;
  PlaceKeys(batch, &placements);
  const size_t n = shards_.size();
  const ShardMap map(n);
  requests->resize(n);
  for (size_t s = 0; s < n; ++s) {
    PushRequest& request = (*requests)[s];
    FillHeader(worker, ClockFor(clocks, s), shards_[s].last_incarnation, request.mutable_header());
    request.mutable_header()->set_request_id(request_id);
    request.set_batch_examples(batch_examples);
    for (size_t i = 0; i < batch.tensors.size(); ++i) {
      const uint64_t elements = batch.dense[i].size();
      const ElementRange range = map.DenseRange(elements, s);
      if (range.empty()) continue;
      DenseValues* values = request.add_dense();
      values->mutable_slice()->set_tensor(batch.tensors[i].name());
      values->mutable_slice()->set_offset(range.begin);
      values->mutable_slice()->set_length(range.size());
      const absl::Span<const float> part =
          absl::MakeConstSpan(batch.dense[i]).subspan(range.begin, range.size());
      if (zero_copy) {
        values->set_encoding(FLOAT32);
        (*views)[s].push_back(part);
        continue;
      }
      Encoding encoding = gradient_encoding_;
      // Indices cost 4 bytes a value: past half nonzeros float32 is smaller.
      if (encoding == INDEXED_NONZEROS &&
          (part.size() > UINT32_MAX ||
           2 * static_cast<size_t>(
                   std::count_if(part.begin(), part.end(), [](float v) { return v != 0.0f; })) >=
               part.size())) {
        encoding = FLOAT32;
      }
      values->set_encoding(encoding);
      EncodeValues(encoding, part, values->mutable_data());
    }
    for (const SparseRows& rows : batch.sparse) {
      SparseValues* values = request.add_sparse();
      values->set_table(rows.table);
      values->set_encoding(FLOAT32);
    }
  }
  for (size_t t = 0; t < batch.sparse.size(); ++t) {
    const SparseRows& rows = batch.sparse[t];
    if (rows.values.size() != rows.keys.size() * rows.dim) {
      return absl::InvalidArgumentError(
          absl::StrCat("gradients of table ", rows.table, " are sized unlike its keys"));
    }
    if (n == 1) {
      SparseValues* values = (*requests)[0].mutable_sparse(t);
      values->mutable_keys()->Add(rows.keys.begin(), rows.keys.end());
      EncodeFloat32(rows.values, values->mutable_data());
      continue;
    }
    for (size_t k = 0; k < rows.keys.size(); ++k) {
      SparseValues* values = (*requests)[placements[t].shard[k]].mutable_sparse(t);
      values->add_keys(rows.keys[k]);
      EncodeFloat32(absl::MakeConstSpan(rows.values).subspan(k * rows.dim, rows.dim),
                    values->mutable_data());
    }
  }
  return absl::OkStatus();
}

namespace {

template <typename Message>
grpc::ByteBuffer BytesOf(const Message& message) {
  grpc::ByteBuffer bytes;
  bool own_buffer = false;
  grpc::SerializationTraits<Message>::Serialize(message, &bytes, &own_buffer).IgnoreError();
  return bytes;
}

}  // namespace

absl::Status GrpcPsClient::CallAllRaw(const std::string& method,
                                      const std::vector<grpc::ByteBuffer>& requests,
                                      std::vector<grpc::ByteBuffer>* replies) {
  return CallAll(requests, replies,
                 [this, &method](const Shard& shard, grpc::ClientContext* context,
                                 const grpc::ByteBuffer& request) {
                   auto call = shard.generic->PrepareUnaryCall(context, method, request, cq_.get());
                   call->StartCall();
                   return call;
                 });
}

absl::StatusOr<ServerVersion> GrpcPsClient::Pull(const WorkerIdentity& worker,
                                                 absl::Span<const int64_t> clocks,
                                                 ParameterBatch* batch) {
  std::vector<KeyPlacement> placements;
  PlaceKeys(*batch, &placements);
  std::vector<PullRequest> requests;
  BuildPullRequests(worker, clocks, *batch, placements, &requests);
  const size_t n = requests.size();
  std::vector<grpc::ByteBuffer> bytes;
  for (const PullRequest& request : requests) bytes.push_back(BytesOf(request));
  std::vector<grpc::ByteBuffer> replies;
  FULCRUM_RETURN_IF_ERROR(CallAllRaw("/fulcrum.ParameterService/Pull", bytes, &replies));
  // Dense values go from the reply's bytes straight into the batch.
  SizeOutputs(batch);
  std::vector<PullReply> read(n);
  for (size_t s = 0; s < n; ++s) {
    PullReply& r = read[s];
    r.request = &requests[s];
    r.targets = DenseTargets(requests[s], batch);
    FULCRUM_RETURN_IF_ERROR(
        FromShard(s, n, ReadPullResponse(&replies[s], r.targets, &r.response, &r.in_place)));
  }
  return ReadPullResponses(read, placements, batch);
}

absl::StatusOr<ServerVersion> GrpcPsClient::Push(const WorkerIdentity& worker,
                                                 absl::Span<const int64_t> clocks,
                                                 uint64_t request_id, const ParameterBatch& batch,
                                                 uint32_t batch_examples) {
  std::vector<PushRequest> requests;
  std::vector<DenseViews> views;
  FULCRUM_RETURN_IF_ERROR(
      BuildPushRequests(worker, clocks, request_id, batch, batch_examples, &requests, &views));
  const size_t n = requests.size();
  std::vector<grpc::ByteBuffer> bytes;
  for (size_t s = 0; s < n; ++s) {
    bytes.push_back(views.empty() ? BytesOf(requests[s]) : PushBytes(&requests[s], views[s]));
  }
  std::vector<grpc::ByteBuffer> replies;
  const absl::Status called = CallAllRaw("/fulcrum.ParameterService/Push", bytes, &replies);
  CountAcknowledged(request_id);
  FULCRUM_RETURN_IF_ERROR(called);
  ServerVersion version;
  version.rounds.resize(n);
  for (size_t s = 0; s < n; ++s) {
    PushResponse response;
    if (!grpc::SerializationTraits<PushResponse>::Deserialize(&replies[s], &response).ok()) {
      return FromShard(s, n, absl::DataLossError("unreadable reply from the server"));
    }
    const ResponseHeader& header = response.header();
    shards_[s].last_incarnation = header.incarnation();
    version.rounds[s] = header.round();
    if (s == 0) {
      version.version = header.version();
      version.round = header.round();
      version.incarnation = header.incarnation();
    }
  }
  return version;
}

absl::StatusOr<ServerVersion> GrpcPsClient::PushPull(
    const WorkerIdentity& worker, absl::Span<const int64_t> push_clocks, uint64_t request_id,
    const ParameterBatch& gradients, uint32_t batch_examples, absl::Span<const int64_t> pull_clocks,
    ParameterBatch* params) {
  std::vector<PushRequest> pushes;
  std::vector<DenseViews> views;
  FULCRUM_RETURN_IF_ERROR(BuildPushRequests(worker, push_clocks, request_id, gradients,
                                            batch_examples, &pushes, &views));
  std::vector<KeyPlacement> pull_placements;
  PlaceKeys(*params, &pull_placements);
  std::vector<PullRequest> pulls;
  BuildPullRequests(worker, pull_clocks, *params, pull_placements, &pulls);
  const size_t n = shards_.size();
  std::vector<PushPullRequest> requests(n);
  std::vector<grpc::ByteBuffer> bytes;
  for (size_t s = 0; s < n; ++s) {
    requests[s].mutable_push()->Swap(&pushes[s]);
    requests[s].mutable_pull()->Swap(&pulls[s]);
    bytes.push_back(views.empty() ? BytesOf(requests[s]) : PushPullBytes(&requests[s], views[s]));
  }
  std::vector<grpc::ByteBuffer> replies;
  const absl::Status called = CallAllRaw("/fulcrum.ParameterService/PushPull", bytes, &replies);
  CountAcknowledged(request_id);
  FULCRUM_RETURN_IF_ERROR(called);
  SizeOutputs(params);
  std::vector<PullReply> read(n);
  for (size_t s = 0; s < n; ++s) {
    PullReply& r = read[s];
    r.request = &requests[s].pull();
    r.targets = DenseTargets(requests[s].pull(), params);
    PushPullResponse response;
    FULCRUM_RETURN_IF_ERROR(
        FromShard(s, n, ReadPushPullResponse(&replies[s], r.targets, &response, &r.in_place)));
    r.response.Swap(response.mutable_pull());
  }
  return ReadPullResponses(read, pull_placements, params);
}

}  // namespace fulcrum
