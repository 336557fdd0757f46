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
    return CallCurrent<PromoteBackupResponse>(&ShardRegistry::Stub::PromoteBackup, request,
                                              timeout);
  }

  absl::Status DropBackup(const DropBackupRequest& request, absl::Duration timeout) override {
    return CallCurrent<DropBackupResponse>(&ShardRegistry::Stub::DropBackup, request, timeout);
  }

 private:
  // `method` on the coordinator process that answered last only: a backup
  // that took over must be asked, not its dead primary's other process.
  template <typename Response, typename Request, typename Method>
  absl::Status CallCurrent(Method method, const Request& request, absl::Duration timeout) {
    if (registries_.empty()) return absl::FailedPreconditionError("no coordinator known");
    grpc::ClientContext context;
    SetTimeout(timeout, &context);
    Response response;
    return FromGrpcStatus((registries_.Current()->*method)(&context, request, &response));
  }

  FailoverStubs<ShardRegistry> registries_;
};

}  // namespace

std::unique_ptr<RegistryClient> NewGrpcRegistryClient(const ClientSecurityOptions& security) {
  return std::make_unique<GrpcRegistryClient>(security);
}

}  // namespace fulcrum
