// GrpcRegistryClient: RegistryClient over gRPC (the ShardRegistry service).
#ifndef FULCRUM_SERVER_RPC_GRPC_REGISTRY_CLIENT_H_
#define FULCRUM_SERVER_RPC_GRPC_REGISTRY_CLIENT_H_

#include <memory>

#include "common/rpc/security.h"
#include "server/coordinator/registry_client.h"

namespace fulcrum {

// Dials the coordinator's processes with `security` (its bearer token
// included) as they are learnt.
std::unique_ptr<RegistryClient> NewGrpcRegistryClient(const ClientSecurityOptions& security);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_RPC_GRPC_REGISTRY_CLIENT_H_
