#include "server/rpc/grpc_registry_client.h"

#include <string>
#include <utility>

#include "common/rpc/channel.h"
#include "common/rpc/failover_stubs.h"
#include "common/rpc/grpc_status.h"
#include "grpcpp/client_context.h"
#include "proto/shard_control.grpc.pb.h"

namespace fulcrum {
namespace {

class GrpcRegistryClient final : public RegistryClient {
 public:
  explicit GrpcRegistryClient(const ClientSecurityOptions& security)
      : registries_(
            [security](const std::string& address) { return OpenChannel(address, security); },
            /*also_on_deadline=*/true) {}

  absl::Status Learn(const std::vector<std::string>& addresses) override {
    return registries_.Learn(addresses);
  }

  absl::StatusOr<RegisterShardResponse> Register(const RegisterShardRequest& request,
                                                 absl::Duration timeout) override {
    RegisterShardResponse response;
    absl::Status s = registries_.Call([&](ShardRegistry::Stub* registry) {
      grpc::ClientContext context;
      SetTimeout(timeout, &context);
      response.Clear();
      return FromGrpcStatus(registry->RegisterShard(&context, request, &response));
    });
    if (!s.ok()) return s;
    return response;
  }

  absl::Status PromoteBackup(const PromoteBackupRequest& request, absl::Duration timeout) override {
    if (registries_.empty()) return absl::FailedPreconditionError("no coordinator known");
    ShardRegistry::Stub* registry = registries_.Current();
    grpc::ClientContext context;
    SetTimeout(timeout, &context);
    PromoteBackupResponse response;
    return FromGrpcStatus(registry->PromoteBackup(&context, request, &response));
  }

  absl::Status DropBackup(const DropBackupRequest& request, absl::Duration timeout) override {
    if (registries_.empty()) return absl::FailedPreconditionError("no coordinator known");
    ShardRegistry::Stub* registry = registries_.Current();
    grpc::ClientContext context;
    SetTimeout(timeout, &context);
    DropBackupResponse response;
    return FromGrpcStatus(registry->DropBackup(&context, request, &response));
  }

 private:
  FailoverStubs<ShardRegistry> registries_;
};

}  // namespace

std::unique_ptr<RegistryClient> NewGrpcRegistryClient(const ClientSecurityOptions& security) {
  return std::make_unique<GrpcRegistryClient>(security);
}

}  // namespace fulcrum
