// GrpcRemoteShards: RemoteShard over gRPC (the ShardControl service).
#ifndef FULCRUM_SERVER_RPC_GRPC_REMOTE_SHARD_H_
#define FULCRUM_SERVER_RPC_GRPC_REMOTE_SHARD_H_

#include <memory>
#include <string>

#include "common/rpc/channel.h"
#include "server/coordinator/remote_shard.h"

namespace fulcrum {

// Dials shards with `opener` (its security setting, bearer token included).
RemoteShardFactory GrpcRemoteShards(ChannelOpener opener);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_RPC_GRPC_REMOTE_SHARD_H_
