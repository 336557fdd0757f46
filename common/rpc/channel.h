// How every Fulcrum client (worker, psctl, the coordinator dialling shards,
// shards dialling the coordinator) opens a gRPC channel.
#ifndef FULCRUM_COMMON_RPC_CHANNEL_H_
#define FULCRUM_COMMON_RPC_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/rpc/security.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/channel_arguments.h"

namespace fulcrum {

// How long a connection may go without a sign of life from its peer (both
// ends, every Fulcrum process): a connection with unacknowledged data fails
// kKeepaliveTimeout after the peer went silent, any other one within
// kKeepaliveTime + kKeepaliveTimeout (it is pinged). The calls on it fail
// UNAVAILABLE, long before their deadlines, and the callers retry on a new
// connection.
inline constexpr absl::Duration kKeepaliveTime = absl::Seconds(10);
inline constexpr absl::Duration kKeepaliveTimeout = absl::Seconds(5);

// Channel arguments every Fulcrum client uses: message limits matching the
// server's, keepalive pings, and reconnection within a second of a restart.
grpc::ChannelArguments DefaultChannelArguments();

// The server's side of the keepalive: it pings silent clients too, and lets
// clients ping as often as DefaultChannelArguments makes them.
void AddServerKeepaliveArguments(grpc::ServerBuilder* builder);

// Opens channels under one client security setting (plaintext when it
// names no CA), with DefaultChannelArguments: the certificates are read
// once, at Create. Every call on a channel it opens carries the setting's
// bearer token, if any. Thread-safe, copyable.
class ChannelOpener {
 public:
  // The error names the file that could not be read.
  static absl::StatusOr<ChannelOpener> Create(const ClientSecurityOptions& security);
  std::shared_ptr<grpc::Channel> Open(const std::string& address) const;

 private:
  ChannelOpener() = default;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  grpc::ChannelArguments args_;
  std::string auth_token_;
};

// A channel to `address` with `security` (ChannelOpener, once).
absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const std::string& address,
                                                           const ClientSecurityOptions& security);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_RPC_CHANNEL_H_
