#include "worker/grpc_coordinator_client.h"

#include "common/rpc/grpc_status.h"
#include "common/rpc/security.h"
#include "grpcpp/client_context.h"

namespace fulcrum {

GrpcCoordinatorClient::GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel,
                                             absl::Duration rpc_timeout, std::string auth_token)
    : rpc_timeout_(rpc_timeout), auth_token_(std::move(auth_token)) {
  stubs_.emplace_back("", Coordinator::NewStub(channel));
}

absl::StatusOr<std::unique_ptr<GrpcCoordinatorClient>> GrpcCoordinatorClient::Create(
    const std::vector<std::string>& addresses, Dial dial, absl::Duration rpc_timeout,
    std::string auth_token) {
  if (addresses.empty()) return absl::InvalidArgumentError("no coordinator address");
  absl::StatusOr<std::shared_ptr<grpc::Channel>> first = dial(addresses[0]);
  if (!first.ok()) return first.status();
  std::unique_ptr<GrpcCoordinatorClient> client(
      new GrpcCoordinatorClient(*first, rpc_timeout, std::move(auth_token)));
  client->dial_ = std::move(dial);
  {
    absl::MutexLock lock(&client->mu_);
    client->stubs_[0].first = addresses[0];
  }
  client->LearnAddresses({addresses.begin() + 1, addresses.end()});
  absl::MutexLock lock(&client->mu_);
  if (client->stubs_.size() != addresses.size()) {
    return absl::InvalidArgumentError("a coordinator address cannot be dialled");
  }
  return client;
}

void GrpcCoordinatorClient::LearnAddresses(const std::vector<std::string>& addresses) {
  if (!dial_) return;
  for (const std::string& address : addresses) {
    if (address.empty()) continue;
    {
      absl::MutexLock lock(&mu_);
      bool known = false;
      for (const auto& [known_address, stub] : stubs_) known = known || known_address == address;
      if (known) continue;
    }
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = dial_(address);
    if (!channel.ok()) continue;
    absl::MutexLock lock(&mu_);
    stubs_.emplace_back(address, Coordinator::NewStub(*channel));
  }
}

// One unary call with the deadline and the token, to the coordinator process
// called last; if that one is unavailable, to each other once (the backup
// may have taken over), and the next call starts at the one that answered.
template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> GrpcCoordinatorClient::Call(Method method, const Request& request) {
  size_t first = 0;
  size_t count = 0;
  {
    absl::MutexLock lock(&mu_);
    first = current_;
    count = stubs_.size();
  }
  absl::Status s;
  for (size_t attempt = 0; attempt < count; ++attempt) {
    const size_t index = (first + attempt) % count;
    Coordinator::Stub* stub = nullptr;
    {
      absl::MutexLock lock(&mu_);
      stub = stubs_[index].second.get();  // stubs are never removed
    }
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + rpc_timeout_));
    AttachToken(auth_token_, &context);
    Response response;
    s = FromGrpcStatus((stub->*method)(&context, request, &response));
    if (!absl::IsUnavailable(s)) {
      absl::MutexLock lock(&mu_);
      current_ = index;
      if (!s.ok()) return s;
      return response;
    }
  }
  return s;
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
