#include "worker/ps_client.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/model_spec.h"
#include "common/payload.h"
#include "common/security.h"
#include "grpcpp/client_context.h"

namespace fulcrum {
namespace {

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

ServerVersion FromHeader(const ResponseHeader& header) {
  ServerVersion v;
  v.version = header.version();
  v.round = header.round();
  v.incarnation = header.incarnation();
  v.wait_seconds = header.wait_seconds();
  return v;
}

}  // namespace

grpc::ChannelArguments DefaultChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // Reconnect to a restarted server within a second, not gRPC's default of
  // up to two minutes; the callers' own retries add backoff and jitter.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return args;
}

GrpcPsClient::GrpcPsClient(std::shared_ptr<grpc::Channel> channel,
                           absl::Duration rpc_timeout, std::string auth_token)
    : stub_(ParameterService::NewStub(channel)),
      rpc_timeout_(rpc_timeout),
      auth_token_(std::move(auth_token)) {}

absl::StatusOr<ServerVersion> GrpcPsClient::Pull(uint64_t worker_id, int64_t clock,
                                                 ParameterBatch* batch) {
  PullRequest request;
  request.mutable_header()->set_worker_id(worker_id);
  request.mutable_header()->set_clock(clock);
  request.mutable_header()->set_incarnation(last_incarnation_);
  request.set_encoding(FLOAT32);
  for (const TensorSpec& t : batch->tensors) {
    DenseSlice* slice = request.add_dense();
    slice->set_tensor(t.name());
    slice->set_offset(0);
    slice->set_length(ElementCount(t));
  }
  for (const SparseRows& rows : batch->sparse) {
    SparseKeys* keys = request.add_sparse();
    keys->set_table(rows.table);
    keys->mutable_keys()->Add(rows.keys.begin(), rows.keys.end());
    keys->set_read_only(rows.read_only);
  }
  PullResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, rpc_timeout_);
  AttachToken(auth_token_, &context);
  absl::Status status = FromGrpcStatus(stub_->Pull(&context, request, &response));
  if (!status.ok()) return status;
  if (response.dense_size() != static_cast<int>(batch->tensors.size()) ||
      response.sparse_size() != static_cast<int>(batch->sparse.size())) {
    return absl::DataLossError("pull returned other slices or tables than asked for");
  }
  batch->dense.resize(batch->tensors.size());
  for (size_t i = 0; i < batch->tensors.size(); ++i) {
    std::vector<float>& dst = batch->dense[i];
    dst.resize(ElementCount(batch->tensors[i]));
    const DenseValues& values = response.dense(i);
    absl::Status decoded = DecodeFloat32(values.encoding(), values.data(),
                                         absl::MakeSpan(dst), /*require_finite=*/false);
    if (!decoded.ok()) {
      return absl::DataLossError(absl::StrCat("pull of ", batch->tensors[i].name(), ": ",
                                              decoded.message()));
    }
  }
  for (size_t i = 0; i < batch->sparse.size(); ++i) {
    SparseRows& rows = batch->sparse[i];
    rows.values.resize(rows.keys.size() * rows.dim);
    absl::Status decoded =
        DecodeFloat32(response.sparse(i).encoding(), response.sparse(i).data(),
                      absl::MakeSpan(rows.values), /*require_finite=*/false);
    if (!decoded.ok()) {
      return absl::DataLossError(
          absl::StrCat("pull of table ", rows.table, ": ", decoded.message()));
    }
  }
  last_incarnation_ = response.header().incarnation();
  return FromHeader(response.header());
}

absl::StatusOr<ServerVersion> GrpcPsClient::Push(uint64_t worker_id, int64_t clock,
                                                 uint64_t request_id,
                                                 const ParameterBatch& batch,
                                                 uint32_t batch_examples) {
  if (batch.dense.size() != batch.tensors.size()) {
    return absl::InvalidArgumentError("gradient set does not match its tensors");
  }
  PushRequest request;
  request.mutable_header()->set_worker_id(worker_id);
  request.mutable_header()->set_request_id(request_id);
  request.mutable_header()->set_clock(clock);
  request.mutable_header()->set_incarnation(last_incarnation_);
  request.set_batch_examples(batch_examples);
  for (size_t i = 0; i < batch.tensors.size(); ++i) {
    DenseValues* values = request.add_dense();
    values->mutable_slice()->set_tensor(batch.tensors[i].name());
    values->mutable_slice()->set_offset(0);
    values->mutable_slice()->set_length(batch.dense[i].size());
    values->set_encoding(FLOAT32);
    EncodeFloat32(batch.dense[i], values->mutable_data());
  }
  for (const SparseRows& rows : batch.sparse) {
    SparseValues* values = request.add_sparse();
    values->set_table(rows.table);
    values->mutable_keys()->Add(rows.keys.begin(), rows.keys.end());
    values->set_encoding(FLOAT32);
    EncodeFloat32(rows.values, values->mutable_data());
  }
  PushResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, rpc_timeout_);
  AttachToken(auth_token_, &context);
  absl::Status status = FromGrpcStatus(stub_->Push(&context, request, &response));
  if (!status.ok()) return status;
  last_incarnation_ = response.header().incarnation();
  return FromHeader(response.header());
}

}  // namespace fulcrum
