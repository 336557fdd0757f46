// GrpcRemoteShards: RemoteShard over gRPC (the ShardControl service).
#ifndef FULCRUM_SERVER_GRPC_REMOTE_SHARD_H_
#define FULCRUM_SERVER_GRPC_REMOTE_SHARD_H_

#include <memory>
#include <string>

#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "server/remote_shard.h"

namespace fulcrum {

// Dials shards with `credentials` and `channel_args`; every call carries
// `auth_token` (may be empty) as a bearer token.
RemoteShardFactory GrpcRemoteShards(std::shared_ptr<grpc::ChannelCredentials> credentials,
                                    grpc::ChannelArguments channel_args, std::string auth_token);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_GRPC_REMOTE_SHARD_H_
