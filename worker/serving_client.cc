#include "worker/serving_client.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/rpc/channel.h"
#include "common/rpc/grpc_status.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "proto/serving.grpc.pb.h"

namespace fulcrum {
namespace {

class GrpcServingClient final : public ServingClient {
 public:
  GrpcServingClient(std::shared_ptr<grpc::Channel> channel, absl::Duration timeout)
      : stub_(ModelServing::NewStub(channel)), timeout_(timeout) {}

  absl::Status Lookup(const std::string& table, absl::Span<const uint64_t> ids,
                      std::vector<float>* rows, uint32_t dim, std::vector<bool>* found,
                      uint64_t* checkpoint) override {
    LookupRequest request;
    request.set_table(table);
    request.mutable_ids()->Add(ids.begin(), ids.end());
    request.set_dim(dim);
    LookupResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    const grpc::Status status = stub_->Lookup(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    const size_t floats = ids.size() * response.dim();
    if (response.rows().size() != floats * sizeof(float) ||
        response.found_size() != static_cast<int>(ids.size())) {
      return absl::DataLossError(absl::StrCat("the server answered ", response.rows().size(),
                                              " bytes for ", ids.size(), " ids of dim ",
                                              response.dim()));
    }
    rows->resize(floats);
    std::memcpy(rows->data(), response.rows().data(), response.rows().size());
    if (found != nullptr) found->assign(response.found().begin(), response.found().end());
    if (checkpoint != nullptr) *checkpoint = response.checkpoint();
    return absl::OkStatus();
  }

  absl::Status LookupBatch(absl::Span<const TableLookup> lookups, std::vector<TableRows>* out,
                           uint64_t* checkpoint) override {
    LookupBatchRequest request;
    for (const TableLookup& lookup : lookups) {
      LookupRequest* r = request.add_lookups();
      r->set_table(lookup.table);
      r->mutable_ids()->Add(lookup.ids.begin(), lookup.ids.end());
      r->set_dim(lookup.dim);
    }
    LookupBatchResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    const grpc::Status status = stub_->LookupBatch(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    if (response.results_size() != static_cast<int>(lookups.size())) {
      return absl::DataLossError(absl::StrCat("the server answered ", response.results_size(),
                                              " lookups of ", lookups.size()));
    }
    out->assign(lookups.size(), TableRows());
    for (size_t i = 0; i < lookups.size(); ++i) {
      const LookupResponse& result = response.results(static_cast<int>(i));
      const size_t floats = lookups[i].ids.size() * result.dim();
      if (result.rows().size() != floats * sizeof(float) ||
          result.found_size() != static_cast<int>(lookups[i].ids.size())) {
        return absl::DataLossError(absl::StrCat("lookup ", i, " answered ", result.rows().size(),
                                                " bytes for ", lookups[i].ids.size(),
                                                " ids of dim ", result.dim()));
      }
      TableRows& rows = (*out)[i];
      rows.dim = result.dim();
      rows.rows.resize(floats);
      std::memcpy(rows.rows.data(), result.rows().data(), result.rows().size());
      rows.found.assign(result.found().begin(), result.found().end());
    }
    if (checkpoint != nullptr) *checkpoint = response.checkpoint();
    return absl::OkStatus();
  }

  absl::StatusOr<std::map<std::string, ServedTensorValues>> ReadTensors(
      const std::vector<std::string>& names) override {
    ReadTensorsRequest request;
    for (const std::string& name : names) request.add_names(name);
    ReadTensorsResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    const grpc::Status status = stub_->ReadTensors(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    std::map<std::string, ServedTensorValues> out;
    for (const ServedTensor& t : response.tensors()) {
      ServedTensorValues& values = out[t.name()];
      values.shape.assign(t.shape().begin(), t.shape().end());
      values.values.resize(t.values().size() / sizeof(float));
      std::memcpy(values.values.data(), t.values().data(), values.values.size() * sizeof(float));
    }
    return out;
  }

  absl::StatusOr<std::string> StatusJson() override {
    ServingStatus response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    const grpc::Status status =
        stub_->GetServingStatus(&context, ServingStatusRequest(), &response);
    if (!status.ok()) return FromGrpcStatus(status);
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    if (!google::protobuf::util::MessageToJsonString(response, &json, options).ok()) {
      return absl::InternalError("status does not print as JSON");
    }
    return json;
  }

 private:
  const std::unique_ptr<ModelServing::Stub> stub_;
  const absl::Duration timeout_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ServingClient>> ServingClient::Connect(
    const ServingClientOptions& options) {
  ClientSecurityOptions security;
  security.tls_ca = options.tls_ca;
  security.tls_cert = options.tls_cert;
  security.tls_key = options.tls_key;
  security.tls_server_name = options.tls_server_name;
  security.auth_token = options.auth_token;
  FULCRUM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                           OpenChannel(options.address, security));
  return std::unique_ptr<ServingClient>(new GrpcServingClient(channel, options.timeout));
}

}  // namespace fulcrum
