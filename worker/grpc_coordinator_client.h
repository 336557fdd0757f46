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
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "proto/coordinator.grpc.pb.h"
#include "worker/coordinator_client.h"

namespace fulcrum {

// Thread-safe. A replicated coordinator has two processes (one serving, its
// backup answering UNAVAILABLE until it takes over): a call that finds one
// unavailable fails, and the next call goes to the next channel.
class GrpcCoordinatorClient final : public CoordinatorClient {
 public:
  // `auth_token` (may be empty) goes with every call as a bearer token.
  GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel, absl::Duration rpc_timeout,
                        std::string auth_token = "");
  using Dial = std::function<absl::StatusOr<std::shared_ptr<grpc::Channel>>(const std::string&)>;
  // `addresses` (at least one): the coordinator's processes, dialled with
  // `dial`, which also dials the addresses LearnAddresses adds.
  static absl::StatusOr<std::unique_ptr<GrpcCoordinatorClient>> Create(
      const std::vector<std::string>& addresses, Dial dial, absl::Duration rpc_timeout,
      std::string auth_token = "");

  absl::StatusOr<RegisterWorkerResponse> RegisterWorker(
      const RegisterWorkerRequest& request) override;
  absl::StatusOr<HeartbeatResponse> Heartbeat(const HeartbeatRequest& request) override;
  absl::StatusOr<AcquirePartitionResponse> AcquirePartition(
      const AcquirePartitionRequest& request) override;
  absl::Status CompletePartition(const CompletePartitionRequest& request) override;
  absl::Status ReportEval(const ReportEvalRequest& request) override;
  void LearnAddresses(const std::vector<std::string>& addresses) override;

 private:
  template <typename Request, typename Response, typename Method>
  absl::StatusOr<Response> Call(Method method, const Request& request);

  Dial dial_;  // null: addresses are not learned
  absl::Mutex mu_;
  // By address ("" for a channel given without one); the one called now.
  std::vector<std::pair<std::string, std::unique_ptr<Coordinator::Stub>>> stubs_
      ABSL_GUARDED_BY(mu_);
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
  const absl::Duration rpc_timeout_;
  const std::string auth_token_;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_GRPC_COORDINATOR_CLIENT_H_
