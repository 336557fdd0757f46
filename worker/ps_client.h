// PsClient: how a worker reads parameters from and sends gradients to the
// parameter servers, apart from the transport. GrpcPsClient talks gRPC.
#ifndef FULCRUM_WORKER_PS_CLIENT_H_
#define FULCRUM_WORKER_PS_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/fulcrum.grpc.pb.h"
#include "worker/model.h"

namespace fulcrum {

// What the server said about itself in a reply.
struct ServerVersion {
  int64_t version = 0;
  int64_t round = 0;
  uint64_t incarnation = 0;
  double wait_seconds = 0;  // time the call waited for its round or clock
};

// Rows of a sparse table, by key (keys need not be unique).
struct SparseRows {
  std::string table;
  uint32_t dim = 0;
  std::vector<uint64_t> keys;
  std::vector<float> values;  // keys.size() * dim: rows (pull) or gradients (push)
  // Pull only: do not create missing rows (read their initial values).
  bool read_only = false;
};

// What a step reads or writes: whole dense tensors and sparse rows.
struct ParameterBatch {
  // Dense tensors, whole, in the order of `tensors`; `dense[i]` holds
  // tensors[i]'s values (pull) or gradient (push).
  std::vector<TensorSpec> tensors;
  ParameterSet dense;
  std::vector<SparseRows> sparse;
};

// Implementations must be safe to call from one thread at a time.
class PsClient {
 public:
  virtual ~PsClient() = default;

  // Fills batch->dense (resized) and each batch->sparse[i].values from the
  // servers, reading every tensor in batch->tensors and every key. `clock`
  // is the round (sync) or clock (ssp) to wait for, or -1 for "now".
  virtual absl::StatusOr<ServerVersion> Pull(uint64_t worker_id, int64_t clock,
                                             ParameterBatch* batch) = 0;

  // Sends the gradients in `batch`. `request_id` makes a retry idempotent;
  // `batch_examples` is how many examples produced it.
  virtual absl::StatusOr<ServerVersion> Push(uint64_t worker_id, int64_t clock,
                                             uint64_t request_id,
                                             const ParameterBatch& batch,
                                             uint32_t batch_examples) = 0;
};

// A PsClient for one parameter-server shard holding whole tensors.
// Thread-compatible; the incarnation it last saw is its only state.
// Every call carries a deadline of `rpc_timeout`.
class GrpcPsClient final : public PsClient {
 public:
  // `auth_token` (may be empty) goes with every call as a bearer token.
  GrpcPsClient(std::shared_ptr<grpc::Channel> channel,
               absl::Duration rpc_timeout, std::string auth_token = "");

  absl::StatusOr<ServerVersion> Pull(uint64_t worker_id, int64_t clock,
                                     ParameterBatch* batch) override;
  absl::StatusOr<ServerVersion> Push(uint64_t worker_id, int64_t clock,
                                     uint64_t request_id, const ParameterBatch& batch,
                                     uint32_t batch_examples) override;

 private:
  std::unique_ptr<ParameterService::Stub> stub_;
  const absl::Duration rpc_timeout_;
  const std::string auth_token_;
  uint64_t last_incarnation_ = 0;
};

// Channel arguments every Fulcrum client uses: message limits matching the
// server's, keepalive pings, and reconnection within a second of a restart.
grpc::ChannelArguments DefaultChannelArguments();

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_PS_CLIENT_H_
