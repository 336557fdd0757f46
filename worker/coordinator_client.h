// CoordinatorClient: the worker's calls to the coordinator, apart from the
// transport. GrpcCoordinatorClient talks gRPC with a deadline on every call.
#ifndef FULCRUM_WORKER_COORDINATOR_CLIENT_H_
#define FULCRUM_WORKER_COORDINATOR_CLIENT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "proto/fulcrum.grpc.pb.h"

namespace fulcrum {

// Implementations must be safe to call from one thread at a time.
class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;
  virtual absl::StatusOr<RegisterWorkerResponse> RegisterWorker(
      const RegisterWorkerRequest& request) = 0;
  virtual absl::StatusOr<ReportProgressResponse> ReportProgress(
      const ReportProgressRequest& request) = 0;
};

class GrpcCoordinatorClient final : public CoordinatorClient {
 public:
  GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel,
                        absl::Duration rpc_timeout);

  absl::StatusOr<RegisterWorkerResponse> RegisterWorker(
      const RegisterWorkerRequest& request) override;
  absl::StatusOr<ReportProgressResponse> ReportProgress(
      const ReportProgressRequest& request) override;

 private:
  std::unique_ptr<Coordinator::Stub> stub_;
  const absl::Duration rpc_timeout_;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_COORDINATOR_CLIENT_H_
