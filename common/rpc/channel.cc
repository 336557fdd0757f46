#include "common/rpc/channel.h"

#include "common/base/status_macros.h"
#include "grpcpp/create_channel.h"

namespace fulcrum {

grpc::ChannelArguments DefaultChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // Reconnect to a restarted server within a second, not gRPC's default of
  // up to two minutes; the callers' own retries add backoff and jitter.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // A connection of its own per channel: several clients in one process (the
  // many_workers benchmark, tests) behave like separate processes.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

absl::StatusOr<ChannelOpener> ChannelOpener::Create(const ClientSecurityOptions& security) {
  ChannelOpener opener;
  FULCRUM_ASSIGN_OR_RETURN(opener.credentials_, MakeChannelCredentials(security));
  opener.args_ = DefaultChannelArguments();
  AddSecurityChannelArguments(security, &opener.args_);
  return opener;
}

std::shared_ptr<grpc::Channel> ChannelOpener::Open(const std::string& address) const {
  return grpc::CreateCustomChannel(address, credentials_, args_);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const std::string& address,
                                                           const ClientSecurityOptions& security) {
  FULCRUM_ASSIGN_OR_RETURN(const ChannelOpener opener, ChannelOpener::Create(security));
  return opener.Open(address);
}

}  // namespace fulcrum
