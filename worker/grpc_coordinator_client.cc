#include "worker/grpc_coordinator_client.h"

#include "common/rpc/grpc_status.h"
#include "common/rpc/security.h"
#include "grpcpp/client_context.h"

namespace fulcrum {

GrpcCoordinatorClient::GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel,
                                             absl::Duration rpc_timeout)
    : GrpcCoordinatorClient(Dial(), rpc_timeout) {
  stubs_.Add("", std::move(channel));
}

absl::StatusOr<std::unique_ptr<GrpcCoordinatorClient>> GrpcCoordinatorClient::Create(
    std::shared_ptr<grpc::Channel> channel, const std::vector<std::string>& addresses, Dial dial,
    absl::Duration rpc_timeout) {
  if (addresses.empty()) return absl::InvalidArgumentError("no coordinator address");
  std::unique_ptr<GrpcCoordinatorClient> client(
      new GrpcCoordinatorClient(std::move(dial), rpc_timeout));
  client->stubs_.Add(addresses[0], std::move(channel));
  if (absl::Status s = client->stubs_.Learn({addresses.begin() + 1, addresses.end()}); !s.ok()) {
    return s;
  }
  return client;
}

// One unary call with the deadline (to the coordinator's
// other process as well when the one called is unavailable).
template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> GrpcCoordinatorClient::Call(Method method, const Request& request) {
  Response response;
  absl::Status s = stubs_.Call([&](Coordinator::Stub* stub) {
    grpc::ClientContext context;
    SetTimeout(rpc_timeout_, &context);
    response.Clear();
    return FromGrpcStatus((stub->*method)(&context, request, &response));
  });
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
