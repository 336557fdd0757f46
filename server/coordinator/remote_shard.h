// RemoteShard: how the coordinator drives another shard's process, apart
// from the transport (server/rpc/grpc_remote_shard.h speaks ShardControl over
// gRPC; tests substitute their own).
#ifndef FULCRUM_SERVER_COORDINATOR_REMOTE_SHARD_H_
#define FULCRUM_SERVER_COORDINATOR_REMOTE_SHARD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/checkpoint.pb.h"
#include "server/shard/membership.h"

namespace fulcrum {

// One shard process, as reached at one address. Implementations must be
// thread-safe; every call ends by its timeout.
class RemoteShard {
 public:
  virtual ~RemoteShard() = default;

  // Sends the whole membership (the shard applies it unless it has a newer
  // one); returns the version the shard then has.
  virtual absl::StatusOr<uint64_t> SetMembership(const WorkerMembership& membership,
                                                 absl::Duration timeout) = 0;

  // Asks the shard to write its part of checkpoint `sequence` durably (a
  // delta on checkpoint `delta_of` if it can; 0: whole); returns the part's
  // file record.
  virtual absl::StatusOr<CheckpointManifest::ShardFile> WriteCheckpoint(uint64_t sequence,
                                                                        uint64_t delta_of,
                                                                        absl::Duration timeout) = 0;
};

// Connects to the shard process at `address` (as it registered).
using RemoteShardFactory = std::function<std::shared_ptr<RemoteShard>(const std::string& address)>;

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_COORDINATOR_REMOTE_SHARD_H_
