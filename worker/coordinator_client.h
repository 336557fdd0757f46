// CoordinatorClient: the worker's calls to the coordinator, apart from the
// transport. GrpcCoordinatorClient talks gRPC with a deadline on every call.
#ifndef FULCRUM_WORKER_COORDINATOR_CLIENT_H_
#define FULCRUM_WORKER_COORDINATOR_CLIENT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "proto/coordinator.grpc.pb.h"

namespace fulcrum {

// Implementations must be thread-safe: the worker heartbeats from its own
// thread while the training loop acquires and completes partitions.
class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;
  virtual absl::StatusOr<RegisterWorkerResponse> RegisterWorker(
      const RegisterWorkerRequest& request) = 0;
  virtual absl::StatusOr<HeartbeatResponse> Heartbeat(
      const HeartbeatRequest& request) = 0;
  virtual absl::StatusOr<AcquirePartitionResponse> AcquirePartition(
      const AcquirePartitionRequest& request) = 0;
  virtual absl::Status CompletePartition(
      const CompletePartitionRequest& request) = 0;
  virtual absl::Status ReportEval(const ReportEvalRequest& request) = 0;
};

class GrpcCoordinatorClient final : public CoordinatorClient {
 public:
  // `auth_token` (may be empty) goes with every call as a bearer token.
  GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel,
                        absl::Duration rpc_timeout, std::string auth_token = "");

  absl::StatusOr<RegisterWorkerResponse> RegisterWorker(
      const RegisterWorkerRequest& request) override;
  absl::StatusOr<HeartbeatResponse> Heartbeat(
      const HeartbeatRequest& request) override;
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

#endif  // FULCRUM_WORKER_COORDINATOR_CLIENT_H_
