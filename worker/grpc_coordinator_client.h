// GrpcCoordinatorClient: a CoordinatorClient over gRPC, with a deadline on
// every call.
#ifndef FULCRUM_WORKER_GRPC_COORDINATOR_CLIENT_H_
#define FULCRUM_WORKER_GRPC_COORDINATOR_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/rpc/failover_stubs.h"
#include "grpcpp/channel.h"
#include "proto/coordinator.grpc.pb.h"
#include "worker/coordinator_client.h"

namespace fulcrum {

// Thread-safe. A replicated coordinator has two processes (one serving, its
// backup answering UNAVAILABLE until it takes over): a call that finds the
// one it calls unavailable goes to the other (common/rpc/failover_stubs.h).
class GrpcCoordinatorClient final : public CoordinatorClient {
 public:
  using Dial = FailoverStubs<Coordinator>::Dial;
  // The channels carry the bearer token, if any (ChannelOpener).
  GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel, absl::Duration rpc_timeout);
  // `channel` reaches addresses[0]; the other addresses (the coordinator's
  // other process), and those LearnAddresses adds, are dialled with `dial`.
  static absl::StatusOr<std::unique_ptr<GrpcCoordinatorClient>> Create(
      std::shared_ptr<grpc::Channel> channel, const std::vector<std::string>& addresses, Dial dial,
      absl::Duration rpc_timeout);

  absl::StatusOr<RegisterWorkerResponse> RegisterWorker(
      const RegisterWorkerRequest& request) override;
  absl::StatusOr<HeartbeatResponse> Heartbeat(const HeartbeatRequest& request) override;
  absl::StatusOr<AcquirePartitionResponse> AcquirePartition(
      const AcquirePartitionRequest& request) override;
  absl::Status CompletePartition(const CompletePartitionRequest& request) override;
  absl::Status ReportEval(const ReportEvalRequest& request) override;
  void LearnAddresses(const std::vector<std::string>& addresses) override {
    stubs_.Learn(addresses).IgnoreError();  // one that cannot be dialled is not called
  }

 private:
  GrpcCoordinatorClient(Dial dial, absl::Duration rpc_timeout)
      : stubs_(std::move(dial)), rpc_timeout_(rpc_timeout) {}
  template <typename Request, typename Response, typename Method>
  absl::StatusOr<Response> Call(Method method, const Request& request);

  FailoverStubs<Coordinator> stubs_;
  const absl::Duration rpc_timeout_;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_GRPC_COORDINATOR_CLIENT_H_
