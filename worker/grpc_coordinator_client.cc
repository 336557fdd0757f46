#include "worker/grpc_coordinator_client.h"

#include "common/rpc/grpc_status.h"
#include "common/rpc/security.h"
#include "grpcpp/client_context.h"

namespace fulcrum {

GrpcCoordinatorClient::GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel,
                                             absl::Duration rpc_timeout, std::string auth_token)
    : GrpcCoordinatorClient(std::vector<std::shared_ptr<grpc::Channel>>{std::move(channel)},
                            rpc_timeout, std::move(auth_token)) {}

GrpcCoordinatorClient::GrpcCoordinatorClient(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels, absl::Duration rpc_timeout,
    std::string auth_token)
    : rpc_timeout_(rpc_timeout), auth_token_(std::move(auth_token)) {
  for (const std::shared_ptr<grpc::Channel>& channel : channels) {
    stubs_.push_back(Coordinator::NewStub(channel));
  }
}

// One unary call with the deadline and the token.
template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> GrpcCoordinatorClient::Call(Method method, const Request& request) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + rpc_timeout_));
  AttachToken(auth_token_, &context);
  Coordinator::Stub* stub = nullptr;
  {
    absl::MutexLock lock(&mu_);
    stub = stubs_[current_].get();
  }
  Response response;
  absl::Status s = FromGrpcStatus((stub->*method)(&context, request, &response));
  if (absl::IsUnavailable(s) && stubs_.size() > 1) {
    absl::MutexLock lock(&mu_);
    if (stubs_[current_].get() == stub) current_ = (current_ + 1) % stubs_.size();
  }
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<RegisterWorkerResponse> GrpcCoordinatorClient::RegisterWorker(
    const RegisterWorkerRequest& request) {
  return Call<RegisterWorkerRequest, RegisterWorkerResponse>(&Coordinator::Stub::RegisterWorker,
                                                             request);
}

absl::StatusOr<HeartbeatResponse> GrpcCoordinatorClient::Heartbeat(
    const HeartbeatRequest& request) {
  return Call<HeartbeatRequest, HeartbeatResponse>(&Coordinator::Stub::Heartbeat, request);
}

absl::StatusOr<AcquirePartitionResponse> GrpcCoordinatorClient::AcquirePartition(
    const AcquirePartitionRequest& request) {
  return Call<AcquirePartitionRequest, AcquirePartitionResponse>(
      &Coordinator::Stub::AcquirePartition, request);
}

absl::Status GrpcCoordinatorClient::CompletePartition(const CompletePartitionRequest& request) {
  return Call<CompletePartitionRequest, CompletePartitionResponse>(
             &Coordinator::Stub::CompletePartition, request)
      .status();
}

absl::Status GrpcCoordinatorClient::ReportEval(const ReportEvalRequest& request) {
  return Call<ReportEvalRequest, ReportEvalResponse>(&Coordinator::Stub::ReportEval, request)
      .status();
}

}  // namespace fulcrum
