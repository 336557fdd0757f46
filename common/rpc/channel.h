// How every Fulcrum client (worker, psctl, the coordinator dialling shards,
// shards dialling the coordinator) opens a gRPC channel.
#ifndef FULCRUM_COMMON_RPC_CHANNEL_H_
#define FULCRUM_COMMON_RPC_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/rpc/security.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace fulcrum {

// Channel arguments every Fulcrum client uses: message limits matching the
// server's, keepalive pings, and reconnection within a second of a restart.
grpc::ChannelArguments DefaultChannelArguments();

// Opens channels under one client security setting (plaintext when it
// names no CA), with DefaultChannelArguments: the certificates are read
// once, at Create. Thread-safe, copyable.
class ChannelOpener {
 public:
  // The error names the file that could not be read.
  static absl::StatusOr<ChannelOpener> Create(const ClientSecurityOptions& security);
  std::shared_ptr<grpc::Channel> Open(const std::string& address) const;

 private:
  ChannelOpener() = default;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  grpc::ChannelArguments args_;
};

// A channel to `address` with `security` (ChannelOpener, once).
absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const std::string& address,
                                                           const ClientSecurityOptions& security);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_RPC_CHANNEL_H_
