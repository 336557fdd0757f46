#include "common/rpc/channel.h"

#include <memory>
#include <vector>

#include "common/base/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/client_interceptor.h"

namespace fulcrum {
namespace {

// Adds "authorization: Bearer <token>" to every call on a channel: the token
// is set once, where the channel is opened, not at each call site.
class BearerTokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::string* header) : header_(header) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* const header_;  // owned by the factory, which the channel keeps
};

class BearerTokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(const std::string& token) : header_("Bearer " + token) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new BearerTokenInterceptor(&header_);
  }

 private:
  const std::string header_;
};

}  // namespace

grpc::ChannelArguments DefaultChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  // A peer gone silent (a half-open connection) fails the calls on it: gRPC
  // sets TCP_USER_TIMEOUT to the keepalive timeout, so unacknowledged data
  // gives up after it, and an idle-looking connection is pinged.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, absl::ToInt64Milliseconds(kKeepaliveTime));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, absl::ToInt64Milliseconds(kKeepaliveTimeout));
  // Reconnect to a restarted server within a second, not gRPC's default of
  // up to two minutes; the callers' own retries add backoff and jitter.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Despite its name, gRPC's C core reads this as the least time one
  // connection attempt (TCP, TLS and HTTP/2 handshakes) may take. At 100 ms
  // (as it once was here) a link with 200 ms round trips and some loss
  // never connected ("timed out before receiving SETTINGS frame"); 10 s
  // covers two lost SYNs. A refused connection (a server restarting) still
  // fails at once and is retried after the backoff above.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10000);
  // A connection of its own per channel: several clients in one process (the
  // many_workers benchmark, tests) behave like separate processes.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A name that moves to a new address (a container or pod its orchestrator
  // replaced) is looked up again within a second of the old address
  // failing, not gRPC's default 30 s: Swarm's DNS round robin gave a
  // restarted shard a new address, and the coordinator dialled the dead one
  // for 26 s.
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 1000);
  return args;
}

void AddServerKeepaliveArguments(grpc::ServerBuilder* builder) {
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                              absl::ToInt64Milliseconds(kKeepaliveTime));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                              absl::ToInt64Milliseconds(kKeepaliveTimeout));
  // Clients ping every kKeepaliveTime while a call waits (a sync pull can
  // wait a minute with no data): gRPC's default policy, at most one ping per
  // 5 minutes, would answer the third such ping with GOAWAY too_many_pings.
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                              absl::ToInt64Milliseconds(kKeepaliveTime) / 2);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
}

absl::StatusOr<ChannelOpener> ChannelOpener::Create(const ClientSecurityOptions& security) {
  ChannelOpener opener;
  FULCRUM_ASSIGN_OR_RETURN(opener.credentials_, MakeChannelCredentials(security));
  opener.args_ = DefaultChannelArguments();
  AddSecurityChannelArguments(security, &opener.args_);
  opener.auth_token_ = security.auth_token;
  return opener;
}

std::shared_ptr<grpc::Channel> ChannelOpener::Open(const std::string& address) const {
  if (auth_token_.empty()) return grpc::CreateCustomChannel(address, credentials_, args_);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> token;
  token.push_back(std::make_unique<BearerTokenInterceptorFactory>(auth_token_));
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, credentials_, args_,
                                                                 std::move(token));
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const std::string& address,
                                                           const ClientSecurityOptions& security) {
  FULCRUM_ASSIGN_OR_RETURN(const ChannelOpener opener, ChannelOpener::Create(security));
  return opener.Open(address);
}

}  // namespace fulcrum
