// Asks a server's standard gRPC health service (grpc.health.v1.Health/Check,
// for the whole server) whether it is SERVING.
#ifndef FULCRUM_COMMON_RPC_HEALTH_CHECK_H_
#define FULCRUM_COMMON_RPC_HEALTH_CHECK_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"

namespace fulcrum {

// OK if the server answers SERVING within `timeout`; the call's error, or
// UNAVAILABLE for any other answer, otherwise. Thread-safe.
absl::Status CheckServing(const std::shared_ptr<grpc::Channel>& channel, absl::Duration timeout);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_RPC_HEALTH_CHECK_H_
