#include "worker/coordinator_client.h"

#include "common/grpc_status.h"
#include "grpcpp/client_context.h"

namespace fulcrum {

GrpcCoordinatorClient::GrpcCoordinatorClient(
    std::shared_ptr<grpc::Channel> channel, absl::Duration rpc_timeout)
    : stub_(Coordinator::NewStub(channel)), rpc_timeout_(rpc_timeout) {}

absl::StatusOr<RegisterWorkerResponse> GrpcCoordinatorClient::RegisterWorker(
    const RegisterWorkerRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + rpc_timeout_));
  RegisterWorkerResponse response;
  absl::Status s =
      FromGrpcStatus(stub_->RegisterWorker(&context, request, &response));
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<ReportProgressResponse> GrpcCoordinatorClient::ReportProgress(
    const ReportProgressRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + rpc_timeout_));
  ReportProgressResponse response;
  absl::Status s =
      FromGrpcStatus(stub_->ReportProgress(&context, request, &response));
  if (!s.ok()) return s;
  return response;
}

}  // namespace fulcrum
