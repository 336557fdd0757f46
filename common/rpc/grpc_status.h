// Conversion between absl::Status and grpc::Status. Fulcrum's cores speak
// absl::Status; only the RPC edge converts.
#ifndef FULCRUM_COMMON_RPC_GRPC_STATUS_H_
#define FULCRUM_COMMON_RPC_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace fulcrum {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_RPC_GRPC_STATUS_H_
