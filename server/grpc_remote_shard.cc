#include "server/grpc_remote_shard.h"

#include <utility>

#include "common/rpc/grpc_status.h"
#include "common/rpc/security.h"
#include "grpcpp/client_context.h"
#include "proto/shard_control.grpc.pb.h"

namespace fulcrum {
namespace {

class GrpcRemoteShard final : public RemoteShard {
 public:
  GrpcRemoteShard(std::shared_ptr<grpc::Channel> channel, std::string auth_token)
      : stub_(ShardControl::NewStub(std::move(channel))), auth_token_(std::move(auth_token)) {}

  absl::StatusOr<uint64_t> SetMembership(const WorkerMembership& membership,
                                         absl::Duration timeout) override {
    grpc::ClientContext context;
    Prepare(timeout, &context);
    MembershipAck ack;
    const grpc::Status status = stub_->SetMembership(&context, membership.ToProto(), &ack);
    if (!status.ok()) return FromGrpcStatus(status);
    return ack.version();
  }

  absl::StatusOr<CheckpointManifest::ShardFile> WriteCheckpoint(uint64_t sequence,
                                                                absl::Duration timeout) override {
    grpc::ClientContext context;
    Prepare(timeout, &context);
    WriteShardCheckpointRequest request;
    request.set_sequence(sequence);
    CheckpointManifest::ShardFile file;
    const grpc::Status status = stub_->WriteCheckpoint(&context, request, &file);
    if (!status.ok()) return FromGrpcStatus(status);
    return file;
  }

 private:
  void Prepare(absl::Duration timeout, grpc::ClientContext* context) const {
    PrepareCall(auth_token_, timeout, context);
  }

  const std::unique_ptr<ShardControl::Stub> stub_;
  const std::string auth_token_;
};

}  // namespace

RemoteShardFactory GrpcRemoteShards(ChannelOpener opener, std::string auth_token) {
  return [opener, auth_token](const std::string& address) -> std::shared_ptr<RemoteShard> {
    return std::make_shared<GrpcRemoteShard>(opener.Open(address), auth_token);
  };
}

}  // namespace fulcrum
