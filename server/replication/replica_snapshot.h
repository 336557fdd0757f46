// A shard's state as its primary sends it to a new backup (ReplicaSnapshot,
// proto/shard_control.proto): the one place that encodes and decodes it.
#ifndef FULCRUM_SERVER_REPLICATION_REPLICA_SNAPSHOT_H_
#define FULCRUM_SERVER_REPLICATION_REPLICA_SNAPSHOT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "proto/shard_control.pb.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

// A ReplicaState as sent (`incarnation`: the replica set's, which a backup
// serves under once it takes over; `primary_process`: the sender's own id).
ReplicaSnapshot EncodeReplicaState(const ReplicaState& state, uint32_t shard_index,
                                   uint32_t num_shards, uint64_t incarnation,
                                   uint64_t primary_process);
// INVALID_ARGUMENT / DATA_LOSS for a snapshot that does not decode.
absl::StatusOr<ReplicaState> DecodeReplicaState(const ReplicaSnapshot& snapshot);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_REPLICATION_REPLICA_SNAPSHOT_H_
