#include "server/rpc/grpc_remote_shard.h"

#include <utility>

#include "common/rpc/grpc_status.h"
#include "common/rpc/security.h"
#include "grpcpp/client_context.h"
#include "proto/shard_control.grpc.pb.h"

namespace fulcrum {
namespace {

class GrpcRemoteShard final : public RemoteShard {
 public:
  explicit GrpcRemoteShard(std::shared_ptr<grpc::Channel> channel)
      : stub_(ShardControl::NewStub(std::move(channel))) {}

  absl::StatusOr<uint64_t> SetMembership(const WorkerMembership& membership,
                                         absl::Duration timeout) override {
    grpc::ClientContext context;
    SetTimeout(timeout, &context);
    MembershipAck ack;
    const grpc::Status status = stub_->SetMembership(&context, membership.ToProto(), &ack);
    if (!status.ok()) return FromGrpcStatus(status);
    return ack.version();
  }

  absl::StatusOr<CheckpointManifest::ShardFile> WriteCheckpoint(uint64_t sequence,
                                                                uint64_t delta_of,
                                                                absl::Duration timeout) override {
    grpc::ClientContext context;
    SetTimeout(timeout, &context);
    WriteShardCheckpointRequest request;
    request.set_sequence(sequence);
    request.set_delta_of(delta_of);
    CheckpointManifest::ShardFile file;
    const grpc::Status status = stub_->WriteCheckpoint(&context, request, &file);
    if (!status.ok()) return FromGrpcStatus(status);
    return file;
  }

 private:
  const std::unique_ptr<ShardControl::Stub> stub_;
};

}  // namespace

RemoteShardFactory GrpcRemoteShards(ChannelOpener opener) {
  return [opener](const std::string& address) -> std::shared_ptr<RemoteShard> {
    return std::make_shared<GrpcRemoteShard>(opener.Open(address));
  };
}

}  // namespace fulcrum
