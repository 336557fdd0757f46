// CoordinatorClient: the worker's calls to the coordinator, apart from the
// transport (worker/grpc_coordinator_client.h talks gRPC).
#ifndef FULCRUM_WORKER_COORDINATOR_CLIENT_H_
#define FULCRUM_WORKER_COORDINATOR_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/coordinator.pb.h"

namespace fulcrum {

// Implementations must be thread-safe: the worker heartbeats from its own
// thread while the training loop acquires and completes partitions.
class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;
  virtual absl::StatusOr<RegisterWorkerResponse> RegisterWorker(
      const RegisterWorkerRequest& request) = 0;
  virtual absl::StatusOr<HeartbeatResponse> Heartbeat(const HeartbeatRequest& request) = 0;
  virtual absl::StatusOr<AcquirePartitionResponse> AcquirePartition(
      const AcquirePartitionRequest& request) = 0;
  virtual absl::Status CompletePartition(const CompletePartitionRequest& request) = 0;
  virtual absl::Status ReportEval(const ReportEvalRequest& request) = 0;
  // Where the coordinator's processes are, as the coordinator named them (a
  // replicated coordinator: its own address and its backup's): a client
  // that can dial them adds those it does not know, to move to when the one
  // it calls is unavailable. The default ignores them.
  virtual void LearnAddresses(const std::vector<std::string>& addresses) {}
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_COORDINATOR_CLIENT_H_
