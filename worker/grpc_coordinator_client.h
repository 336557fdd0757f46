// GrpcCoordinatorClient: a CoordinatorClient over gRPC, with a deadline on
// every call.
#ifndef FULCRUM_WORKER_GRPC_COORDINATOR_CLIENT_H_
#define FULCRUM_WORKER_GRPC_COORDINATOR_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "proto/coordinator.grpc.pb.h"
#include "worker/coordinator_client.h"

namespace fulcrum {

// Thread-safe.
class GrpcCoordinatorClient final : public CoordinatorClient {
 public:
  // `auth_token` (may be empty) goes with every call as a bearer token.
  GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel, absl::Duration rpc_timeout,
                        std::string auth_token = "");

  absl::StatusOr<RegisterWorkerResponse> RegisterWorker(
      const RegisterWorkerRequest& request) override;
  absl::StatusOr<HeartbeatResponse> Heartbeat(const HeartbeatRequest& request) override;
  absl::StatusOr<AcquirePartitionResponse> AcquirePartition(
      const AcquirePartitionRequest& request) override;
  absl::Status CompletePartition(const CompletePartitionRequest& request) override;
  absl::Status ReportEval(const ReportEvalRequest& request) override;

 private:
  template <typename Request, typename Response, typename Method>
  absl::StatusOr<Response> Call(Method method, const Request& request);

  std::unique_ptr<Coordinator::Stub> stub_;
  const absl::Duration rpc_timeout_;
  const std::string auth_token_;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_GRPC_COORDINATOR_CLIENT_H_
