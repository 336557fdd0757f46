// libFuzzer target: the parameter service's request handling
// (server/rpc/grpc_services.h: validation, slices, payload decoding of every
// encoding, sparse keys, the store and tables) on a real ParameterShard, fed
// serialised PullRequest / PushRequest / PushPullRequest bytes as a worker
// would send them. Byte 0 picks the call. The sender is forced to the one
// admitted worker so the fuzzer reaches past the membership check; the rest
// is the fuzzer's. Async mode: no call waits.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "server/rpc/grpc_services.h"
#include "server/shard/parameter_shard.h"
#include "server/store/optimizer.h"
#include "server/store/parameter_store.h"
#include "server/store/sparse_table.h"

namespace {

constexpr uint64_t kCoordinator = 7;
constexpr uint64_t kIncarnation = 11;

struct Fixture {
  std::unique_ptr<fulcrum::ParameterShard> shard;
  std::unique_ptr<fulcrum::ParameterServiceImpl> service;

  Fixture() {
    fulcrum::OptimizerConfig adam;
    adam.set_kind(fulcrum::ADAM);
    fulcrum::TensorSpec w;
    w.set_name("w");
    w.add_shape(16);
    w.add_shape(8);
    fulcrum::TensorSpec b;
    b.set_name("b");
    b.add_shape(8);
    auto store = fulcrum::ParameterStore::Create({}, *fulcrum::CreateOptimizer(adam), {w, b});
    fulcrum::SparseTableOptions table;
    table.name = "emb";
    table.dim = 4;
    table.max_rows = 4096;  // a push creating more is refused, not allocated
    std::vector<std::unique_ptr<fulcrum::SparseTable>> tables;
    tables.push_back(*fulcrum::SparseTable::Create(table, *fulcrum::CreateOptimizer(adam)));
    shard = std::make_unique<fulcrum::ParameterShard>(std::move(*store), fulcrum::ASYNC, 0,
                                                      std::move(tables));
    fulcrum::WorkerMembership members;
    members.coordinator_incarnation = kCoordinator;
    members.version = 1;
    members.started = true;
    members.admitted.insert(1);
    members.active[1] = 0;
    shard->ApplyMembership(members);
    service = std::make_unique<fulcrum::ParameterServiceImpl>(
        shard.get(), kIncarnation, absl::Seconds(1), /*max_response_bytes=*/1 << 20);
  }
};

void Admit(fulcrum::RequestHeader* header) {
  header->set_worker_id(1);
  header->set_coordinator_incarnation(kCoordinator);
  if (header->incarnation() != 0) header->set_incarnation(kIncarnation);
}

// A reply built by hand (common/rpc/wire.h) must parse as its message.
template <typename Message>
void CheckReply(grpc::ByteBuffer* reply) {
  grpc::Slice bytes;
  Message message;
  if (!reply->DumpToSingleSlice(&bytes).ok() ||
      !message.ParseFromArray(bytes.begin(), static_cast<int>(bytes.size()))) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fixture = new Fixture();
  if (size < 1) return 0;
  const void* bytes = data + 1;
  const int length = static_cast<int>(size - 1);
  grpc::ServerContext context;
  switch (data[0] % 3) {
    case 0: {
      fulcrum::PullRequest request;
      if (!request.ParseFromArray(bytes, length)) return 0;
      Admit(request.mutable_header());
      request.mutable_header()->set_clock(-1);
      grpc::ByteBuffer reply;
      if (fixture->service->HandlePull(context, request, &reply).ok()) {
        CheckReply<fulcrum::PullResponse>(&reply);
      }
      break;
    }
    case 1: {
      fulcrum::PushRequest request;
      if (!request.ParseFromArray(bytes, length)) return 0;
      Admit(request.mutable_header());
      fulcrum::PushResponse response;
      fixture->service->HandlePush(context, request, &response);
      break;
    }
    default: {
      fulcrum::PushPullRequest request;
      if (!request.ParseFromArray(bytes, length)) return 0;
      Admit(request.mutable_push()->mutable_header());
      Admit(request.mutable_pull()->mutable_header());
      request.mutable_pull()->mutable_header()->set_clock(-1);
      grpc::ByteBuffer reply;
      if (fixture->service->HandlePushPull(context, request, &reply).ok()) {
        CheckReply<fulcrum::PushPullResponse>(&reply);
      }
    }
  }
  return 0;
}
