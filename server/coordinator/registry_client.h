// RegistryClient: a shard process's calls to the coordinator's shard
// registry (proto/shard_control.proto, ShardRegistry), transport-neutral;
// GrpcRegistryClient (server/rpc/grpc_registry_client.h) is the gRPC adapter.
#ifndef FULCRUM_SERVER_COORDINATOR_REGISTRY_CLIENT_H_
#define FULCRUM_SERVER_COORDINATOR_REGISTRY_CLIENT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/shard_control.pb.h"

namespace fulcrum {

// A replicated coordinator has two processes: a call goes to the one that
// answered last, and Register moves on to the other when that one is
// unreachable (its backup may have taken over). Every call has a deadline.
// Thread-safe.
class RegistryClient {
 public:
  virtual ~RegistryClient() = default;

  // The coordinator's processes at `addresses` (the non-empty ones not known
  // yet); the first that cannot be dialled is the error.
  virtual absl::Status Learn(const std::vector<std::string>& addresses) = 0;
  // A shard's registration or report.
  virtual absl::StatusOr<RegisterShardResponse> Register(const RegisterShardRequest& request,
                                                         absl::Duration timeout) = 0;
  // A backup whose primary went silent asks to serve the shard.
  virtual absl::Status PromoteBackup(const PromoteBackupRequest& request,
                                     absl::Duration timeout) = 0;
  // A primary whose backup cannot be reached asks to go on without it.
  virtual absl::Status DropBackup(const DropBackupRequest& request, absl::Duration timeout) = 0;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_COORDINATOR_REGISTRY_CLIENT_H_
