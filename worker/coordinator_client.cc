#include "worker/coordinator_client.h"

#include "common/grpc_status.h"
#include "grpcpp/client_context.h"

namespace fulcrum {
namespace {

// One unary call with the client's deadline.
template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> Call(Coordinator::Stub* stub, Method method,
                              const Request& request, absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  Response response;
  absl::Status s = FromGrpcStatus((stub->*method)(&context, request, &response));
  if (!s.ok()) return s;
  return response;
}

}  // namespace

GrpcCoordinatorClient::GrpcCoordinatorClient(
    std::shared_ptr<grpc::Channel> channel, absl::Duration rpc_timeout)
    : stub_(Coordinator::NewStub(channel)), rpc_timeout_(rpc_timeout) {}

absl::StatusOr<RegisterWorkerResponse> GrpcCoordinatorClient::RegisterWorker(
    const RegisterWorkerRequest& request) {
  return Call<RegisterWorkerRequest, RegisterWorkerResponse>(
      stub_.get(), &Coordinator::Stub::RegisterWorker, request, rpc_timeout_);
}

absl::StatusOr<HeartbeatResponse> GrpcCoordinatorClient::Heartbeat(
    const HeartbeatRequest& request) {
  return Call<HeartbeatRequest, HeartbeatResponse>(
      stub_.get(), &Coordinator::Stub::Heartbeat, request, rpc_timeout_);
}

absl::StatusOr<AcquirePartitionResponse> GrpcCoordinatorClient::AcquirePartition(
    const AcquirePartitionRequest& request) {
  return Call<AcquirePartitionRequest, AcquirePartitionResponse>(
      stub_.get(), &Coordinator::Stub::AcquirePartition, request, rpc_timeout_);
}

absl::Status GrpcCoordinatorClient::CompletePartition(
    const CompletePartitionRequest& request) {
  return Call<CompletePartitionRequest, CompletePartitionResponse>(
             stub_.get(), &Coordinator::Stub::CompletePartition, request,
             rpc_timeout_)
      .status();
}

absl::Status GrpcCoordinatorClient::ReportEval(const ReportEvalRequest& request) {
  return Call<ReportEvalRequest, ReportEvalResponse>(
             stub_.get(), &Coordinator::Stub::ReportEval, request, rpc_timeout_)
      .status();
}

}  // namespace fulcrum
